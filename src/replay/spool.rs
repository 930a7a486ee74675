//! The spool: where a session's items go when it is far behind the capture
//! reader, so the reader never waits for a session and memory stays flat.
//!
//! One file per replay, in the results directory (the user's disk, not a
//! tmpfs), unlinked as soon as it is opened so nothing is left behind, even
//! after `kill -9`. Only the dispatcher appends; sessions read their blocks
//! back with positioned reads from their own threads, and a block's space is
//! given back to the file system (a punched hole) once every queue holding
//! it has read it. Items are encoded in a compact binary form of their own;
//! the session they belong to is the queue's, so it is not repeated.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use super::plan::{Item, SessionKey};

mod codec;

use crate::sql::Facts;
use codec::{Dec, FactsTable, decode, encode, put_u32};

/// The spool file, owned by the dispatcher.
pub struct Spool {
    file: Arc<File>,
    end: u64,
    scratch: Vec<u8>,
    facts: FactsTable,
}

/// Encoded items in the spool, shared by the queues that hold them.
pub struct Block {
    file: Arc<File>,
    offset: u64,
    len: usize,
    /// The facts its statements point at (kept in memory, once each).
    facts: Vec<Arc<Facts>>,
}

impl Spool {
    /// Creates the spool in `dir` and unlinks it at once.
    pub fn create(dir: &Path) -> io::Result<Spool> {
        let path = dir.join(format!(".pgtape-spool-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Spool {
            file: Arc::new(file),
            end: 0,
            scratch: Vec::new(),
            facts: FactsTable::default(),
        })
    }

    /// Appends `items` as one block.
    pub fn append(&mut self, items: &[Item]) -> io::Result<Arc<Block>> {
        self.scratch.clear();
        put_u32(&mut self.scratch, items.len() as u32);
        for it in items {
            encode(it, &mut self.scratch, &mut self.facts);
        }
        self.file.write_all_at(&self.scratch, self.end)?;
        let block = Block {
            file: self.file.clone(),
            offset: self.end,
            len: self.scratch.len(),
            facts: self.facts.take(),
        };
        self.end += self.scratch.len() as u64;
        Ok(Arc::new(block))
    }
}

impl Block {
    /// Reads the block's items back, as session `key`'s.
    pub fn read(&self, key: &SessionKey) -> io::Result<Vec<Item>> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.offset)?;
        let mut r = Dec::new(&buf);
        let n = r.u32()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(decode(&mut r, key, &self.facts)?);
        }
        Ok(out)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: fallocate only changes the allocation of our own open file;
        // failure (a file system without hole punching) just keeps the space.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.offset as libc::off_t,
                self.len as libc::off_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::Protocol;
    use crate::replay::fidelity::{CopyIn, Messages};
    use crate::replay::plan::OrderTag;
    use crate::replay::results::Captured;

    /// Every field of every kind of item comes back as it went in.
    #[test]
    fn items_round_trip_through_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let key: SessionKey = (Arc::from("abc"), 42);
        let c = Captured {
            session_id: 42,
            seq: 7,
            ts_us: 1_700_000_000_000_123,
            duration_us: 456,
            fingerprint: -99,
            facts: Arc::new(Facts::of("SELECT ? FROM t WHERE a = ?")),
            sql: Arc::from("SELECT $1 FROM t WHERE a = $2"),
            protocol: Protocol::Extended,
            tx_status: b'T',
            param_types: vec![23u32, 0].into(),
            param_formats: vec![1i16].into(),
            param_values: [Some(&b"\x00\x00\x00\x01"[..]), None].into_iter().collect(),
            result_formats: vec![0i16, 1].into(),
            max_rows: 10,
            command_tag: Some(Arc::from("SELECT 1")),
            rows: 1,
            ordered_hash: 5,
            unordered_hash: -6,
            sqlstate: None,
            copy_in: CopyIn::Messages(Messages::from_messages([&b"d1,2\n"[..], b"c"])),
            result_values: [Some(&b"\x00\x01"[..])].into_iter().collect(),
        };
        let items = vec![
            Item::Connect {
                key: key.clone(),
                ts_us: 1,
                user: "app".into(),
                params: vec![("application_name".into(), "x".into())],
            },
            Item::Statement {
                key: key.clone(),
                captured: Arc::new(c),
                named: true,
                order: OrderTag {
                    after: Some(1_700_000_000_000_000),
                    tables: Some(vec![3u64, 1 << 41 | 9].into()),
                    sync: Some((1_700_000_000_000_579, 12)),
                    sync_tables: None,
                    sent: Some((1_700_000_000_000_000, 13)),
                    publish: Some(5),
                    seq: Some((1_700_000_000_000_000, 14)),
                    seq_tables: Some(vec![1u64].into()),
                },
            },
            Item::Disconnect {
                key: key.clone(),
                ts_us: 3,
            },
        ];
        let mut spool = Spool::create(dir.path()).unwrap();
        let _other = spool.append(&items[..1]).unwrap();
        let block = spool.append(&items).unwrap();
        let back = block.read(&key).unwrap();
        assert_eq!(format!("{back:?}"), format!("{items:?}"));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the spool is unlinked at once"
        );
    }
}
