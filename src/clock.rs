//! Time as pgtape writes and reads it: the wall clock in UTC microseconds
//! (the capture's and the replay's time base), durations as flags spell
//! them (`500ms`, `30s`), and the histogram that holds microsecond
//! latencies. A foundation: it knows nothing of captures or sessions.

use hdrhistogram::Histogram;

/// Current time in UTC microseconds; read once per chunk, not per message.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 30s, 5m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Durations above an hour are counted as an hour.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A histogram of microsecond durations. Fixed bounds: `saturating_record`
/// on an auto-resizing histogram clamps to its *initial* range instead of
/// growing (hdrhistogram 7).
pub fn hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, sigfig).expect("valid histogram bounds")
}
