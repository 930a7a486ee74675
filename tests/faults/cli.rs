//! Bad command lines: refused before any I/O, exit 2, naming the flag and
//! the fix, saying each cause once, leaving nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Runs `pgtape args...`; a proxy that starts anyway is killed after 20 s
/// and the test fails rather than hangs. Returns (exit code, stderr).
fn pgtape(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pgtape {args:?} did not refuse to start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_refused(args: &[&str], says: &[&str]) {
    let (code, err) = pgtape(args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?} should say {s:?}: {err}");
    }
}

// Issue 16, defect 4: `--upstream 127.0.0.1:99999` and an unresolvable host
// were accepted ("proxy ready").
#[test]
fn impossible_upstream_addresses_were_accepted() {
    let listen = format!("127.0.0.1:{}", free_port());
    for (upstream, says) in [
        ("127.0.0.1:99999", "is not a port"),
        ("127.0.0.1:0", "is not a port"),
        ("127.0.0.1", "needs a port"),
        ("no-such-host.invalid:5432", "cannot resolve host"),
        (":5432", "needs a host"),
    ] {
        assert_refused(
            &["proxy", "--listen", &listen, "--upstream", upstream],
            &["--upstream", says],
        );
    }
    assert_refused(
        &[
            "proxy",
            "--upstream",
            "127.0.0.1:5432",
            "--listen",
            "127.0.0.1:70000",
        ],
        &["--listen", "is not a port"],
    );
}

// Issue 16, defect 4: a proxy that could not start (its listen port taken)
// left an empty capture directory behind.
#[test]
fn proxy_that_cannot_listen_left_an_empty_capture_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let listen = taken.local_addr().unwrap().to_string();
    let capture = dir.display().to_string();
    assert_refused(
        &[
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:5432",
            "--capture",
            &capture,
        ],
        &["cannot listen on --listen"],
    );
    assert!(
        !dir.exists(),
        "no capture directory for a proxy that never ran"
    );
    let metrics = listen;
    let listen = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &[
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:5432",
            "--capture",
            &capture,
            "--metrics",
            &metrics,
        ],
        &["cannot listen on --metrics"],
    );
    assert!(
        !dir.exists(),
        "no capture directory for a proxy that never ran"
    );
}

// Issue 16, defect 5: `--upstream-ca /nonexistent.pem` said "pass a PEM file
// with --tls-cert".
#[test]
fn missing_upstream_ca_named_the_wrong_flag() {
    let (code, err) = pgtape(&[
        "proxy",
        "--upstream",
        "127.0.0.1:5432",
        "--upstream-ca",
        "/nonexistent.pem",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent.pem") && err.contains("--upstream-ca"),
        "{err}"
    );
    assert!(!err.contains("--tls-cert"), "{err}");
    // A file with no certificate in it is refused too, not taken as "trust nothing".
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &[
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:5432",
            "--upstream-ca",
            empty.to_str().unwrap(),
        ],
        &["holds no PEM certificate", "--upstream-ca"],
    );
}

// Issue 16, defect 7: `--rotate-interval 0s` was accepted and wrote a file
// per batch; `--capture-queue`, suggested by the drop warning, was missing
// from --help.
#[test]
fn zero_rotate_interval_was_accepted_and_capture_queue_was_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("cap").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &[
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            "127.0.0.1:5432",
            "--capture",
            &capture,
            "--rotate-interval",
            "0s",
        ],
        &["--rotate-interval", "at least 1s"],
    );
    let help = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--capture-queue"));
}

// Issue 16, defect 8: error messages repeated their cause ("(os error 2):
// No such file or directory (os error 2)").
#[test]
fn error_messages_repeated_their_cause() {
    for args in [
        &["report", "/nonexistent/capture"][..],
        &[
            "proxy",
            "--upstream",
            "127.0.0.1:5432",
            "--upstream-ca",
            "/nonexistent.pem",
        ],
        &[
            "proxy",
            "--upstream",
            "127.0.0.1:5432",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ],
    ] {
        let (code, err) = pgtape(args);
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(err.matches("(os error 2)").count(), 1, "{args:?}: {err}");
    }
}
