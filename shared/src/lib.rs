//! What both portbound services share, and nothing more.
//!
//! The `upstream` (a key–value store) and the `consumer` (a link shortener) are separate
//! programs that meet only through a URL. They still start, bind, log, fail and shut down the
//! same way, and that common ground lives here so it is written once.
//!
//! # Layout
//!
//! - [`app`]: the middleware stack (request ids included) and fallbacks every app starts from.
//! - [`config`]: layered settings (code defaults → `CONFIG_FILE` → environment) and the
//!   one-line [`config::ConfigError`] a bad value stops the process with (exit status 2).
//! - [`server`]: `HOST`/`PORT`/`WORKERS`/`SHUTDOWN_DELAY`/`SHUTDOWN_TIMEOUT`, binding the
//!   listener (port 0 allowed), running the server until SIGTERM/SIGINT with a bounded drain.
//! - [`process`]: the `main` both binaries share (subcommand, logging, exit statuses).
//! - [`health`]: the [`health::Lifecycle`] that turns readiness off while draining, and the
//!   `/livez` handler.
//! - [`healthcheck`]: the `healthcheck` subcommand images use as their `HEALTHCHECK`.
//! - [`json`]: JSON request bodies read as structs only from objects.
//! - [`logging`]: env_logger on stdout, one line per request and per notable event.
//! - [`request_body`]: the deadline a request body must arrive within (408 after it).
//! - [`request_id`]: accept a sane `X-Request-Id` or generate one; make it visible to errors.
//! - [`problem`]: RFC 9457 `application/problem+json` for every error a client can see,
//!   extractor failures and actix's own 404/405/413/415 included.
//! - [`metrics`]: Prometheus request metrics at `/metrics`.
//! - [`openapi`]: what both OpenAPI documents have in common.
//! - [`pattern`]: the one expression a validator and its document share.
//! - [`redact`]: URLs with their credentials hidden, for logs and error messages.
//! - [`tls`]: serving HTTPS from `TLS_CERT_FILE`/`TLS_KEY_FILE` (picked up again when they
//!   change), client certificates, and reading PEM files.

pub mod app;
pub mod config;
pub mod health;
pub mod healthcheck;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod pattern;
pub mod problem;
pub mod process;
pub mod redact;
pub mod request_body;
pub mod request_id;
pub mod server;
pub mod tls;
