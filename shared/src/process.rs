//! The process of a service binary: its `main`, written once for both.
//!
//! `healthcheck` as the first argument runs the subcommand images use as their `HEALTHCHECK`,
//! and a binary may have subcommands of its own ([`Binary::subcommand`]); otherwise the logger
//! is installed, the settings are read and the port bound (a bad value stops the process with
//! status 2 and one line), and the service runs until stopped.

use std::io;
use std::process::ExitCode;

use crate::config::ConfigError;

/// A service binary: what [`main`] needs to run it.
pub trait Binary: Sized {
    /// The binary's name, for the one-line configuration error.
    const NAME: &'static str;
    /// The port used when `PORT` is unset (also by the `healthcheck` subcommand).
    const DEFAULT_PORT: u16;
    /// Whether it serves HTTPS when the `TLS_*` variables say so ([`crate::tls`]), which the
    /// `healthcheck` subcommand must then speak.
    const SERVES_TLS: bool = false;
    /// Reads the settings and binds; a [`ConfigError`] stops the process with status 2.
    fn start() -> Result<Self, ConfigError>;
    /// Serves until stopped.
    fn run_until_stopped(self) -> impl Future<Output = io::Result<()>>;
    /// Runs the subcommand `name` (the first argument) with the arguments after it, if the
    /// binary has one by that name (besides `healthcheck`).
    fn subcommand(_name: &str, _args: &[String]) -> Option<ExitCode> {
        None
    }
}

/// The whole `main` of a service: `healthcheck` subcommand, logging, settings, bind, run.
/// Exit status 0 after a clean stop, 1 when serving failed, 2 for bad configuration.
pub async fn main<S: Binary>() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((name, rest)) = args.split_first() {
        if name == "healthcheck" {
            return crate::healthcheck::main(S::DEFAULT_PORT, S::SERVES_TLS);
        }
        if let Some(status) = S::subcommand(name, rest) {
            return status;
        }
    }
    crate::logging::init();
    let service = match S::start() {
        Ok(service) => service,
        Err(error) => {
            eprintln!("{}: invalid configuration: {error}", S::NAME);
            return ExitCode::from(2);
        }
    };
    match service.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
