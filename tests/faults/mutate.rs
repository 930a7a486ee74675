//! The seeded mutation fuzzer: valid client byte streams (startup, simple
//! Query, Parse/Bind/Describe/Execute/Sync, COPY in and out, Flush,
//! Terminate), mutated a few times each (bit flips, interesting bytes and
//! lengths, insertions, deletions, duplications, truncation), sent in random
//! pieces and half-closed; the proxy must answer or close every one.
//!
//! Self-contained (std, rand, no test harness) so the long campaign in
//! `benches/faults.rs` runs the very same cases. A case is a pure function of
//! its seed: a failure prints the seed and the bytes to replay it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The table the COPY statements of the cases use; create it first.
pub const SETUP_SQL: &str = "CREATE TABLE IF NOT EXISTS fuzz_copy (a int, b text)";

/// One case: its seed, its bytes and where they are cut into writes.
#[derive(Debug, Clone)]
pub struct Case {
    pub seed: u64,
    pub bytes: Vec<u8>,
    pub cuts: Vec<usize>,
    pub mutations: Vec<&'static str>,
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn startup(rng: &mut SmallRng) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", "postgres"), ("database", "postgres")] {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    if rng.random_bool(0.5) {
        cstr(&mut body, "application_name");
        cstr(&mut body, "pgtape-fuzz");
    }
    if rng.random_bool(0.3) {
        cstr(&mut body, "client_encoding");
        cstr(&mut body, "UTF8");
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend(body);
    let mut out = Vec::new();
    // Sometimes ask for encryption first; the proxy answers N in line.
    match rng.random_range(0..10) {
        0 => out.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
        1 => out.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]),
        _ => {}
    }
    out.extend(p);
    out
}

const SIMPLE: &[&str] = &[
    "SELECT 1",
    "SELECT 'fuzz' || 42",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT 1/0",
    "SELECT generate_series(1, 5)",
    "SELECT 1; SELECT 2",
    "SET application_name = 'fuzzed'",
    "SELECT * FROM fuzz_copy LIMIT 3",
];

fn simple(rng: &mut SmallRng) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, SIMPLE[rng.random_range(0..SIMPLE.len())]);
    frame(b'Q', &b)
}

fn extended(rng: &mut SmallRng) -> Vec<u8> {
    let name = if rng.random_bool(0.5) { "" } else { "fz" };
    let mut out = Vec::new();
    let mut p = Vec::new();
    cstr(&mut p, name);
    cstr(&mut p, "SELECT $1::int + 1, $2::text");
    p.extend_from_slice(&2i16.to_be_bytes());
    p.extend_from_slice(&23u32.to_be_bytes());
    p.extend_from_slice(&25u32.to_be_bytes());
    out.extend(frame(b'P', &p));
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, name);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&2i16.to_be_bytes());
    for v in [rng.random_range(0..1000).to_string(), "text".to_string()] {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    out.extend(frame(b'B', &b));
    if rng.random_bool(0.5) {
        out.extend(frame(b'D', b"P\0"));
    }
    let max_rows: i32 = if rng.random_bool(0.3) { 1 } else { 0 };
    let mut e = vec![0];
    e.extend_from_slice(&max_rows.to_be_bytes());
    out.extend(frame(b'E', &e));
    if rng.random_bool(0.2) {
        out.extend(frame(b'H', b""));
    }
    if !name.is_empty() && rng.random_bool(0.5) {
        let mut c = vec![b'S'];
        cstr(&mut c, name);
        out.extend(frame(b'C', &c));
    }
    out.extend(frame(b'S', b""));
    out
}

fn copy_in(rng: &mut SmallRng) -> Vec<u8> {
    let mut q = Vec::new();
    cstr(&mut q, "COPY fuzz_copy FROM STDIN");
    let mut out = frame(b'Q', &q);
    for i in 0..rng.random_range(0..4) {
        out.extend(frame(b'd', format!("{i}\trow {i}\n").as_bytes()));
    }
    if rng.random_bool(0.9) {
        out.extend(frame(b'c', b""));
    } else {
        out.extend(frame(b'f', b"fuzz gave up\0"));
    }
    out
}

fn copy_out() -> Vec<u8> {
    let mut q = Vec::new();
    cstr(&mut q, "COPY (SELECT generate_series(1, 3)) TO STDOUT");
    frame(b'Q', &q)
}

/// A valid client stream.
fn valid(rng: &mut SmallRng) -> Vec<u8> {
    let mut out = startup(rng);
    for _ in 0..rng.random_range(1..6) {
        out.extend(match rng.random_range(0..10) {
            0..=3 => simple(rng),
            4..=6 => extended(rng),
            7..=8 => copy_in(rng),
            _ => copy_out(),
        });
    }
    if rng.random_bool(0.5) {
        out.extend(frame(b'X', b""));
    }
    out
}

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    3,
    4,
    5,
    7,
    8,
    9,
    0x7f,
    0x80,
    0xff,
    0x2710,
    0x2711,
    0x3fff_ffff,
    0x4000_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];
