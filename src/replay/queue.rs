//! A replay session's queue of items: filled by the dispatcher, which never
//! waits on it, and emptied by the session in runs.
//!
//! Items wait in memory up to [`MEM_CAP`] per queue; beyond that the
//! dispatcher writes them to the [`super::spool`] and queues the block
//! instead, so a session that is far behind (waiting for a lock, for order,
//! for a slow target) costs disk, not memory, and never holds back the
//! reader or any other session. Order is kept because memory runs and spool
//! blocks share one queue.
//!
//! [`Pressure`] is how the sessions and the dispatcher talk without a queue
//! between them: the count of items handed out and not yet taken (in
//! memory or on the spool), and of sessions that found their queue empty
//! and wait for the dispatcher. With `--max-rate` the dispatcher reads
//! ahead until that count is at its budget, and past it only while some
//! session is starving: what the order of effects keeps of the items read
//! ahead (their pending entries) stays bounded too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use super::plan::{Item, SessionKey};
use super::spool::Block;

/// Items a queue holds in memory before the rest goes to the spool.
pub const MEM_CAP: usize = 4096;

/// Shared by the dispatcher and every session queue.
#[derive(Default)]
pub struct Pressure {
    /// Items handed to the queues and not yet taken, in memory or spooled.
    pub queued: AtomicI64,
    /// Sessions waiting on an empty queue.
    pub starving: AtomicI64,
    /// The dispatcher's thread, woken when a session starts starving.
    pub dispatcher: OnceLock<std::thread::Thread>,
}

enum Chunk {
    Mem(Vec<Item>),
    /// A spooled run and its count of items.
    Disk(Arc<Block>, usize),
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    mem_items: usize,
    /// Items queued in spooled runs.
    disk_items: usize,
    closed: bool,
}

pub struct SessionQueue {
    key: SessionKey,
    state: Mutex<State>,
    notify: Notify,
    pressure: Arc<Pressure>,
}

impl SessionQueue {
    pub fn new(key: SessionKey, pressure: Arc<Pressure>) -> Arc<SessionQueue> {
        Arc::new(SessionQueue {
            key,
            state: Mutex::default(),
            notify: Notify::new(),
            pressure,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `n` more items fit in memory.
    pub fn has_room(&self, n: usize) -> bool {
        self.lock().mem_items + n <= MEM_CAP
    }

    /// Queues a run of items held in memory.
    pub fn push_mem(&self, items: Vec<Item>) {
        let n = items.len();
        self.pressure.queued.fetch_add(n as i64, Ordering::Relaxed);
        let mut s = self.lock();
        s.mem_items += n;
        s.chunks.push_back(Chunk::Mem(items));
        drop(s);
        self.notify.notify_one();
    }

    /// Queues a run of `n` items written to the spool.
    pub fn push_disk(&self, block: Arc<Block>, n: usize) {
        self.pressure.queued.fetch_add(n as i64, Ordering::Relaxed);
        let mut s = self.lock();
        s.disk_items += n;
        s.chunks.push_back(Chunk::Disk(block, n));
        drop(s);
        self.notify.notify_one();
    }

    /// No more items will come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// The next run of items, in order; `None` once the queue is closed and
    /// empty. A spooled run is read back here, on the session's thread.
    /// While it waits for the dispatcher it counts as starving (the
    /// dispatcher reads past its budget for it) only if it `may_hold`
    /// locks others wait for: a session idle outside a transaction blocks
    /// no one, and reading the capture ahead for it (to its next statement,
    /// maybe at the capture's end) would only fill the spool and the order.
    pub async fn next_run(&self, may_hold: bool) -> Option<std::io::Result<Vec<Item>>> {
        loop {
            let chunk = {
                let mut s = self.lock();
                match s.chunks.pop_front() {
                    Some(Chunk::Mem(v)) => {
                        s.mem_items -= v.len();
                        drop(s);
                        self.pressure
                            .queued
                            .fetch_sub(v.len() as i64, Ordering::Relaxed);
                        return Some(Ok(v));
                    }
                    Some(Chunk::Disk(b, n)) => {
                        s.disk_items -= n;
                        drop(s);
                        self.pressure.queued.fetch_sub(n as i64, Ordering::Relaxed);
                        Some(b)
                    }
                    None if s.closed => return None,
                    None => None,
                }
            };
            if let Some(block) = chunk {
                return Some(block.read(&self.key));
            }
            if !may_hold {
                self.notify.notified().await;
                continue;
            }
            self.pressure.starving.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = self.pressure.dispatcher.get() {
                t.unpark();
            }
            self.notify.notified().await;
            self.pressure.starving.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for SessionQueue {
    fn drop(&mut self) {
        // Items never taken (a session that ended early) leave the count.
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.pressure
            .queued
            .fetch_sub((s.mem_items + s.disk_items) as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::spool::Spool;

    fn disconnect(key: &SessionKey, ts_us: i64) -> Item {
        Item::Disconnect {
            key: key.clone(),
            ts_us,
        }
    }

    fn ts(it: &Item) -> i64 {
        match it {
            Item::Disconnect { ts_us, .. } => *ts_us,
            _ => unreachable!(),
        }
    }

    /// Memory runs and spool blocks come out in the order they went in, the
    /// memory count follows, and a waiting session is woken by a push.
    #[test]
    fn memory_and_spool_runs_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path()).unwrap();
        let p = Arc::new(Pressure::default());
        let key: SessionKey = (Arc::from("c"), 1);
        let q = SessionQueue::new(key.clone(), p.clone());
        q.push_mem(vec![disconnect(&key, 1), disconnect(&key, 2)]);
        q.push_disk(spool.append(&[disconnect(&key, 3)]).unwrap(), 1);
        q.push_mem(vec![disconnect(&key, 4)]);
        assert_eq!(
            p.queued.load(Ordering::Relaxed),
            4,
            "spooled items count too"
        );
        assert!(q.has_room(MEM_CAP - 3) && !q.has_room(MEM_CAP - 2));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut got = vec![];
            for _ in 0..3 {
                got.extend(q.next_run(true).await.unwrap().unwrap().iter().map(ts));
            }
            let q2 = q.clone();
            let waiting = tokio::spawn(async move { q2.next_run(true).await.map(|r| r.unwrap()) });
            tokio::task::yield_now().await;
            assert_eq!(p.starving.load(Ordering::Relaxed), 1);
            q.push_mem(vec![disconnect(&key, 5)]);
            got.extend(waiting.await.unwrap().unwrap().iter().map(ts));
            q.close();
            assert!(q.next_run(true).await.is_none());
            got
        });
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        assert_eq!(p.queued.load(Ordering::Relaxed), 0);
        assert_eq!(p.starving.load(Ordering::Relaxed), 0);
    }
}
