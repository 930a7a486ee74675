//! Metrics, health and the admin console against real PostgreSQL with real
//! clients (pgbench, psql); and the Docker stack's files checked by parsing
//! (Docker itself is not needed).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use pgtape::capture::{Capture, Recorder, RecorderConfig, col};
use pgtape::cluster::ClusterOptions;
use pgtape::metrics::Exporter;
use pgtape::proxy::admin::{CaptureView, Console};
use pgtape::proxy::metrics::{ProxyMetrics, watch_capture};
use support::*;

/// `GET path` on the metrics listener: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (code, body)
}

/// Sum of the samples of `name` whose labels contain every `filter`.
fn sample(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let n = series.split('{').next().unwrap();
            n == name && filters.iter().all(|f| series.contains(f))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// An exporter served on a free port by its own small runtime.
struct Served {
    exporter: Exporter,
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn serve_exporter(upstream: &str) -> Served {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let exporter = Exporter::new("proxy");
    let addr = rt.block_on(async {
        exporter.health.probe_postgres(
            "upstream",
            upstream.to_string(),
            Duration::from_millis(200),
        );
        exporter
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .0
    });
    Served {
        exporter,
        addr,
        _rt: rt,
    }
}

/// A proxy recording to `dir` with metrics and the console wired as
/// `pgtape proxy --capture DIR --metrics ADDR --admin-users ...` wires them.
fn observed_proxy(upstream: &str, dir: &Path, admin_users: &[&str]) -> (Proxy, Recorder, Served) {
    let served = serve_exporter(upstream);
    let rec = Recorder::start(RecorderConfig::new(dir, upstream)).unwrap();
    let view = CaptureView::of(&rec, dir);
    let metrics = Arc::new(ProxyMetrics::new(&served.exporter));
    watch_capture(&served.exporter, metrics.clone(), view.clone());
    let console = Arc::new(Console::new(
        admin_users.iter().map(|u| u.to_string()).collect(),
        Some(view),
    ));
    let sender = rec.sender();
    let proxy = Proxy::start(upstream, move |cfg| {
        cfg.tap = Some(sender);
        cfg.metrics = metrics;
        cfg.console = console;
    });
    (proxy, rec, served)
}

/// psql against the admin console as `user`.
fn console(port: u16, user: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "pgtape",
            "-c",
            sql,
        ])
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

fn console_ok(port: u16, sql: &str) -> String {
    let out = console(port, "postgres", sql);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// SQL of every statement row in the capture at `dir`.
fn captured_sql(dir: &Path) -> Vec<String> {
    let cap = Capture::open(dir).unwrap();
    let mut out = Vec::new();
    for b in cap.scan(&[col::KIND, col::SQL]) {
        let b = b.unwrap();
        let kind = b.column_by_name(col::KIND).unwrap().as_string::<i32>();
        let sql = b.column_by_name(col::SQL).unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            if kind.value(i) == "statement" && !sql.is_null(i) {
                out.push(sql.value(i).to_string());
            }
        }
    }
    out
}

/// Polls `/metrics` until `done` holds, or fails showing the last scrape.
fn scrape_until(addr: SocketAddr, mut done: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, text) = get(addr, "/metrics");
        assert_eq!(code, 200);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never settled:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_agree_with_pgbench_and_with_the_capture() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let (proxy, rec, served) = observed_proxy(&db.addr(), &dir, &[]);
    run_ok(&mut pgbench(proxy.port(), &["-i", "-q", "-s", "1"]));
    let (clients, txns) = (3, 40);
    let out = run_ok(&mut pgbench(
        proxy.port(),
        &["-S", "-M", "extended", "-c", "3", "-t", "40", "-n"],
    ));
    assert!(stdout(&out).contains("number of transactions actually processed: 120/120"));
    // Every session closed and every event the tap sent is written.
    let text = scrape_until(served.addr, |t| {
        let sent = rec
            .counters()
            .sent
            .load(std::sync::atomic::Ordering::Relaxed) as f64;
        sample(t, "pgtape_proxy_client_connections", &[]) == 0.0
            && sample(t, "pgtape_capture_records_written_total", &[]) == sent
            && sample(t, "pgtape_capture_queue_depth", &[]) == 0.0
    });
    let sessions = sample(&text, "pgtape_proxy_client_connections_total", &[]);
    let statements = sample(&text, "pgtape_proxy_statements_total", &[]);
    let extended = sample(
        &text,
        "pgtape_proxy_statements_total",
        &["protocol=\"extended\""],
    );
    assert!(extended >= (clients * txns) as f64, "{text}");
    assert_eq!(
        sample(&text, "pgtape_proxy_statement_duration_seconds_count", &[]),
        statements
    );
    // One connect and one disconnect row per session, one row per statement.
    assert_eq!(
        sample(&text, "pgtape_capture_records_written_total", &[]),
        statements + 2.0 * sessions,
        "{text}"
    );
    assert_eq!(
        sample(&text, "pgtape_capture_records_dropped_total", &[]),
        0.0
    );
    assert!(sample(&text, "pgtape_proxy_bytes_total", &["client_to_upstream"]) > 0.0);
    assert!(sample(&text, "pgtape_proxy_bytes_total", &["upstream_to_client"]) > 0.0);
    assert_eq!(sample(&text, "pgtape_proxy_upstream_connections", &[]), 0.0);
    assert_eq!(sample(&text, "pgtape_ready", &[]), 1.0);
    assert!(text.contains("pgtape_build_info{"), "{text}");
    drop(proxy);
    let stats = rec.close().unwrap();
    let sql = captured_sql(&dir);
    assert_eq!(sql.len() as f64, statements, "capture vs metrics");
    assert_eq!(
        sql.iter()
            .filter(|s| s.contains("SELECT abalance FROM pgbench_accounts"))
            .count(),
        clients * txns,
        "pgbench's executed statements in the capture"
    );
    assert_eq!(stats.dropped, 0);
}

