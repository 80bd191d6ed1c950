//! Logs as an event stream on stdout (twelve-factor XI), filtered by `RUST_LOG` (default `info`).
//!
//! Every line written while a request is served ends with `request_id=…`, the request's
//! `X-Request-Id`: the consumer sends it upstream, so one grep follows a request through both
//! services, access lines, warnings and errors alike.

use std::io::{self, Write};

use env_logger::fmt::Formatter;
use env_logger::{Builder, Env, Target};

use crate::request_id;

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the process-wide logger. Call once, first thing in `main`.
pub fn init() {
    Builder::from_env(Env::default().default_filter_or(DEFAULT_FILTER))
        .target(Target::Stdout)
        .format(write_line)
        .init();
}

/// `[time LEVEL target] message`, then ` request_id=…` when a request is being served.
fn write_line(buf: &mut Formatter, record: &log::Record) -> io::Result<()> {
    write!(
        buf,
        "[{} {} {}] {}",
        buf.timestamp(),
        record.level(),
        record.target(),
        record.args()
    )?;
    if let Some(id) = request_id::current() {
        write!(buf, " request_id={id}")?;
    }
    writeln!(buf)
}

/// The target the access log writes under; `RUST_LOG=info,actix_web::middleware::logger=warn`
/// turns it off.
pub const ACCESS_LOG_TARGET: &str = "actix_web::middleware::logger";

/// Whether the access log's lines would be written. Checked once when the app is built: actix's
/// logger renders parts of every line before the log level is consulted, so when its lines are
/// filtered out it is better not installed at all.
pub fn access_log_enabled() -> bool {
    log::log_enabled!(target: ACCESS_LOG_TARGET, log::Level::Info)
}

/// The access log: one line per request with its status, size, duration and request id (it
/// is written after the request, so it names the id itself, the same way as other lines).
/// Health probes are left out; an orchestrator polls them every few seconds.
pub fn access_log() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new(r#"%a "%r" %s %bB %Dms request_id=%{x-request-id}o"#)
        .exclude("/livez")
        .exclude("/readyz")
}
