//! `veil`: the command line and the server of a privacy-preserving
//! public-data service. `main` parses the command line and turns every
//! outcome into an exit code in one place: 0 success, 1 refused or failed
//! (with the reason on stderr), 2 bad usage.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.exit_code())
        }
    }
}