#[test]
fn health_turns_503_while_the_upstream_is_down() {
    let mut db = cluster(&ClusterOptions::default());
    let served = serve_exporter(&db.addr());
    let wait_for = |code: u16| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (c, body) = get(served.addr, "/health");
            if c == code {
                return body;
            }
            assert!(Instant::now() < deadline, "/health stayed {c}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(wait_for(200), "ok\n");
    db.stop().unwrap();
    let body = wait_for(503);
    assert!(
        body.contains("upstream") && body.contains(&db.addr()),
        "{body}"
    );
    let (_, text) = get(served.addr, "/metrics");
    assert_eq!(sample(&text, "pgtape_ready", &[]), 0.0);
    db.restart().unwrap();
    wait_for(200);
    assert_eq!(get(served.addr, "/nope").0, 404);
}

#[test]
fn admin_console_answers_and_pause_opens_a_gap_in_the_capture() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let (proxy, rec, _served) = observed_proxy(&db.addr(), &dir, &[]);
    let port = proxy.port();
    let version = console_ok(port, "SHOW VERSION");
    assert!(
        version.contains(&format!("pgtape {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    // An application session that stays open across the pause window.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, conn) = rt
        .block_on(tokio_postgres::connect(
            &conn_str(port),
            tokio_postgres::NoTls,
        ))
        .unwrap();
    rt.spawn(conn);
    let q = |sql: &str| {
        rt.block_on(app.simple_query(sql)).unwrap();
    };
    q("SELECT 'before pause'");
    let sessions = console_ok(port, "SHOW SESSIONS");
    let header = sessions.lines().next().unwrap();
    assert_eq!(
        header,
        "session_id|user|database|application_name|client_addr|connected_at|statements"
    );
    let app_row = sessions
        .lines()
        .find(|l| l.contains("|postgres|postgres|"))
        .unwrap_or_else(|| panic!("the app session is listed:\n{sessions}"));
    assert!(app_row.ends_with("|1"), "one statement so far: {app_row}");

    assert!(console_ok(port, "SHOW CAPTURE").contains("\nrecording|"));
    console_ok(port, "PAUSE CAPTURE;");
    let paused = console_ok(port, "show capture");
    assert!(paused.contains("\npaused|"), "{paused}");
    q("SELECT 'during pause'");
    run_ok(&mut psql(
        port,
        &["-c", "SELECT 'new session during pause'"],
    ));
    console_ok(port, "RESUME CAPTURE");
    q("SELECT 'after resume'");
    drop(app);

    let stats = console_ok(port, "SHOW STATS");
    assert!(stats.starts_with("fingerprint|calls|total_ms|mean_ms|max_ms|rows|errors|query\n"));
    assert!(stats.contains("|SELECT ?\n"), "{stats}");
    let bad = console(port, "postgres", "DROP TABLE x");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown command"));

    let capture = console_ok(port, "SHOW CAPTURE");
    let fields: Vec<&str> = capture.lines().nth(1).unwrap().split('|').collect();
    assert_eq!(fields[0], "recording");
    assert_eq!(fields[1], rec.info().capture_id);
    assert_eq!(
        fields[9], "2",
        "two statements skipped while paused: {capture}"
    );

    drop(proxy);
    rec.close().unwrap();
    let sql = captured_sql(&dir);
    assert!(sql.iter().any(|s| s == "SELECT 'before pause'"), "{sql:?}");
    assert!(sql.iter().any(|s| s == "SELECT 'after resume'"), "{sql:?}");
    assert!(!sql.iter().any(|s| s.contains("during pause")), "{sql:?}");
}

#[test]
fn admin_console_refuses_users_not_in_admin_users() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let (proxy, _rec, served) = observed_proxy(&db.addr(), &tmp.path().join("cap"), &["alice"]);
    let out = console(proxy.port(), "bob", "SHOW VERSION");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"bob\" is not an admin") && err.contains("--admin-users"),
        "{err}"
    );
    let out = console(proxy.port(), "alice", "SHOW VERSION");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, text) = get(served.addr, "/metrics");
    assert_eq!(
        sample(&text, "pgtape_proxy_admin_connections_total", &["refused"]),
        1.0
    );
    // Ordinary sessions are unaffected by the console's access list.
    run_ok(&mut psql(proxy.port(), &["-c", "SELECT 1"]));
}

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Every `expr` string in a Grafana dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_metric_a_dashboard_queries_is_exported_and_every_export_is_shown() {
    use pgtape::metrics::names;
    let mut queried = std::collections::BTreeSet::new();
    for d in ["proxy", "workload", "replay"] {
        let path = repo(&format!("docker/grafana/dashboards/{d}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut found = Vec::new();
        exprs(&json, &mut found);
        assert!(!found.is_empty(), "{} has no queries", path.display());
        for e in &found {
            let series: Vec<&str> = e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("pgtape_"))
                .collect();
            assert!(
                !series.is_empty(),
                "{d}: query without a pgtape metric: {e}"
            );
            for s in series {
                assert!(
                    names::is_exported(s),
                    "{d} dashboard queries {s}, which pgtape does not export (src/metrics/names.rs)"
                );
                queried.insert(s.to_string());
            }
        }
    }
    for (name, kind, _) in names::ALL {
        assert!(
            names::series(name, *kind)
                .iter()
                .any(|s| queried.contains(s)),
            "{name} is exported but no dashboard shows it"
        );
    }
}

/// Parses the stack's YAML with Python's yaml module (PyYAML) and checks
/// that what it references exists.
#[test]
fn compose_prometheus_and_grafana_files_parse_and_reference_what_exists() {
    const CHECK: &str = r#"
import json, os, sys
try:
    import yaml
except ImportError:
    sys.exit("PyYAML is missing: pip install pyyaml")
root = sys.argv[1]
load = lambda p: yaml.safe_load(open(os.path.join(root, p)))
errors = []
compose = load("docker-compose.yml")
services = compose["services"]
for need in ["source", "target", "redis", "proxy", "workload", "replay", "prometheus", "grafana"]:
    if need not in services:
        errors.append(f"service {need} missing")
for name, s in services.items():
    b = s.get("build")
    if b:
        df = os.path.join(root, b.get("context", "."), b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            errors.append(f"{name}: {df} missing")
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            if not os.path.exists(os.path.join(root, src)):
                errors.append(f"{name}: volume source {src} missing")
        elif src not in (compose.get("volumes") or {}):
            errors.append(f"{name}: named volume {src} not declared")
    for d in s.get("depends_on", {}):
        if d not in services:
            errors.append(f"{name} depends on unknown service {d}")
env = services["workload"]["environment"]
for var in ["EVENTS_PER_SECOND", "QUERIES_PER_SECOND", "ORGANIZATIONS", "USERS_PER_ORG", "CACHE_HIT_TARGET", "READ_WRITE_RATIO"]:
    if var not in env:
        errors.append(f"workload: {var} not passed")
prom = load("docker/prometheus.yml")
scraped = set()
for job in prom["scrape_configs"]:
    for sc in job["static_configs"]:
        for t in sc["targets"]:
            host, port = t.split(":")
            scraped.add(host)
            cmd = " ".join(services.get(host, {}).get("command", []))
            if host not in services:
                errors.append(f"prometheus scrapes unknown service {host}")
            elif f"--metrics=0.0.0.0:{port}" not in cmd:
                errors.append(f"prometheus scrapes {t} but {host} serves metrics elsewhere: {cmd}")
for name, s in services.items():
    if "--metrics=" in " ".join(s.get("command", [])) and name not in scraped:
        errors.append(f"{name} serves metrics that prometheus does not scrape")
ds = load("docker/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
prov = load("docker/grafana/provisioning/dashboards/pgtape.yml")["providers"][0]
mounted = [v for v in services["grafana"]["volumes"] if v.split(":")[1] == prov["options"]["path"]]
if not mounted:
    errors.append("grafana: the dashboards provider path is not mounted")
for d in ["proxy", "workload", "replay"]:
    j = json.load(open(os.path.join(root, f"docker/grafana/dashboards/{d}.json")))
    for p in j["panels"]:
        if p["datasource"]["uid"] != ds["uid"]:
            errors.append(f"{d}: panel {p['title']} uses datasource {p['datasource']['uid']}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
"#;
    let out = Command::new("python3")
        .args(["-c", CHECK, env!("CARGO_MANIFEST_DIR")])
        .output()
        .expect("python3 is needed to parse the YAML of the Docker stack");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workload_metrics_show_operations_cache_pool_and_business_figures() {
    use pgtape::workload::{self, Profile, SetupConfig, WorkloadConfig};
    let db = cluster(&ClusterOptions::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exporter = Exporter::new("workload");
    // The only global install in this test binary: workload code records
    // through the facade's macros.
    assert!(exporter.install_global());
    let addr = rt.block_on(async {
        workload::setup(&SetupConfig::new(
            db.url("postgres"),
            Profile::Analytics,
            5,
            20,
        ))
        .await
        .unwrap();
        exporter
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .0
    });
    let mut cfg = WorkloadConfig::new(db.url("postgres"), Profile::Analytics);
    (cfg.duration, cfg.warmup, cfg.connections) = (Duration::from_secs(3), Duration::ZERO, 4);
    cfg.events_per_second = 200.0;
    cfg.queries_per_second = 100.0;
    cfg.redis_url = None;
    let exp = exporter.clone();
    let summary = rt
        .block_on(workload::run_observed(
            &cfg,
            std::future::pending(),
            move |rec| pgtape::workload::metrics::observe(&exp, rec),
        ))
        .unwrap();
    let (_, text) = get(addr, "/metrics");
    let ops = sample(&text, "pgtape_workload_operations_total", &[]);
    let summed: u64 = summary.operations.iter().map(|o| o.total).sum();
    assert!(
        ops >= summed as f64 && ops > 0.0,
        "{ops} vs {summed}\n{text}"
    );
    assert!(
        sample(
            &text,
            "pgtape_workload_operations_total",
            &["kind=\"dashboard\""]
        ) > 0.0
    );
    assert!(
        sample(
            &text,
            "pgtape_workload_events_total",
            &["event_type=\"page_view\""]
        ) > 0.0
    );
    assert!(sample(&text, "pgtape_workload_cache_lookups_total", &[]) > 0.0);
    assert!(sample(&text, "pgtape_workload_active_organizations", &[]) >= 1.0);
    assert_eq!(
        sample(&text, "pgtape_workload_pool_max_connections", &[]),
        4.0
    );
    assert!(
        sample(
            &text,
            "pgtape_workload_operation_duration_seconds_count",
            &[]
        ) == ops,
        "{text}"
    );
}

/// A replay's metrics while it runs: the session is held at its last
/// statement by an advisory lock the test owns, so the scrape sees every
/// statement before it counted once, with a lag and a delay each.
#[test]
fn replay_metrics_count_statements_lag_and_delay_while_it_runs() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("cap");
    let rec = Recorder::start(RecorderConfig::new(&capture, db.addr())).unwrap();
    {
        let sender = rec.sender();
        let proxy = Proxy::start(&db.addr(), |cfg| cfg.tap = Some(sender));
        let mut args = vec![];
        for sql in [
            "SELECT 1",
            "SELECT 2",
            "SELECT 3",
            "SELECT pg_advisory_lock(42)",
        ] {
            args.extend(["-c", sql]);
        }
        run_ok(&mut psql(proxy.port(), &args));
    }
    rec.close().unwrap();
    // The test's own session takes lock 42 and keeps it until its stdin closes.
    let mut holder = psql(db.port(), &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_holder = holder.stdin.take().unwrap();
    writeln!(to_holder, "SELECT pg_advisory_lock(42);\n\\echo locked").unwrap();
    let mut from_holder = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("locked") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut from_holder, &mut line).unwrap() > 0,
            "psql ended before taking the lock"
        );
    }
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut replay = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .arg("replay")
        .arg(&capture)
        .args(["--source", &db.url("postgres"), "--speed", "1"])
        .args(["--metrics", &addr.to_string(), "--format", "json"])
        .arg("--results")
        .arg(tmp.path().join("results"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Poll until the listener is up and the three statements before the
    // lock are counted (the replay cannot get past the fourth).
    let deadline = Instant::now() + Duration::from_secs(30);
    let ok = |t: &str| {
        sample(
            t,
            "pgtape_replay_statements_total",
            &["side=\"source\"", "outcome=\"ok\""],
        )
    };
    let text = loop {
        assert!(
            Instant::now() < deadline,
            "the replay's metrics never showed 3 statements"
        );
        assert!(
            replay.try_wait().unwrap().is_none(),
            "the replay ended early"
        );
        if std::net::TcpStream::connect(addr).is_ok() {
            let (code, text) = get(addr, "/metrics");
            assert_eq!(code, 200);
            if ok(&text) == 3.0 {
                break text;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let side = ["side=\"source\""];
    assert_eq!(
        sample(&text, "pgtape_replay_statements_planned", &[]),
        4.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "pgtape_replay_sessions_active", &side),
        1.0,
        "{text}"
    );
    for h in ["pgtape_replay_lag_seconds", "pgtape_replay_delay_seconds"] {
        assert_eq!(
            sample(&text, &format!("{h}_count"), &side),
            3.0,
            "{h}\n{text}"
        );
    }
    assert!(
        sample(&text, "pgtape_replay_delay_seconds_sum", &side)
            <= sample(&text, "pgtape_replay_lag_seconds_sum", &side),
        "the replayer's delay is part of the lag\n{text}"
    );
    // Release the lock: the replay finishes its last statement and ends.
    drop(to_holder);
    assert!(holder.wait().unwrap().success());
    let out = replay.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["sides"][0]["ok"], 4, "{summary}");
}
