//! The upstream: portbound's backing service, a durable key–value store with counters.
//!
//! It binds its own port and knows nothing of its clients; the consumer attaches to it by URL.
//! Its whole contract is the v1 API (served as OpenAPI at `/openapi.json`), so any backend that
//! honours that contract can be attached instead.
//!
//! ```text
//! PORT=8081 DATABASE_PATH=data/upstream.sqlite3 cargo run -p upstream
//! curl -X PUT localhost:8081/v1/kv/greeting -H 'content-type: application/json' -d '"hello"'
//! ```
//!
//! # Layout
//!
//! - [`settings`]: the variables it reads, validated at startup.
//! - [`key`]: what a key (or counter name) may be.
//! - [`storage`]: SQLite in WAL mode behind one group-committing writer thread, a read pool and
//!   a read cache the writer keeps in step.
//! - `api`: the HTTP routes — `/v1/kv`, `/v1/counters`, `/v1/info`, `/readyz`,
//!   `/openapi.json` — with the access-token guard and the error type.
//! - [`certs`]: the `certs` subcommand, which makes a development CA and certificates.
//! - [`Application`] (here): builds the store and the server, binds, runs until stopped.
//!
//! With `TLS_CERT_FILE` and `TLS_KEY_FILE` it serves HTTPS, and with `TLS_CLIENT_CA_FILE` `/v1`
//! requires a client certificate ([`shared::tls`]).

mod api;
pub mod certs;
pub mod key;
pub mod settings;
pub mod storage;

use std::io;

use actix_web::web;
pub use api::openapi::{ApiDoc, document as api_document};
pub use settings::{DEFAULT_PORT, Settings};
use shared::config::{ConfigError, FromLayers};
use shared::health::Lifecycle;
use shared::server::{Service, Serving};
use storage::Store;

/// A bound, ready-to-run upstream.
pub struct Application {
    serving: Serving,
    store: Store,
}

impl shared::process::Binary for Application {
    const NAME: &'static str = "upstream";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const SERVES_TLS: bool = true;

    fn start() -> Result<Self, ConfigError> {
        Application::build(Settings::load()?)
    }

    fn run_until_stopped(self) -> impl Future<Output = io::Result<()>> {
        Application::run_until_stopped(self)
    }

    fn subcommand(name: &str, args: &[String]) -> Option<std::process::ExitCode> {
        (name == "certs").then(|| certs::main(args))
    }
}

impl Application {
    /// Opens storage and binds the port; any problem is a [`ConfigError`] naming the variable.
    /// Must be called inside an async runtime.
    pub fn build(settings: Settings) -> Result<Self, ConfigError> {
        let registry = shared::metrics::Registry::new();
        let store = Store::open(
            &settings.database_path,
            settings.read_cache_bytes,
            settings.write_queue_limit,
            &registry,
        )
        .map_err(|error| {
            ConfigError::invalid(
                "DATABASE_PATH",
                &settings.database_path,
                format_args!("a writable SQLite database file or :memory: ({error})"),
            )
        })?;
        let client_certificate = settings
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some());
        if settings.access_token.is_none() && !client_certificate {
            log::warn!(
                "neither ACCESS_TOKEN nor TLS_CLIENT_CA_FILE is set: /v1 is open to anyone who \
                 can reach this port"
            );
        }
        let lifecycle = Lifecycle::new();
        let state = web::Data::new(api::State {
            store: store.clone(),
            lifecycle: lifecycle.clone(),
            instance: settings.instance_name.clone(),
        });
        let guard = web::Data::new(api::Guard::new(
            settings.access_token.as_ref(),
            client_certificate,
        ));
        let serving = Service {
            name: "upstream",
            settings: &settings.server,
            registry,
            body_limit: settings.max_value_bytes,
            openapi: api::openapi::document(settings.access_token.is_some(), client_certificate)
                .to_string(),
            headers: vec![("X-Instance", settings.instance_name.clone())],
            lifecycle,
            tls: settings.tls.as_ref(),
        }
        .bind(move |app| {
            app.app_data(state.clone())
                .app_data(guard.clone())
                .configure(api::routes);
        })?;
        log::info!(
            "upstream {} ready: instance {:?}, database {}",
            env!("CARGO_PKG_VERSION"),
            settings.instance_name,
            settings.database_path
        );
        Ok(Application { serving, store })
    }

    /// The port actually bound (the real one when `PORT=0`).
    pub fn port(&self) -> u16 {
        self.serving.port()
    }

    /// The handle that drains and stops this instance as SIGTERM would.
    pub fn lifecycle(&self) -> Lifecycle {
        self.serving.lifecycle()
    }

    /// Serves until SIGTERM/SIGINT (or [`Lifecycle::request_stop`]), drains, then closes
    /// storage after the last write.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let served = self.serving.run_until_stopped().await;
        self.store.close().await;
        served
    }
}
