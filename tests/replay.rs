//! The replayer against real PostgreSQL clusters.

mod support;

use pgtape::cluster::{Auth, ClusterOptions};
use pgtape::replay::client::{Client, Extended};
use pgtape::replay::conn_opts::ConnOpts;
use support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn client_authenticates_with_trust_md5_scram_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    for (auth, tls) in [
        (Auth::Trust, false),
        (Auth::Md5, false),
        (Auth::ScramSha256, false),
        (Auth::ScramSha256, true),
    ] {
        let db = cluster(&ClusterOptions {
            auth,
            tls: tls.then(|| (cert.clone(), key.clone())),
            ..Default::default()
        });
        let mode = if tls { "require" } else { "disable" };
        let opts = ConnOpts::parse(&format!("{}?sslmode={mode}", db.url("postgres"))).unwrap();
        rt().block_on(async {
            let mut c = Client::connect(&opts, "postgres", &[])
                .await
                .unwrap_or_else(|e| panic!("{auth:?} tls={tls}: {e}"));
            let out = c
                .simple(b"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .await
                .unwrap();
            assert_eq!(
                (&*out.command_tag, out.rows(), out.error.as_ref()),
                ("SELECT 1", 1, None)
            );
            let cols: Vec<(&str, u32)> = out
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_oid))
                .collect();
            assert_eq!(cols, [("ssl", 16)]);
            c.terminate().await;
        });
        if auth != Auth::Trust {
            let bad = ConnOpts::parse(&format!(
                "postgres://postgres:wrong@{}/postgres?sslmode={mode}",
                db.addr()
            ))
            .unwrap();
            let err = rt()
                .block_on(Client::connect(&bad, "postgres", &[]))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("28P01") && err.contains(":***@"), "{err}");
        }
    }
}

#[test]
fn named_statements_survive_discard_all_and_pages_sum() {
    let db = cluster(&ClusterOptions::default());
    let opts = ConnOpts::parse(&db.url("postgres")).unwrap();
    rt().block_on(async {
        let mut c = Client::connect(&opts, "postgres", &[]).await.unwrap();
        let one = 1i32.to_be_bytes();
        let x = Extended {
            sql: b"SELECT g FROM generate_series($1::int4, 10) g",
            param_oids: &[23],
            param_formats: &[1],
            params: &[Some(&one)],
            result_formats: &[1],
            max_rows: 0,
            named: true,
        };
        let first = c.extended(&x).await.unwrap();
        assert_eq!((first.rows(), first.error.as_ref()), (10, None));
        let again = c.extended(&x).await.unwrap();
        assert_eq!(again, first);
        c.simple(b"DISCARD ALL").await.unwrap();
        let after = c.extended(&x).await.unwrap();
        assert_eq!(after, first, "re-prepared after DISCARD ALL");
        c.simple(b"BEGIN").await.unwrap();
        let paged = c.extended(&Extended { max_rows: 3, ..x }).await.unwrap();
        assert_eq!((paged.hash, paged.error.as_ref()), (first.hash, None));
        c.simple(b"COMMIT").await.unwrap();
        let failing = c
            .extended(&Extended {
                sql: b"SELECT 1/0",
                param_oids: &[],
                param_formats: &[],
                params: &[],
                ..x
            })
            .await
            .unwrap();
        assert_eq!(failing.error.as_ref().map(|e| e.0.as_str()), Some("22012"));
        let copy = c
            .simple(b"CREATE TEMP TABLE t(a int); COPY t FROM STDIN")
            .await
            .unwrap();
        assert_eq!(copy.error.as_ref().map(|e| e.0.as_str()), Some("57014"));
        assert_eq!(
            c.simple(b"SELECT 1").await.unwrap().rows(),
            1,
            "the session goes on"
        );
        // Each statement reports its own result columns, though a repeated
        // RowDescription is parsed once.
        for (sql, want) in [
            (&b"SELECT 1 AS a"[..], &[("a", 23)][..]),
            (b"SELECT 2 AS a", &[("a", 23)]),
            (b"SELECT 'x'::text AS b, 1 AS a", &[("b", 25), ("a", 23)]),
            (b"SET work_mem = '4MB'", &[]),
            (b"SELECT 3 AS a", &[("a", 23)]),
        ] {
            let out = c.simple(sql).await.unwrap();
            let got: Vec<(&str, u32)> = out
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_oid))
                .collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(sql));
        }
    });
}

