//! `kubemail`: `kubemail dev` runs the whole platform in one process; `kubemail admin` manages
//! a running one. Everything but argument parsing and the exit code lives in the library.

use clap::Parser as _;
use kubemail::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print in full; a usage error gets one line and exit code 2.
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("kubemail: error: {first} (see --help)");
            return std::process::ExitCode::from(2);
        }
    };
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
