//! Traffic patterns: the intensity (fraction of the target rate, 0–1) at each
//! point of a run, after seed 001's simulator. A pure function of the run's
//! progress so the scheduler stays deterministic and the curves are testable.
//!
//! Intensity bands: low 10–30 %, medium 40–70 %, high 80–95 %, peak 95–100 %.

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// The target rate throughout.
    #[default]
    Steady,
    /// Morning ramp-up (15 %), steady day (60 %), afternoon wind-down (25 %).
    BusinessHours,
    /// Baseline (40 %), spike at peak with high variance (30 %), calm (30 %).
    EcommerceRush,
    /// Background (70 %), batch burst (20 %), cooldown (10 %).
    NightlyBatch,
}

/// An intensity band as fractions of the target rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band(pub f64, pub f64);

pub const LOW: Band = Band(0.10, 0.30);
pub const MEDIUM: Band = Band(0.40, 0.70);
pub const HIGH: Band = Band(0.80, 0.95);
pub const PEAK: Band = Band(0.95, 1.00);

impl Band {
    /// A deterministic wobble inside the band: `waves` full periods over the
    /// phase, so "steady" traffic still breathes like a real one.
    fn wobble(self, x: f64, waves: f64) -> f64 {
        let mid = (self.0 + self.1) / 2.0;
        let half = (self.1 - self.0) / 2.0;
        mid + half * (std::f64::consts::TAU * waves * x).sin()
    }
}

fn lerp(a: f64, b: f64, x: f64) -> f64 {
    a + (b - a) * x.clamp(0.0, 1.0)
}

/// One phase: it covers `[start, end)` of the run and maps its own progress
/// (0–1) to an intensity.
struct Phase {
    end: f64,
    curve: fn(f64) -> f64,
}

const BUSINESS_HOURS: &[Phase] = &[
    // Ramp from the bottom of "low" to the top of "medium".
    Phase {
        end: 0.15,
        curve: |x| lerp(LOW.0, MEDIUM.1, x),
    },
    // Medium-to-high day traffic.
    Phase {
        end: 0.75,
        curve: |x| Band(MEDIUM.1, HIGH.1).wobble(x, 3.0),
    },
    Phase {
        end: 1.0,
        curve: |x| lerp(MEDIUM.1, LOW.0, x),
    },
];

const ECOMMERCE_RUSH: &[Phase] = &[
    Phase {
        end: 0.40,
        curve: |x| LOW.wobble(x, 2.0),
    },
    // Peak with fast oscillation: the "high variance" of a sale spike.
    Phase {
        end: 0.70,
        curve: |x| PEAK.wobble(x, 12.0),
    },
    Phase {
        end: 1.0,
        curve: |x| lerp(MEDIUM.1, LOW.0, x),
    },
];

const NIGHTLY_BATCH: &[Phase] = &[
    Phase {
        end: 0.70,
        curve: |x| LOW.wobble(x, 2.0),
    },
    Phase {
        end: 0.90,
        curve: |x| HIGH.wobble(x, 4.0),
    },
    Phase {
        end: 1.0,
        curve: |x| lerp(MEDIUM.1, MEDIUM.0, x),
    },
];

impl Pattern {
    /// Intensity at `progress` (0 = start of the measured run, 1 = its end);
    /// values outside 0–1 are clamped (warmup runs at the start's intensity).
    pub fn intensity(self, progress: f64) -> f64 {
        let p = if progress.is_finite() {
            progress.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let phases = match self {
            Pattern::Steady => return 1.0,
            Pattern::BusinessHours => BUSINESS_HOURS,
            Pattern::EcommerceRush => ECOMMERCE_RUSH,
            Pattern::NightlyBatch => NIGHTLY_BATCH,
        };
        let mut start = 0.0;
        for ph in phases {
            if p < ph.end || ph.end >= 1.0 {
                return (ph.curve)((p - start) / (ph.end - start));
            }
            start = ph.end;
        }
        unreachable!("the last phase ends at 1.0")
    }

    /// Mean intensity over the run (numerically): the share of the target a
    /// run with this pattern should deliver.
    pub fn mean_intensity(self) -> f64 {
        let n = 10_000;
        (0..n)
            .map(|i| self.intensity((i as f64 + 0.5) / n as f64))
            .sum::<f64>()
            / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(b: Band, v: f64) -> bool {
        v >= b.0 - 1e-9 && v <= b.1 + 1e-9
    }

    #[test]
    fn steady_is_the_target_rate() {
        for i in 0..=100 {
            assert_eq!(Pattern::Steady.intensity(i as f64 / 100.0), 1.0);
        }
    }

    #[test]
    fn business_hours_ramps_up_holds_and_winds_down() {
        let p = Pattern::BusinessHours;
        assert!(within(LOW, p.intensity(0.0)));
        assert!(p.intensity(0.05) < p.intensity(0.10));
        for i in 16..75 {
            let v = p.intensity(i as f64 / 100.0);
            assert!(within(Band(MEDIUM.1, HIGH.1), v), "day at {i}%: {v}");
        }
        assert!(p.intensity(0.80) > p.intensity(0.95));
        assert!(within(LOW, p.intensity(1.0)));
    }

    #[test]
    fn ecommerce_rush_spikes_to_peak_in_the_middle() {
        let p = Pattern::EcommerceRush;
        for i in 0..40 {
            assert!(
                within(LOW, p.intensity(i as f64 / 100.0)),
                "baseline at {i}%"
            );
        }
        for i in 40..70 {
            assert!(within(PEAK, p.intensity(i as f64 / 100.0)), "spike at {i}%");
        }
        for i in 70..=100 {
            let v = p.intensity(i as f64 / 100.0);
            assert!(
                (LOW.0 - 1e-9..=MEDIUM.1 + 1e-9).contains(&v),
                "calm at {i}%: {v}"
            );
        }
    }

    #[test]
    fn nightly_batch_is_quiet_then_bursts() {
        let p = Pattern::NightlyBatch;
        for i in 0..70 {
            assert!(
                within(LOW, p.intensity(i as f64 / 100.0)),
                "background at {i}%"
            );
        }
        for i in 70..90 {
            assert!(within(HIGH, p.intensity(i as f64 / 100.0)), "burst at {i}%");
        }
        for i in 90..=100 {
            assert!(
                within(MEDIUM, p.intensity(i as f64 / 100.0)),
                "cooldown at {i}%"
            );
        }
    }

    #[test]
    fn intensity_is_clamped_outside_the_run() {
        for p in Pattern::value_variants() {
            assert_eq!(p.intensity(-3.0), p.intensity(0.0));
            assert_eq!(p.intensity(7.0), p.intensity(1.0));
            assert_eq!(p.intensity(f64::NAN), p.intensity(0.0));
        }
    }

    #[test]
    fn mean_intensity_matches_the_phases() {
        assert!((Pattern::Steady.mean_intensity() - 1.0).abs() < 1e-9);
        // Nightly batch: 70 % at ~0.2, 20 % at ~0.875, 10 % at ~0.55.
        let m = Pattern::NightlyBatch.mean_intensity();
        assert!(
            (m - (0.7 * 0.2 + 0.2 * 0.875 + 0.1 * 0.55)).abs() < 0.02,
            "{m}"
        );
    }
}