use std::collections::HashMap;
use std::path::Path;

use pgtape::cluster::Cluster;
use pgtape::replay::replay;
use support::replay::{config, read_side, record, replay_args};

#[test]
fn pgbench_capture_replays_on_two_copies_with_the_captured_results() {
    let mut a = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(a.port(), &["-i", "-q", "-s", "1"]));
    let b = a.duplicate().unwrap();
    let c = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut pgbench(
            port,
            &[
                "-n", "-S", "-M", "prepared", "-c", "2", "-j", "2", "-t", "150",
            ],
        ));
        run_ok(&mut pgbench(
            port,
            &[
                "-n", "-S", "-M", "simple", "-c", "2", "-j", "2", "-t", "150",
            ],
        ));
    });
    let results = dir.path().join("results");
    let cfg = config(&capture, &results, &b, Some(&c), &["--max-rate"]);
    let summary = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let captured = summary.captured_statements as usize;
    assert!(
        captured >= 600,
        "4 clients × 150 selects at least: {captured}"
    );
    for side in ["source", "target"] {
        let s = read_side(&results.join(format!("{side}.parquet")));
        assert_eq!(s.status.len(), captured, "{side}: every statement replayed");
        assert!(
            s.status.iter().all(|st| st == "ok"),
            "{side}: {:?}",
            s.status.iter().filter(|st| *st != "ok").collect::<Vec<_>>()
        );
        // Deterministic reads return exactly what was captured.
        for i in 0..s.sql.len() {
            assert_eq!(
                (s.oh[i], s.rows[i]),
                (s.captured_oh[i], s.captured_rows[i]),
                "{side}: {} differs",
                s.sql[i]
            );
        }
        // Per-session order: sequence numbers start in order and never overlap.
        let mut last: HashMap<i64, (i64, i64)> = HashMap::new();
        for i in 0..s.seq.len() {
            if let Some((seq, started)) = last.insert(s.session[i], (s.seq[i], s.started[i])) {
                assert!(
                    s.seq[i] > seq && s.started[i] >= started,
                    "{side}: session {} out of order",
                    s.session[i]
                );
            }
        }
        let summary_side = summary.sides.iter().find(|d| d.side == side).unwrap();
        assert_eq!(
            (summary_side.ok, summary_side.not_replayed),
            (captured as u64, 0)
        );
    }
    // Two pgbench clients were connected at once: one connection cannot replay them.
    let cfg = config(
        &capture,
        &dir.path().join("r2"),
        &b,
        None,
        &["--max-rate", "--max-connections", "1"],
    );
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("raise --max-connections to 2"), "{err}");
}

#[test]
fn speed_two_schedules_at_half_the_recorded_offsets() {
    let a = cluster(&ClusterOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "SELECT 1",
                "-c",
                "SELECT pg_sleep(0.2)",
                "-c",
                "SELECT 2",
                "-c",
                "SELECT pg_sleep(0.1)",
                "-c",
                "SELECT 3",
            ],
        ));
    });
    let results = dir.path().join("results");
    let cfg = config(&capture, &results, &a, None, &["--speed", "2"]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let s = read_side(&results.join("source.parquet"));
    assert_eq!(s.sql.len(), 5);
    let cap = pgtape::replay::plan::open(&capture).unwrap();
    let start = pgtape::replay::plan::outline(&cap, &Default::default())
        .unwrap()
        .start_us;
    for i in 0..s.sql.len() {
        let recorded = s.captured_ts[i] - start;
        assert!(
            (s.scheduled[i] * 2 - recorded).abs() <= 1,
            "{}: scheduled {} for recorded offset {recorded}",
            s.sql[i],
            s.scheduled[i]
        );
        assert!(s.started[i] >= s.scheduled[i], "never before its schedule");
        assert!(
            (0..=s.lag[i]).contains(&s.delay[i]),
            "{}: the replayer's delay {} is part of the lag {}",
            s.sql[i],
            s.delay[i],
            s.lag[i]
        );
    }
    // At 2x, SELECT 2 is due 100 ms after the 200 ms sleep started: it lags
    // while its session waits for the server, which is not the replayer's
    // delay.
    assert!(
        s.lag[2] - s.delay[2] >= 80_000,
        "SELECT 2: lag {} µs, delay {} µs",
        s.lag[2],
        s.delay[2]
    );
    // The statements after each sleep waited for it: real pacing, not only arithmetic.
    assert!(
        s.scheduled[2] - s.scheduled[1] >= 90_000,
        "{:?}",
        s.scheduled
    );
}

