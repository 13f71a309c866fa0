//! `kubemail`: `kubemail dev` runs the whole platform in one process; `kubemail admin` manages
//! a running one. Everything but argument parsing and the exit code lives in the library.

use clap::Parser;
use kubemail::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => kubemail::dev::run(*args).await,
        Command::Admin(args) => kubemail::admin::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kubemail: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
