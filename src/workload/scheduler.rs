//! The open-loop scheduler. Each stream of operations has its own target
//! rate, shaped by the run's [`Pattern`]; operation `n` is *due* at a fixed
//! time whether or not earlier ones have finished, and its latency is
//! measured from that due time. A slow database therefore shows up as
//! latency (and as an achieved rate below target), never as a quietly lower
//! offered load: no coordinated omission.
//!
//! Choices are made here, in due order, from the stream's own seeded RNG,
//! so the mix is the same for the same `--seed` however the operations
//! interleave when they run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::pattern::Pattern;
use super::stats::Recorder;

/// When the run starts, measures and ends, and how hard it pushes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
    pub duration: Duration,
    pub pattern: Pattern,
    pub total_operations: Option<u64>,
}

impl Plan {
    pub fn new(
        warmup: Duration,
        duration: Duration,
        pattern: Pattern,
        total_operations: Option<u64>,
    ) -> Self {
        let start = Instant::now();
        // With only --total-operations the run ends on the count; a day is
        // "forever" for the clock.
        let length = if duration.is_zero() {
            Duration::from_secs(86_400)
        } else {
            duration
        };
        Plan {
            start,
            measure_from: start + warmup,
            end: start + warmup + length,
            duration: length,
            pattern,
            total_operations,
        }
    }

    /// Fraction of the target rate due at `at` (warmup runs at the start's).
    pub fn intensity(&self, at: Instant) -> f64 {
        let progress = at
            .saturating_duration_since(self.measure_from)
            .as_secs_f64()
            / self.duration.as_secs_f64();
        self.pattern.intensity(progress)
    }
}

/// Shared by every stream of one run.
pub struct Gate {
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    /// Measured operations dispatched, for --total-operations.
    issued: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Gate {
    pub fn new(max_in_flight: u32, shutdown: watch::Receiver<bool>) -> Self {
        Gate {
            in_flight: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            issued: AtomicU64::new(0),
            shutdown,
        }
    }

    /// Waits for operations still running, at most `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.in_flight.acquire_many(self.max_in_flight))
            .await
            .is_ok()
    }

    pub fn stopped(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Dispatches `choose()`'s operations at `rate` per second (times the
/// pattern's intensity) until the plan ends, the count is reached or
/// shutdown; each runs as its own task via `exec(op, due)`.
pub async fn drive<Op, C, E, F>(
    rate: f64,
    mut choose: C,
    exec: E,
    plan: &Plan,
    gate: &Gate,
    recorder: &Arc<Recorder>,
) where
    C: FnMut() -> Op,
    E: Fn(Op, Instant) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    if rate <= 0.0 {
        return;
    }
    let mut shutdown = gate.shutdown.clone();
    let mut due = plan.start;
    loop {
        if due >= plan.end || gate.stopped() {
            break;
        }
        if due >= plan.measure_from {
            let n = gate.issued.fetch_add(1, Ordering::Relaxed);
            if plan.total_operations.is_some_and(|t| n >= t) {
                break;
            }
        }
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = shutdown.changed() => break,
            }
        }
        let permit = match gate.in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                recorder.live.backlogged.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    p = gate.in_flight.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = shutdown.changed() => break,
                }
            }
        };
        let fut = exec(choose(), due);
        let rec = recorder.clone();
        tokio::spawn(async move {
            // A panicking operation must not vanish from the counts.
            if let Err(e) = tokio::spawn(fut).await {
                rec.panicked(e.to_string());
            }
            drop(permit);
        });
        // Floor the intensity so a pattern can never stall a stream.
        let r = rate * plan.intensity(due).max(0.01);
        due += Duration::from_secs_f64(1.0 / r);
    }
}

/// Expected operations of a stream over the measured run: the target the
/// achieved count is compared against.
pub fn expected_ops(rate: f64, plan: &Plan, measured: Duration) -> f64 {
    let share = measured.as_secs_f64() / plan.duration.as_secs_f64();
    let n = 1000;
    let mean = (0..n)
        .map(|i| plan.pattern.intensity(share * (i as f64 + 0.5) / n as f64))
        .sum::<f64>()
        / n as f64;
    rate * mean * measured.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_ops_follow_the_pattern() {
        let plan = Plan::new(
            Duration::ZERO,
            Duration::from_secs(100),
            Pattern::Steady,
            None,
        );
        let e = expected_ops(50.0, &plan, Duration::from_secs(100));
        assert!((e - 5000.0).abs() < 1e-6);
        let plan = Plan {
            pattern: Pattern::NightlyBatch,
            ..plan
        };
        // The first 70 % is the low band (10–30 %).
        let e = expected_ops(100.0, &plan, Duration::from_secs(70));
        assert!((0.10 * 7000.0..=0.30 * 7000.0).contains(&e), "{e}");
    }
}