const INTERESTING_U8: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'Q', b'P', b'B', b'E', b'S', b'd', b'c',
];

/// Applies one random mutation; returns its name.
fn mutate(rng: &mut SmallRng, b: &mut Vec<u8>) -> &'static str {
    if b.is_empty() {
        b.push(rng.random());
        return "insert into nothing";
    }
    let at = rng.random_range(0..b.len());
    match rng.random_range(0..9) {
        0 => {
            b[at] ^= 1 << rng.random_range(0..8);
            "flip a bit"
        }
        1 => {
            b[at] = INTERESTING_U8[rng.random_range(0..INTERESTING_U8.len())];
            "set an interesting byte"
        }
        2 => {
            b[at] = rng.random();
            "set a random byte"
        }
        3 => {
            let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
            let end = (at + 4).min(b.len());
            b[at..end].copy_from_slice(&v.to_be_bytes()[..end - at]);
            "set an interesting length"
        }
        4 => {
            let n = rng.random_range(1..17);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            b.splice(at..at, bytes);
            "insert random bytes"
        }
        5 => {
            let end = (at + rng.random_range(1..33)).min(b.len());
            b.drain(at..end);
            "delete a range"
        }
        6 => {
            let end = (at + rng.random_range(1..65)).min(b.len());
            let dup = b[at..end].to_vec();
            b.splice(end..end, dup);
            "duplicate a range"
        }
        7 => {
            b.truncate(at);
            "truncate"
        }
        _ => {
            let other = rng.random_range(0..b.len());
            b.swap(at, other);
            "swap two bytes"
        }
    }
}

/// The case of `seed`: a valid stream mutated 0 to 4 times (one in ten
/// cases is left valid, the control that the proxy still serves them).
pub fn case(seed: u64) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut bytes = valid(&mut rng);
    let mut mutations = Vec::new();
    if !rng.random_bool(0.1) {
        for _ in 0..rng.random_range(1..5) {
            mutations.push(mutate(&mut rng, &mut bytes));
        }
    }
    let mut cuts: Vec<usize> = (0..rng.random_range(0..4))
        .map(|_| rng.random_range(0..=bytes.len()))
        .collect();
    cuts.sort_unstable();
    Case {
        seed,
        bytes,
        cuts,
        mutations,
    }
}

/// How the proxy dealt with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes came back, then the connection closed.
    Answered,
    /// The connection closed without a byte.
    Closed,
}

/// Sends `c` to `addr` in its pieces, half-closes, and reads until the
/// proxy closes; an error if it does not within `limit`.
pub fn run(addr: SocketAddr, c: &Case, limit: Duration) -> Result<Outcome, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    let mut from = 0;
    for &cut in c.cuts.iter().chain(std::iter::once(&c.bytes.len())) {
        // A proxy that has already closed refuses the rest: that is a close.
        if s.write_all(&c.bytes[from..cut]).is_err() {
            break;
        }
        from = cut;
    }
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + limit;
    let mut got = 0usize;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no close within {limit:?} ({got} bytes answered)"));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    Ok(if got > 0 {
        Outcome::Answered
    } else {
        Outcome::Closed
    })
}

/// What a run of many cases came to.
#[derive(Debug, Default)]
pub struct Tally {
    pub cases: u64,
    pub answered: u64,
    pub closed: u64,
    /// (seed, what went wrong, the case's bytes in hex), the first few.
    pub failures: Vec<(u64, String, String)>,
    pub failed: u64,
}

/// Runs the cases of seeds `first..first + n` against `addr` on `threads`
/// client threads.
pub fn run_many(addr: SocketAddr, first: u64, n: u64, threads: usize, limit: Duration) -> Tally {
    let next = AtomicU64::new(first);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + n {
                        return;
                    }
                    let c = case(seed);
                    let r = run(addr, &c, limit);
                    let mut t = tally.lock().unwrap();
                    t.cases += 1;
                    match r {
                        Ok(Outcome::Answered) => t.answered += 1,
                        Ok(Outcome::Closed) => t.closed += 1,
                        Err(e) => {
                            t.failed += 1;
                            if t.failures.len() < 10 {
                                let hex: String =
                                    c.bytes.iter().map(|b| format!("{b:02x}")).collect();
                                t.failures.push((
                                    seed,
                                    format!("{e}; mutations {:?}", c.mutations),
                                    hex,
                                ));
                            }
                        }
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap()
}
