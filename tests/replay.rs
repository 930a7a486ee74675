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
                (out.command_tag.as_str(), out.rows(), out.error.as_ref()),
                ("SELECT 1", 1, None)
            );
            assert_eq!(out.columns, vec![("ssl".to_string(), 16)]);
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
    });
}
