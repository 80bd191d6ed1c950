//! The consumer: portbound's app, a link shortener that keeps all its state in a backend it
//! knows only by URL.
//!
//! `UPSTREAM_URL` is its only link to the backing service: point it at another upstream, any
//! backend honouring the upstream's v1 contract, or Redis, restart, and the same code runs
//! against that one. The consumer stays up while the backend is away, answers 503/504/502
//! problems instead of hanging, and recovers by itself when it returns.
//!
//! ```text
//! UPSTREAM_URL=http://127.0.0.1:8081/ cargo run -p consumer
//! curl -X POST localhost:8080/api/links -H 'content-type: application/json' -d '{"url":"https://example.com"}'
//! ```
//!
//! # Layout
//!
//! - [`settings`]: the variables it reads, validated at startup.
//! - [`backend`]: the attached resource — its URL, the `Store` interface with one adapter per
//!   kind (HTTP, Redis), and the deadlines, retry and circuit breaker written once around them.
//! - [`links`]: codes, targets and the stored link document.
//! - [`shortener`]: the operations — create, follow, show — that the API and the page call.
//! - [`clicks`]: counting clicks off the redirect path, in idempotent batches.
//! - `http_error`: the one place where failures become statuses.
//! - `api`: the HTTP routes — `/api/links`, `/{code}`, `/api/status`, `/readyz`,
//!   `/openapi.json`.
//! - `page`: the page at `/` for people, on the same operations as the API.
//! - [`Application`] (here): wires them, binds, runs until stopped, flushes clicks.

mod api;
pub mod backend;
pub mod clicks;
mod http_error;
pub mod links;
mod page;
pub mod settings;
pub mod shortener;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
pub use api::BODY_LIMIT;
pub use api::openapi::ApiDoc;
pub use settings::{DEFAULT_PORT, Settings};
use shared::config::{ConfigError, FromLayers};
use shared::health::Lifecycle;
use shared::server::{Service, Serving};

use backend::Backend;
use clicks::Clicks;
use shortener::Shortener;

/// Extra time the last click flush gets beyond one backend deadline.
const LAST_FLUSH_MARGIN: Duration = Duration::from_secs(1);

/// What every handler of the API and the page shares.
struct State {
    shortener: Shortener,
    lifecycle: Lifecycle,
}

/// A bound, ready-to-run consumer.
pub struct Application {
    serving: Serving,
    clicks: Arc<Clicks>,
    settings: Settings,
}

impl shared::process::Binary for Application {
    const NAME: &'static str = "consumer";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn start() -> Result<Self, ConfigError> {
        Application::build(Settings::load()?)
    }

    fn run_until_stopped(self) -> impl Future<Output = io::Result<()>> {
        Application::run_until_stopped(self)
    }
}

impl Application {
    /// Builds the backend client and binds the port; any problem is a [`ConfigError`] naming
    /// the variable. The backend need not be up. Must be called inside an async runtime.
    pub fn build(settings: Settings) -> Result<Self, ConfigError> {
        let registry = shared::metrics::Registry::new();
        let backend = Arc::new(
            Backend::new(&settings.backend, &registry).expect("the backend metrics register once"),
        );
        let clicks = Arc::new(
            Clicks::new(backend.clone(), settings.click_buffer_limit, &registry)
                .expect("the click metrics register once"),
        );
        let lifecycle = Lifecycle::new();
        let state = web::Data::new(State {
            shortener: Shortener {
                backend,
                clicks: clicks.clone(),
                public_url: settings.public_url.clone(),
            },
            lifecycle: lifecycle.clone(),
        });
        let serving = Service {
            name: "consumer",
            settings: &settings.server,
            registry,
            body_limit: api::BODY_LIMIT,
            openapi: api::openapi::document().to_string(),
            headers: Vec::new(),
            lifecycle,
            tls: None,
        }
        .bind(move |app| {
            app.app_data(state.clone())
                .configure(page::routes)
                .configure(api::routes);
        })?;
        log::info!(
            "consumer {} ready: attached to {}, short links under {}",
            env!("CARGO_PKG_VERSION"),
            settings.backend.attachment,
            settings.public_url
        );
        Ok(Application {
            serving,
            clicks,
            settings,
        })
    }

    /// The port actually bound (the real one when `PORT=0`).
    pub fn port(&self) -> u16 {
        self.serving.port()
    }

    /// The handle that drains and stops this instance as SIGTERM would.
    pub fn lifecycle(&self) -> Lifecycle {
        self.serving.lifecycle()
    }

    /// Serves until SIGTERM/SIGINT (or [`Lifecycle::request_stop`]) and drains; then sends the
    /// clicks still pending, within one backend deadline plus a second.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let stop_flushing = Arc::new(tokio::sync::Notify::new());
        let flusher = tokio::spawn(self.clicks.clone().run(
            self.settings.click_flush_interval,
            stop_flushing.clone(),
            self.settings.backend.timeout + LAST_FLUSH_MARGIN,
        ));
        let served = self.serving.run_until_stopped().await;
        stop_flushing.notify_one();
        if flusher.await.is_err() {
            log::error!("clicks: the flusher task failed");
        }
        served
    }
}
