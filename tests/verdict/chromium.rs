//! The HTML verdict in headless Chromium (Debian package `chromium`): it
//! renders, the charts are there, and the page asks for nothing external.

use std::process::Command;

use pgtape::diff::Verdict;
use pgtape::report::Format;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if pgtape::cluster::have_command(c) {
            return c;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install -y chromium");
}

/// Renders `v` as HTML, loads it in headless Chromium, checks the DOM it built.
pub fn assert_renders(v: &Verdict, name: &str) {
    let mut html = Vec::new();
    pgtape::report::verdict::render(v, Format::Html, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    for external in ["http://", "https://", "//cdn", "src=\"", "<link", "<script"] {
        assert!(!html.contains(external), "the HTML references {external:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join(format!("{name}.html"));
    std::fs::write(&page, &html).unwrap();
    let profile = dir.path().join("profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            // Any network request would fail to resolve: the page must not need one.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let ctx = || {
        format!(
            "chromium exit {:?}\nstderr:\n{}\nDOM:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            &dom[..dom.len().min(2000)]
        )
    };
    assert!(out.status.success(), "{}", ctx());
    assert!(dom.contains("id=\"verdict\""), "{}", ctx());
    assert!(
        dom.contains(&format!("Verdict: {}", v.verdict.to_uppercase())),
        "{}",
        ctx()
    );
    // The verdict comes before everything else.
    assert!(dom.find("id=\"verdict\"") < dom.find("<svg"), "{}", ctx());
    for chart in [
        "cdf-source",
        "cdf-target",
        "throughput-source",
        "throughput-target",
    ] {
        assert!(dom.contains(chart), "chart {chart} missing\n{}", ctx());
    }
    assert!(dom.contains("id=\"fingerprints\""), "{}", ctx());
    assert!(dom.contains("id=\"noise\""), "{}", ctx());
}
