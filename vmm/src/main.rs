//! The `duet` command: parse the command line, load the config, build, run, print the error chain once.

use clap::Parser;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    vmm::cli::main(vmm::cli::Cli::parse())
}
