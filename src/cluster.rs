//! Throw-away PostgreSQL clusters built from the local server binaries: a
//! fresh data directory in a temp dir, a free port on 127.0.0.1, a chosen
//! authentication method and optional TLS. Used by the tests and by
//! `pgtape demo`; stopped (immediate mode) and removed on drop.
//!
//! initdb refuses to run as root, so when pgtape runs as root the data
//! directory is handed to an unprivileged user (`postgres`, else `nobody`) and
//! every server binary runs as that user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use thiserror::Error;

mod host;
use host::{chown_tree, free_port, psql_path, run, unprivileged_user};
pub use host::{find_bindir, have_command};

/// The superuser every throw-away cluster has, and its password.
pub const SUPERUSER: &str = "postgres";
pub const PASSWORD: &str = "pgtape";

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); \
         install them, e.g. `apt-get install postgresql` on Debian or Ubuntu"
    )]
    NoBinaries,
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Auth {
    #[default]
    Trust,
    Md5,
    ScramSha256,
}

impl Auth {
    fn hba(self) -> &'static str {
        match self {
            Auth::Trust => "trust",
            Auth::Md5 => "md5",
            Auth::ScramSha256 => "scram-sha-256",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub auth: Auth,
    /// PEM certificate and key; enables `ssl = on`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra `postgresql.conf` lines.
    pub settings: Vec<String>,
}

/// A running throw-away cluster.
#[derive(Debug)]
pub struct Cluster {
    bindir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    running: bool,
}

fn make_root() -> Result<PathBuf, ClusterError> {
    use rand::Rng;
    let tag: u64 = rand::rng().random();
    let root = std::env::temp_dir().join(format!("pgtape-cluster-{tag:016x}"));
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    Ok(root)
}

/// initdb once per process and auth method; clusters start from a copy.
fn template(
    bindir: &Path,
    auth: Auth,
    run_as: Option<(u32, u32)>,
) -> Result<PathBuf, ClusterError> {
    static TEMPLATES: OnceLock<Mutex<HashMap<Auth, PathBuf>>> = OnceLock::new();
    let mut map = TEMPLATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&auth) {
        return Ok(p.clone());
    }
    let root = make_root()?;
    let pwfile = root.join("pwfile");
    std::fs::write(&pwfile, PASSWORD).map_err(io_err(&pwfile))?;
    let data = root.join("data");
    if let Some((uid, gid)) = run_as {
        chown_tree(&root, uid, gid)?;
    }
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D").arg(&data).args([
        "-U",
        SUPERUSER,
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]);
    cmd.arg(format!("--pwfile={}", pwfile.display()));
    cmd.args(["--auth-local=trust", &format!("--auth-host={}", auth.hba())]);
    run(cmd, run_as)?;
    if auth == Auth::Md5 {
        // The password must be stored as an md5 hash for md5 auth to work.
        append(&data.join("postgresql.conf"), "password_encryption = md5\n")?;
    }
    map.insert(auth, data.clone());
    Ok(data)
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(text.as_bytes()).map_err(io_err(path))
}

impl Cluster {
    /// Creates and starts a cluster.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let bindir = find_bindir()?;
        let run_as = unprivileged_user();
        let template = template(&bindir, opts.auth, run_as)?;
        let root = make_root()?;
        let data = root.join("data");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&template).arg(&data);
        run(cp, None)?;
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 200\nshared_buffers = 64MB\nlog_min_messages = warning\n",
        );
        conf.push_str(&format!("unix_socket_directories = '{}'\n", root.display()));
        if let Some((cert, key)) = &opts.tls {
            for (src, name) in [(cert, "server.crt"), (key, "server.key")] {
                let dst = data.join(name);
                std::fs::copy(src, &dst).map_err(io_err(src))?;
                std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(io_err(&dst))?;
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        if opts.auth == Auth::Md5 {
            conf.push_str("password_encryption = md5\n");
        }
        for s in &opts.settings {
            conf.push_str(s);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf)?;
        if let Some((uid, gid)) = run_as {
            chown_tree(&root, uid, gid)?;
        }
        let mut c = Cluster {
            bindir,
            root,
            data,
            port: 0,
            run_as,
            running: false,
        };
        c.boot()?;
        Ok(c)
    }

    /// Starts the server on a free port (retrying if another process took it).
    fn boot(&mut self) -> Result<(), ClusterError> {
        let mut last = None;
        for _ in 0..5 {
            let port = if self.port == 0 {
                free_port()
            } else {
                self.port
            };
            match self.pg_ctl(&["start", "-w", "-t", "60", "-o", &format!("-p {port}")]) {
                Ok(_) => {
                    self.port = port;
                    self.running = true;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, ClusterError> {
        let mut cmd = Command::new(self.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(args);
        run(cmd, self.run_as)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the server's Unix socket (`-h` for client tools).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// A `postgres://` URL with the superuser's credentials over TCP.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Runs SQL with psql over the Unix socket as the superuser; returns stdout
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = Command::new(psql_path(&self.bindir));
        cmd.arg("-h").arg(&self.root);
        cmd.args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            database,
        ]);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        let out = run(cmd, self.run_as)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Stops the server (fast shutdown), keeping the data directory.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if self.running {
            self.pg_ctl(&["stop", "-m", "fast", "-w"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server the hard way (immediate shutdown: connections cut,
    /// crash recovery at the next start), as a host that goes away would.
    pub fn stop_immediate(&mut self) -> Result<(), ClusterError> {
        if self.running {
            self.pg_ctl(&["stop", "-m", "immediate", "-w"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            self.boot()?;
        }
        Ok(())
    }

    /// A new cluster whose starting state is a copy of this one's (the server
    /// is stopped for the copy and started again).
    pub fn duplicate(&mut self) -> Result<Cluster, ClusterError> {
        let was_running = self.running;
        self.stop()?;
        let root = make_root()?;
        let data = root.join("data");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.data).arg(&data);
        let copied = run(cp, None);
        if was_running {
            self.restart()?;
        }
        copied?;
        std::fs::remove_file(data.join("postmaster.pid")).ok();
        let conf = data.join("postgresql.conf");
        append(
            &conf,
            &format!("unix_socket_directories = '{}'\n", root.display()),
        )?;
        if let Some((uid, gid)) = self.run_as {
            chown_tree(&root, uid, gid)?;
        }
        let mut c = Cluster {
            bindir: self.bindir.clone(),
            root,
            data,
            port: 0,
            run_as: self.run_as,
            running: false,
        };
        c.boot()?;
        Ok(c)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
        if std::env::var_os("PGTAPE_KEEP_CLUSTERS").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
