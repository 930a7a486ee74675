//! The replay's clock ([`Clock`]: when each connect and statement is due)
//! and the precise timer behind it: one thread holds every pending deadline in
//! a heap and wakes the waiting task when it is due. Tokio's own timer ticks
//! in whole milliseconds; this one keeps statements within tens of
//! microseconds of their schedule without a thread or a spin per statement.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct Entry {
    at: Instant,
    id: u64,
    waker: Waker,
    fired: Arc<AtomicBool>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.id) == (o.at, o.id)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(o.at, o.id))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    next_id: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The timer service; clones share one thread, which stops with the last clone.
#[derive(Clone)]
pub struct Timer {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.0.cv.notify_all();
    }
}

impl Timer {
    pub fn start() -> Timer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("pgtape-timer".into())
            .spawn(move || run(s))
            .expect("spawn the timer thread");
        Timer {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// Resolves at `at` (at once if it has passed).
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        Sleep {
            timer: self.clone(),
            at,
            fired: None,
        }
    }
}

fn run(s: Arc<Shared>) {
    // Ask the kernel for tight timer slack on this thread (default 50 µs).
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        while st.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Reverse(e) = st.heap.pop().expect("peeked");
            e.fired.store(true, Ordering::Release);
            e.waker.wake();
        }
        st = match st.heap.peek() {
            None => s.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(Reverse(e)) => {
                let d = e.at.saturating_duration_since(now);
                s.cv.wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

pub struct Sleep {
    timer: Timer,
    at: Instant,
    fired: Option<(Arc<AtomicBool>, Waker)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((f, _)) = &self.fired {
            if f.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
        }
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let stale = match &self.fired {
            Some((_, w)) => !w.will_wake(cx.waker()),
            None => true,
        };
        if stale {
            let fired = Arc::new(AtomicBool::new(false));
            let shared = &self.timer.shared;
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let earliest = st.heap.peek().is_none_or(|Reverse(e)| self.at < e.at);
            st.next_id += 1;
            let id = st.next_id;
            st.heap.push(Reverse(Entry {
                at: self.at,
                id,
                waker: cx.waker().clone(),
                fired: fired.clone(),
            }));
            drop(st);
            if earliest {
                shared.cv.notify_one();
            }
            self.fired = Some((fired, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// The replay clock shared by every session.
#[derive(Clone)]
pub struct Clock {
    pub timer: Timer,
    pub t0: Instant,
    pub t0_wall_us: i64,
    pub capture_start_us: i64,
    /// `None`: as fast as possible, keeping per-session order.
    pub speed: Option<f64>,
    /// Connections open this much before their recorded connect (`--connect-ahead`).
    pub connect_ahead: Duration,
}

impl Clock {
    pub fn due(&self, ts_us: i64, delay: Duration) -> Option<Instant> {
        self.speed
            .map(|s| self.t0 + scheduled_offset(ts_us, self.capture_start_us, s) + delay)
    }

    /// When a session opens: at its recorded connect, less `--connect-ahead`.
    pub fn connect_due(&self, ts_us: i64, delay: Duration) -> Option<Instant> {
        let due = self.due(ts_us, delay)?;
        Some(due.checked_sub(self.connect_ahead).unwrap_or(due))
    }

    pub async fn wait(&self, due: Option<Instant>) {
        if let Some(at) = due {
            self.timer.sleep_until(at).await;
        }
    }

    pub fn offset_us(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.t0).as_micros() as i64
    }
}

/// Where a captured event falls on the replay's clock: its offset from the
/// capture's start divided by the speed. Pure, so the schedule is testable
/// without a clock.
pub fn scheduled_offset(ts_us: i64, capture_start_us: i64, speed: f64) -> Duration {
    let offset = (ts_us - capture_start_us).max(0) as f64 / speed;
    Duration::from_micros(offset.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_two_halves_every_offset() {
        let start = 1_700_000_000_000_000;
        for off in [0i64, 1, 999, 1_000_000, 86_400_000_000] {
            assert_eq!(
                scheduled_offset(start + off, start, 1.0),
                Duration::from_micros(off as u64)
            );
            assert_eq!(
                scheduled_offset(start + off, start, 2.0),
                Duration::from_micros((off as f64 / 2.0).round() as u64)
            );
            assert_eq!(
                scheduled_offset(start + off, start, 0.5),
                Duration::from_micros(off as u64 * 2)
            );
        }
        // Events before the start (clock skew across proxies) are due at once.
        assert_eq!(scheduled_offset(start - 5, start, 1.0), Duration::ZERO);
    }

    #[test]
    fn sleeps_wake_in_deadline_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let timer = Timer::start();
        let base = Instant::now() + Duration::from_millis(20);
        let order = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for (i, ms) in [(0, 9u64), (1, 3), (2, 6), (3, 0)] {
                let t = timer.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    t.sleep_until(base + Duration::from_millis(ms)).await;
                    assert!(
                        Instant::now() >= base + Duration::from_millis(ms),
                        "never early"
                    );
                    tx.send(i).unwrap();
                });
            }
            drop(tx);
            let mut order = vec![];
            while let Some(i) = rx.recv().await {
                order.push(i);
            }
            order
        });
        assert_eq!(order, vec![3, 1, 2, 0]);
    }

    #[test]
    fn connections_open_ahead_of_their_recorded_connect_by_connect_ahead() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let clock = |speed, ahead| Clock {
            timer: Timer::start(),
            t0,
            t0_wall_us: 0,
            capture_start_us: 1_000_000,
            speed,
            connect_ahead: ahead,
        };
        let c = clock(Some(10.0), Duration::from_millis(100));
        // Recorded 2 s into the capture: due 200 ms after t0 at 10x, opened 100 ms before.
        let ts = 3_000_000;
        assert_eq!(
            c.due(ts, Duration::ZERO),
            Some(t0 + Duration::from_millis(200))
        );
        assert_eq!(
            c.connect_due(ts, Duration::ZERO),
            Some(t0 + Duration::from_millis(100))
        );
        let plain = clock(Some(10.0), Duration::ZERO);
        assert_eq!(
            plain.connect_due(ts, Duration::ZERO),
            plain.due(ts, Duration::ZERO)
        );
        assert_eq!(
            clock(None, Duration::from_millis(100)).connect_due(ts, Duration::ZERO),
            None
        );
    }
}
