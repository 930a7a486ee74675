//! Row-level evidence for the diff (`--show-rows`): a statement re-run with
//! text results, its rows kept (the replay itself only hashes them).

use std::io;

use postgres_protocol::message::frontend;

use super::codec::{encode_bind, encode_parse, row_description};
use super::{Client, Extended};
use crate::wire::messages::{Reader, parse_error};

impl Client {
    /// Runs `x` unnamed with every result column in text format and returns
    /// the column names and up to `limit` rows (NULL as `None`), or the
    /// server's SQLSTATE and message. The diff re-runs diverging read-only
    /// statements with this to show the first differing rows.
    #[allow(clippy::type_complexity)]
    pub async fn rows_text(
        &mut self,
        x: &Extended<'_>,
        limit: usize,
    ) -> io::Result<Result<(Vec<String>, Vec<Vec<Option<String>>>), (String, String)>> {
        self.out.clear();
        encode_parse("", x.sql, x.param_oids, &mut self.out);
        encode_bind("", x, &[0], &mut self.out)?;
        frontend::describe(b'P', "", &mut self.out)?;
        frontend::execute("", 0, &mut self.out)?;
        frontend::sync(&mut self.out);
        self.flush_out().await?;
        let (mut names, mut rows, mut error) = (Vec::new(), Vec::new(), None);
        loop {
            let (tag, body) = self.read_frame().await?;
            match tag {
                b'T' => names = row_description(&body).into_iter().map(|c| c.name).collect(),
                b'D' if rows.len() < limit => {
                    let mut r = Reader::new(&body, "DataRow");
                    let n = r
                        .i16()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let mut row = Vec::with_capacity(n.max(0) as usize);
                    for _ in 0..n {
                        let len = r
                            .i32()
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        row.push(if len < 0 {
                            None
                        } else {
                            let v = r
                                .bytes(len as usize)
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                            Some(String::from_utf8_lossy(v).into_owned())
                        });
                    }
                    rows.push(row);
                }
                b'E' if error.is_none() => {
                    let f = parse_error(&body)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    error = Some((
                        String::from_utf8_lossy(f.code).into_owned(),
                        String::from_utf8_lossy(f.message).into_owned(),
                    ));
                }
                b'Z' => break,
                _ => {}
            }
        }
        Ok(match error {
            Some(e) => Err(e),
            None => Ok((names, rows)),
        })
    }
}
