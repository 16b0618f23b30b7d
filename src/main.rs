//! The `lethe` binary: parse the command line and hand it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lethe::cli::run(lethe::cli::Cli::parse())
}
