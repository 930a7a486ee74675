//! Reading a statement's replies: frames reduced into its [`Reply`]
//! until ReadyForQuery (or, paging, until its Execute completed or was
//! suspended), COPY data fed or received on the way.

use super::*;

impl Client {
    /// Reads and reduces frames until ReadyForQuery (or, paging, until the
    /// Execute completed or was suspended).
    pub(super) async fn read_until(
        &mut self,
        out: &mut Reply,
        paged: bool,
        copy: &mut copy::Feed<'_>,
        ex: &Extras<'_>,
    ) -> io::Result<Stop> {
        loop {
            let mut stop = None;
            let mut copy_in = false;
            let consumed = {
                let mut frames = Frames::new(&self.buf, Direction::Backend, MAX_MESSAGE_LEN);
                for f in frames.by_ref() {
                    let (tag, body) =
                        f.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    match tag {
                        b'D' => {
                            if let (Some(kept), Some((rows, bytes))) = (&mut out.kept, ex.keep) {
                                let held: usize = kept.iter().map(|k| k.1.len()).sum();
                                if kept.len() as u64 >= rows || held + body.len() > bytes {
                                    out.kept = None;
                                } else {
                                    kept.push((out.columns.clone(), body.to_vec()));
                                }
                            }
                            match ex.rows {
                                Some(m) if m.rewrite(&out.columns, body, &mut self.scratch) => {
                                    // Hashed as captured; the bytes are this side's.
                                    out.hash.add(&self.scratch);
                                    out.hash.bytes = out.hash.bytes + body.len() as u64
                                        - self.scratch.len() as u64;
                                }
                                _ => out.hash.add(body),
                            }
                        }
                        // COPY TO STDOUT: hashed as rows are (as the tap does).
                        b'd' => out.hash.add_copy(body),
                        b'T' => {
                            if body != self.last_columns.0.as_slice() {
                                let cols = self.with_known_names(row_description(body)).into();
                                self.last_columns = (body.to_vec(), cols);
                            }
                            out.columns = self.last_columns.1.clone();
                        }
                        b'C' => {
                            let tag = body.strip_suffix(&[0]).unwrap_or(body);
                            if tag != self.last_tag.as_bytes() {
                                self.last_tag = String::from_utf8_lossy(tag).into();
                            }
                            out.command_tag = self.last_tag.clone();
                            out.complete(tag);
                            if paged {
                                stop = Some(Stop::Completed);
                            }
                        }
                        b'I' if paged => stop = Some(Stop::Completed),
                        b's' if paged => stop = Some(Stop::Suspended),
                        b'E' => {
                            if out.error.is_none() {
                                let f = parse_error(body)
                                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                                out.error = Some((
                                    String::from_utf8_lossy(f.code).into_owned(),
                                    String::from_utf8_lossy(f.message).into_owned(),
                                ));
                            }
                            if paged {
                                stop = Some(Stop::Completed);
                            }
                        }
                        b'2' => {
                            if let Some(h) = self.snapshot_hook.take() {
                                h();
                            }
                        }
                        b'G' => copy_in = true,
                        b'Z' => stop = Some(Stop::Ready),
                        _ => {}
                    }
                    if stop.is_some() || copy_in {
                        break;
                    }
                }
                frames.consumed()
            };
            self.buf.advance(consumed);
            if copy_in {
                self.copy_in(copy).await?;
                continue;
            }
            if let Some(s) = stop {
                return Ok(s);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}
