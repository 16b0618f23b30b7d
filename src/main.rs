//! The `lethe` binary: parse the command line and hand it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lethe::cli::run(lethe::cli::Cli::parse())
}

/// glibc's allocator cost a sixth of the server's CPU under load: redb's page-sized buffers trigger its
/// fastbin consolidation, and buffers freed on another thread than the one that allocated them contend
/// on arena locks. mimalloc measured 16–17 % less CPU for the same `lethe bench` run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
