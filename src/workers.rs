//! Thread-per-core sessions: each worker thread runs its own single-threaded
//! tokio runtime, and every session lives on one worker from start to end.
//!
//! A proxy session's two pumps, its tap and its sockets, or a replay
//! session's connections, then never cross threads: no work stealing, no
//! cross-thread wake-up per message, no lock shared between sessions. Each new
//! session goes to the worker serving the fewest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Worker {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Where sessions run: on a runtime the caller has, or on a pool of workers.
pub enum Spawner {
    /// On this runtime (tests, the demo).
    Ambient(Handle),
    Pool(WorkerPool),
}

impl Spawner {
    /// Runs the session `make` builds on the chosen worker. `make` gets the
    /// accepted socket back as a std stream, to be registered with the
    /// worker's own reactor.
    pub fn spawn<F, Fut>(&self, tcp: tokio::net::TcpStream, make: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self {
            Spawner::Ambient(h) => {
                h.spawn(make(tcp));
            }
            Spawner::Pool(pool) => pool.spawn(tcp, make),
        }
    }

    /// Runs `task` on the chosen worker (a replay session).
    pub fn spawn_task<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            Spawner::Ambient(h) => {
                h.spawn(task);
            }
            Spawner::Pool(pool) => pool.spawn_task(task),
        }
    }
}

/// The default worker count: half the cores, at least one. The other half
/// is left to the rest of the process (the recorder, the dispatcher and
/// results writers) and, on one machine, to the PostgreSQL backends.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// N threads, each with a current-thread runtime.
pub struct WorkerPool {
    workers: Vec<Worker>,
}

impl WorkerPool {
    /// Starts `threads` workers (at least one), named `{name}-0`, `{name}-1`, ….
    pub fn start(threads: usize, name: &str) -> std::io::Result<WorkerPool> {
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Sessions run while this blocks; dropping the runtime
                    // afterwards closes whatever is still open.
                    let _ = rt.block_on(stopped);
                })?;
            workers.push(Worker {
                handle,
                sessions: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(WorkerPool { workers })
    }

    /// Runs `task` on the worker serving the fewest sessions.
    pub fn spawn_task<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.sessions.load(Ordering::Relaxed))
            .expect("at least one worker");
        let count = w.sessions.clone();
        count.fetch_add(1, Ordering::Relaxed);
        w.handle.spawn(async move {
            let _done = Leave(count);
            task.await
        });
    }

    fn spawn<F, Fut>(&self, tcp: tokio::net::TcpStream, make: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // The socket leaves the acceptor's reactor and joins the worker's.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to a worker: {e}");
                return;
            }
        };
        self.spawn_task(async move {
            match tokio::net::TcpStream::from_std(std) {
                Ok(tcp) => make(tcp).await,
                Err(e) => tracing::warn!("cannot register a connection with its worker: {e}"),
            }
        });
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(s) = w.stop.take() {
                let _ = s.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Gives a worker's session slot back when the session's task ends.
struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Polls every future together and returns their outputs in order (the
/// sides of a lockstep replay session; tests pipelining queries).
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Connections are spread over the workers, each served on a thread of
    /// the pool and not on the acceptor's.
    #[test]
    fn sessions_spread_over_worker_threads() {
        let pool = Spawner::Pool(WorkerPool::start(2, "pgtape-fwd").unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut clients = Vec::new();
            for _ in 0..4 {
                let c = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                pool.spawn(tcp, |mut tcp| async move {
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    let mut b = [0u8; 1];
                    tcp.read_exact(&mut b).await.unwrap();
                    tcp.write_all(name.as_bytes()).await.unwrap();
                });
                clients.push(c);
            }
            // Every session is open before any may end, so the counts the
            // acceptor sees are 0/0, 1/0, 1/1, 2/1.
            for c in &mut clients {
                c.write_all(b"x").await.unwrap();
            }
            let mut names = Vec::new();
            for mut c in clients {
                let mut s = String::new();
                c.read_to_string(&mut s).await.unwrap();
                names.push(s);
            }
            names.sort();
            assert_eq!(
                names,
                [
                    "pgtape-fwd-0",
                    "pgtape-fwd-0",
                    "pgtape-fwd-1",
                    "pgtape-fwd-1"
                ]
            );
        });
    }
}
