//! The `consumer` binary: `consumer healthcheck` probes a running instance; otherwise it serves.

// Request handling allocates many small, short-lived buffers; mimalloc serves them with less work
// than the system allocator (bench/hop.py: about 10% less CPU per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    shared::process::main::<consumer::Application>().await
}
