//! `iothub`: drive an Azure IoT Hub, or the local emulator, from the command line.
//!
//! Each command group lives in its own module; `output` renders tables, JSON, spinners and the
//! one-line errors whose exit codes are listed in [`cli::EXIT_CODES`].

mod c2d;
mod cli;
mod device;
mod emulator_http;
mod error;
mod hub;
mod input;
mod job;
mod method;
mod monitor;
mod output;
mod query;
mod sas;
mod twin;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use error::CliError;
use output::Output;
use std::process::ExitCode;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2, the documented usage code.
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "iothub", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&CliError::Transport(format!(
                "cannot start the async runtime: {e}"
            )));
            return ExitCode::from(error::EXIT_CONNECTION);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<(), CliError> {
    let hub = hub::Hub::connect(cli.connection_string.as_deref(), cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Device(c) => device::run(&hub, out, c).await,
        Command::Twin(c) => twin::run(&hub, out, c).await,
        Command::Method(c) => method::run(&hub, out, c).await,
        Command::C2d(c) => c2d::run(&hub, out, c).await,
        Command::Query(c) => query::run(&hub, out, c).await,
        Command::Job(c) => job::run(&hub, out, c).await,
        Command::Monitor(c) => monitor::run(&hub, out, c).await,
        Command::SasToken(c) => sas::run(&hub, out, c).await,
        Command::Completions { .. } => Ok(()),
    }
}
