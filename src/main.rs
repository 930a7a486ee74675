//! `pgtape`: parse arguments, initialise logging, run the command, exit with
//! its code (0 success, 1 verdict failed, 2 bad input or runtime error).

use clap::Parser;
use pgtape::cli::{Cli, Command, exit};

/// mimalloc rather than glibc's malloc: the replay allocates a statement's
/// order bookkeeping on the dispatcher thread and frees it on the session
/// threads, where glibc's arenas take a lock per cross-thread free; with
/// mimalloc, commit-order replay spends about a fifth less user CPU and the
/// proxy is unchanged (README, "Performance").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    pgtape::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Proxy(args) => pgtape::proxy::main(args),
        Command::Workload(args) => pgtape::workload::main(args),
        Command::Demo(args) => pgtape::demo::main(args),
        Command::Replay(args) => pgtape::cli::replay::main(args),
        Command::Report(args) => pgtape::report::main(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Quietly end on a closed stdout (`pgtape report ... | head`).
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                std::process::exit(exit::OK);
            }
            eprintln!("pgtape: error: {}", pgtape::cli::error_text(&e));
            std::process::exit(exit::ERROR);
        }
    }
}