#[test]
fn named_statements_across_round_trips_and_discard_all_replay() {
    let mut a = cluster(&ClusterOptions::default());
    let b = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&conn_str(port), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let st = client.prepare("SELECT $1::int8 * 3").await.unwrap();
            for i in 0..5i64 {
                assert_eq!(
                    client.query_one(&st, &[&i]).await.unwrap().get::<_, i64>(0),
                    i * 3
                );
            }
            client.batch_execute("DISCARD ALL").await.unwrap();
            let st = client.prepare("SELECT $1::int8 * 3").await.unwrap();
            assert_eq!(
                client
                    .query_one(&st, &[&7i64])
                    .await
                    .unwrap()
                    .get::<_, i64>(0),
                21
            );
        });
    });
    let results = dir.path().join("results");
    let cfg = config(&capture, &results, &b, None, &["--max-rate"]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let s = read_side(&results.join("source.parquet"));
    let runs: Vec<usize> = (0..s.sql.len())
        .filter(|&i| s.sql[i] == "SELECT $1::int8 * 3")
        .collect();
    assert_eq!(runs.len(), 6);
    for i in runs {
        assert_eq!(s.status[i], "ok");
        assert_eq!((s.oh[i], s.rows[i]), (s.captured_oh[i], 1));
    }
}

#[test]
fn bad_captures_and_unreachable_targets_are_errors_naming_them() {
    let a = cluster(&ClusterOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let run = |capture: &Path, target: &str| -> String {
        let results = dir.path().join("r");
        let args = replay_args(capture, &results, &a.url("postgres"), Some(target), &[]);
        format!("{:#}", pgtape::cli::replay::main(args).unwrap_err())
    };
    let missing = dir.path().join("nope");
    assert!(
        run(&missing, &a.url("postgres")).contains("no such directory"),
        "{}",
        run(&missing, &a.url("postgres"))
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(run(&empty, &a.url("postgres")).contains("holds no capture files"));
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("segment.parquet"), b"not parquet at all").unwrap();
    let e = run(&junk, &a.url("postgres"));
    assert!(e.contains("segment.parquet"), "{e}");
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(port, &["-c", "SELECT 1"]));
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = run(
        &capture,
        &format!("postgres://postgres:secret@{closed}/postgres"),
    );
    assert!(
        e.contains(&format!("postgres://postgres:***@{closed}/postgres")) && !e.contains("secret"),
        "{e}"
    );
}

#[test]
fn read_only_filter_scale_clones_and_lockstep() {
    let mut a = cluster(&ClusterOptions::default());
    a.psql("postgres", "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g").unwrap();
    let b = a.duplicate().unwrap();
    let c = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        // A reading session and a writing one.
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "SELECT count(*) FROM t",
                "-c",
                "SELECT v FROM t WHERE id = 7",
            ],
        ));
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "INSERT INTO t VALUES (100, 'new')",
                "-c",
                "SELECT count(*) FROM t",
            ],
        ));
    });
    // --read-only keeps the reads of both sessions, drops the INSERT.
    let results = dir.path().join("ro");
    let cfg = config(&capture, &results, &b, None, &["--max-rate", "--read-only"]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let s = read_side(&results.join("source.parquet"));
    assert_eq!(s.sql.len(), 3, "{:?}", s.sql);
    assert!(!s.sql.iter().any(|q| q.starts_with("INSERT")));
    // --scale 3 in lockstep: the read-only session three times on each side, the writer once.
    let results = dir.path().join("scaled");
    let cfg = config(
        &capture,
        &results,
        &b,
        Some(&c),
        &["--max-rate", "--scale", "3", "--pace", "lockstep"],
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    for side in ["source", "target"] {
        let s = read_side(&results.join(format!("{side}.parquet")));
        let reads = (0..s.sql.len())
            .filter(|&i| s.sql[i] == "SELECT v FROM t WHERE id = 7")
            .map(|i| s.clone[i])
            .collect::<Vec<_>>();
        let mut sorted = reads.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2], "{side}");
        assert_eq!(
            s.sql.iter().filter(|q| q.starts_with("INSERT")).count(),
            1,
            "{side}"
        );
        assert!(
            s.status.iter().all(|st| st == "ok"),
            "{side}: {:?}",
            s.status
        );
    }
}

