//! The `consumer` binary: `consumer` serves; `consumer healthcheck` probes a running instance.

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    shared::server::main::<consumer::Application>().await
}
