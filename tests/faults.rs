//! The fault campaign of issue 16, kept in the suite: malformed and mutated
//! client bytes while real traffic goes through the same proxy, a killed and
//! restarted proxy, a full filesystem under the capture, a thousand clients
//! at once, an upstream restart under traffic, bad command lines; and one
//! regression test per defect the campaign found, named after what broke.
//!
//! Every test runs against real PostgreSQL clusters; waits are bounded reads
//! and polls of a condition, never sleeps standing in for synchronisation.
//! The long campaign (a million fuzz cases, a ten-minute soak) is
//! `cargo bench --bench faults`.

#[path = "faults/capture.rs"]
mod capture;
#[path = "faults/cli.rs"]
mod cli;
#[path = "faults/disk_full.rs"]
mod disk_full;
#[path = "faults/fuzz.rs"]
mod fuzz;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/malformed.rs"]
mod malformed;
#[path = "faults/mutate.rs"]
mod mutate;
#[path = "faults/replay.rs"]
mod replay;
#[path = "faults/startup.rs"]
mod startup;
mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgtape::wire::messages::parse_error;

/// A StartupMessage for protocol `version` with `params`.
pub fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// The StartupMessage of user and database `postgres`, protocol 3.0.
pub fn startup_postgres() -> Vec<u8> {
    startup(196608, &[("user", "postgres"), ("database", "postgres")])
}

/// A regular frame: tag, length, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A simple Query frame.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

/// An 8-byte startup-phase request (SSLRequest, GSSENCRequest) of `code`.
pub fn request(code: u32) -> Vec<u8> {
    let mut p = 8u32.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p
}

/// What a raw client read before it stopped.
#[derive(Debug, Default)]
pub struct Reply {
    pub frames: Vec<(u8, Vec<u8>)>,
    /// The server (the proxy) closed the connection.
    pub closed: bool,
}

impl Reply {
    pub fn count(&self, tag: u8) -> usize {
        self.frames.iter().filter(|(t, _)| *t == tag).count()
    }

    /// The SQLSTATE of the first ErrorResponse.
    pub fn error_code(&self) -> Option<String> {
        self.frames
            .iter()
            .find(|(t, _)| *t == b'E')
            .map(|(_, b)| String::from_utf8_lossy(parse_error(b).unwrap().code).into_owned())
    }

    /// The text of every DataRow's first column.
    pub fn first_values(&self) -> Vec<String> {
        self.frames
            .iter()
            .filter(|(t, _)| *t == b'D')
            .map(|(_, b)| {
                let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
                String::from_utf8_lossy(&b[6..6 + len]).into_owned()
            })
            .collect()
    }
}

/// Reads regular frames until `stop` says enough, the peer closes, or
/// `limit` passes (a failing test's bound, not a pacing). A single-byte
/// answer to SSLRequest/GSSENCRequest is read as a frame with an empty body
/// when `byte_first` is set.
pub fn read_reply(
    sock: &mut TcpStream,
    byte_first: bool,
    limit: Duration,
    mut stop: impl FnMut(&Reply) -> bool,
) -> Reply {
    let deadline = Instant::now() + limit;
    let mut r = Reply::default();
    let mut buf = Vec::new();
    let mut byte_pending = byte_first;
    loop {
        if byte_pending && !buf.is_empty() {
            r.frames.push((buf.remove(0), Vec::new()));
            byte_pending = false;
        }
        while !byte_pending && buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len < 4 || buf.len() < len + 1 {
                break;
            }
            let body = buf[5..len + 1].to_vec();
            r.frames.push((buf[0], body));
            buf.drain(..len + 1);
        }
        if stop(&r) {
            return r;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no answer within {limit:?}; got {:?}",
            r.frames
        );
        sock.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 8192];
        match sock.read(&mut chunk) {
            Ok(0) => {
                r.closed = true;
                return r;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                r.closed = true;
                return r;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}; got {:?}", r.frames),
        }
    }
}

/// Reads until the peer closes (bounded by 20 s).
pub fn read_to_close(sock: &mut TcpStream) -> Reply {
    read_reply(sock, false, Duration::from_secs(20), |_| false)
}

/// Polls `cond` every 20 ms until it holds, failing after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free port on 127.0.0.1 (released just before the proxy binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pgtape proxy` as a child process; killed (SIGKILL) when dropped unless
/// already waited for.
pub struct ProxyProcess {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl ProxyProcess {
    /// Starts `pgtape proxy --upstream upstream` with `extra` flags and waits
    /// until it accepts connections. Its log goes to `log`.
    pub fn start(upstream: &str, extra: &[&str], log: &Path) -> ProxyProcess {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgtape"))
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", upstream])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let log = log.to_path_buf();
        wait_for(Duration::from_secs(60), "the proxy to listen", || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "proxy exited early: {status}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        ProxyProcess { child, port, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Files in `dir` whose name ends with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A small tmpfs, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `at`, or says why it cannot.
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a tmpfs needs root".into());
        }
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Takes every free byte of the filesystem under `path` with one file.
pub fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [64 * 1024, 4096, 512, 1] {
        let zeros = vec![0u8; chunk];
        while std::io::Write::write_all(&mut f, &zeros).is_ok() {}
    }
}