#[test]
fn a_lost_connection_marks_the_rest_of_its_session_not_replayed() {
    let mut a = cluster(&ClusterOptions::default());
    let b = a.duplicate().unwrap();
    let mut c = a.duplicate().unwrap();
    // Only on the target does this statement end its own backend.
    c.psql("postgres", "ALTER SYSTEM SET cluster_name = 'victim'")
        .unwrap();
    c.stop().unwrap();
    c.restart().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "SELECT 1",
                "-c",
                "SELECT CASE WHEN current_setting('cluster_name') = 'victim' THEN pg_terminate_backend(pg_backend_pid()) END",
                "-c",
                "SELECT 2",
                "-c",
                "SELECT 3",
            ],
        ));
    });
    let results = dir.path().join("results");
    let cfg = config(&capture, &results, &b, Some(&c), &["--max-rate"]);
    let summary = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let source = read_side(&results.join("source.parquet"));
    assert_eq!(source.status, vec!["ok"; 4]);
    let target = read_side(&results.join("target.parquet"));
    assert_eq!(
        target.status,
        vec!["ok", "not_replayed", "not_replayed", "not_replayed"],
        "{:?}",
        target.sql
    );
    let t = summary.sides.iter().find(|s| s.side == "target").unwrap();
    assert_eq!(
        t.not_replayed_reasons.get("connection lost"),
        Some(&3),
        "{:?}",
        t.not_replayed_reasons
    );
}

/// With a target, `pgtape replay` ends with the diff: the verdict is written
/// to --report and gives the exit code, as `pgtape report RESULTS` would.
#[test]
fn replay_with_a_target_ends_with_the_verdict_and_its_exit_code() {
    let mut a = cluster(&ClusterOptions::default());
    run_ok(&mut psql(
        a.port(),
        &[
            "-c",
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g",
        ],
    ));
    let same = a.duplicate().unwrap();
    let changed = a.duplicate().unwrap();
    run_ok(&mut psql(
        changed.port(),
        &["-c", "UPDATE t SET v = 'changed' WHERE id = 7"],
    ));
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "SELECT v FROM t WHERE id = 7",
                "-c",
                "SELECT count(*) FROM t",
            ],
        ));
    });
    let run = |target: &Cluster, report: &Path| -> i32 {
        let report = report.display().to_string();
        let extra = ["--max-rate", "--fail-on", "divergence", "--report", &report];
        let args = replay_args(
            &capture,
            &dir.path().join("results"),
            &a.url("postgres"),
            Some(&target.url("postgres")),
            &extra,
        );
        // As the binary runs it: the verdict's exit code.
        pgtape::cli::replay::main(args).unwrap()
    };
    let pass = dir.path().join("pass.json");
    assert_eq!(run(&same, &pass), 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pass).unwrap()).unwrap();
    assert_eq!(
        (&v["verdict"], &v["passed"]),
        (&"pass".into(), &true.into())
    );
    let fail = dir.path().join("fail.md");
    assert_eq!(run(&changed, &fail), 1, "a changed row fails the verdict");
    let md = std::fs::read_to_string(&fail).unwrap();
    assert!(
        md.contains("❌") && md.contains("SELECT v FROM t WHERE id = "),
        "{md}"
    );
}
