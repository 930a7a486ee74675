//! Writes the deterministic results fixture used by the report tests:
//! `cargo run --example results_fixture -- fixtures/results-small`.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: results_fixture DIR");
        std::process::exit(2);
    };
    if let Err(e) = pgtape::diff::fixture::write(std::path::Path::new(&dir)) {
        eprintln!("results_fixture: {e}");
        std::process::exit(2);
    }
}
