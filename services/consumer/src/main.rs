//! The `consumer` binary: `consumer` serves; `consumer healthcheck` probes a running instance.

use std::process::ExitCode;

use consumer::{Application, DEFAULT_PORT, Settings};

#[actix_web::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return shared::healthcheck::main(DEFAULT_PORT);
    }
    shared::logging::init();
    let application = match Settings::load().map(Application::build) {
        Ok(Ok(application)) => application,
        Ok(Err(error)) | Err(error) => {
            eprintln!("consumer: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match application.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
