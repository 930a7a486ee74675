//! What a throw-away cluster needs of the host: the server binaries, an
//! unprivileged user when running as root, a free port, and commands run as
//! that user.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{ClusterError, io_err};

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| has(d))
        .ok_or(ClusterError::NoBinaries)
}

/// The unprivileged user to run as when we are root: `(uid, gid)`.
pub(super) fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam returns null or a pointer to a static passwd record,
        // read immediately.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    Some((65534, 65534))
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

pub(super) fn run(mut cmd: Command, run_as: Option<(u32, u32)>) -> Result<Output, ClusterError> {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let name = format!("{:?}", cmd.get_program());
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::Command {
            cmd: name.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            cmd: format!("{cmd:?}"),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}

pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), ClusterError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(io_err(path))? {
            chown_tree(&e.map_err(io_err(path))?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// psql lives beside the server binaries on Debian; fall back to PATH.
pub(super) fn psql_path(bindir: &Path) -> PathBuf {
    let p = bindir.join("psql");
    if p.is_file() {
        p
    } else {
        PathBuf::from("psql")
    }
}

/// True when `name` runs (used to skip optional peers in benchmarks, never tests).
pub fn have_command(name: impl AsRef<OsStr>) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
