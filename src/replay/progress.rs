//! The progress line a replay draws on stderr when it is a terminal: a bar,
//! statements done of planned, ETA, and per side the rate, the worst lag and
//! the worst replayer's delay of the last half second. The progress ratio is
//! also a metric, terminal or not.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::worker::SideCtx;

/// What a side's sessions report between two ticks: the worst lag and delay
/// since the last tick (in µs), taken and reset by the progress task.
#[derive(Default)]
pub struct Recent {
    lag_us: AtomicU64,
    delay_us: AtomicU64,
}

impl Recent {
    /// Most statements are not the worst of their half second: a plain load
    /// rules them out, and only a new worst writes the shared line.
    pub fn record(&self, lag: Duration, delay: Duration) {
        for (slot, v) in [(&self.lag_us, lag), (&self.delay_us, delay)] {
            let v = v.as_micros() as u64;
            if v > slot.load(Ordering::Relaxed) {
                slot.fetch_max(v, Ordering::Relaxed);
            }
        }
    }

    fn take(&self) -> (u64, u64) {
        (
            self.lag_us.swap(0, Ordering::Relaxed),
            self.delay_us.swap(0, Ordering::Relaxed),
        )
    }
}

/// One side's figures for one tick.
pub struct SideTick<'a> {
    pub name: &'a str,
    pub rate: f64,
    pub lag_us: u64,
    pub delay_us: u64,
}

const BAR: usize = 24;

/// The progress line (without the carriage return that redraws it).
pub fn line(done: u64, total: u64, elapsed: Duration, sides: &[SideTick]) -> String {
    let share = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (share * BAR as f64).round() as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 {
        format!("{:.0}s", total.saturating_sub(done) as f64 / rate)
    } else {
        "?".into()
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let per_side: Vec<String> = sides
        .iter()
        .map(|s| {
            format!(
                "{} {:.0}/s lag {:.1} ms delay {:.1} ms",
                s.name,
                s.rate,
                ms(s.lag_us),
                ms(s.delay_us)
            )
        })
        .collect();
    format!(
        "[{}{}] {:>5.1}% {done}/{total}, ETA {eta} | {}",
        "#".repeat(filled),
        ".".repeat(BAR - filled),
        100.0 * share,
        per_side.join(" | ")
    )
}

/// The running progress task.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    terminal: bool,
}

impl Progress {
    /// Stops redrawing and ends the line, so what follows starts on its own.
    pub fn finish(self) {
        self.task.abort();
        if self.terminal {
            eprintln!();
        }
    }
}

/// Updates the progress metric every half second and, when stderr is a
/// terminal, redraws the progress line.
pub fn spawn(sides: Vec<Arc<SideCtx>>, total: u64) -> Progress {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (started, vec![0u64; sides.len()]);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let counts: Vec<u64> = sides
                .iter()
                .map(|s| s.done.load(Ordering::Relaxed))
                .collect();
            let done: u64 = counts.iter().sum();
            crate::metrics::replay::progress(done, total);
            if !terminal || total == 0 {
                continue;
            }
            let now = Instant::now();
            let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
            let ticks: Vec<SideTick> = sides
                .iter()
                .zip(counts.iter().zip(&last.1))
                .map(|(s, (n, before))| {
                    let (lag_us, delay_us) = s.recent.take();
                    SideTick {
                        name: s.name,
                        rate: n.saturating_sub(*before) as f64 / secs,
                        lag_us,
                        delay_us,
                    }
                })
                .collect();
            let text = line(done, total, started.elapsed(), &ticks);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{text}   ");
            let _ = err.flush();
            last = (now, counts);
        }
    });
    Progress { task, terminal }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_a_bar_an_eta_and_each_sides_rate_lag_and_delay() {
        let sides = [
            SideTick {
                name: "source",
                rate: 1500.0,
                lag_us: 2_400,
                delay_us: 150,
            },
            SideTick {
                name: "target",
                rate: 1200.0,
                lag_us: 30_000,
                delay_us: 90,
            },
        ];
        // A quarter done in 10 s: 30 s to go.
        let l = line(250, 1000, Duration::from_secs(10), &sides);
        assert!(
            l.starts_with(&format!("[{}{}]", "#".repeat(6), ".".repeat(18))),
            "{l}"
        );
        assert!(l.contains(" 25.0% 250/1000, ETA 30s"), "{l}");
        assert!(l.contains("source 1500/s lag 2.4 ms delay 0.1 ms"), "{l}");
        assert!(l.contains("target 1200/s lag 30.0 ms delay 0.1 ms"), "{l}");
        let full = line(1000, 1000, Duration::from_secs(40), &sides[..1]);
        assert!(
            full.starts_with(&format!("[{}]", "#".repeat(BAR))),
            "{full}"
        );
        assert!(full.contains("ETA 0s"), "{full}");
    }

    #[test]
    fn recent_keeps_the_worst_since_the_last_take() {
        let r = Recent::default();
        r.record(Duration::from_micros(300), Duration::from_micros(20));
        r.record(Duration::from_micros(100), Duration::from_micros(80));
        assert_eq!(r.take(), (300, 80));
        assert_eq!(r.take(), (0, 0), "taken and reset");
    }
}
