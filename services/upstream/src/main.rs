//! The `upstream` binary: `upstream` serves; `upstream healthcheck` probes a running instance.

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    shared::server::main::<upstream::Application>().await
}
