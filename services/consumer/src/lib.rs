//! The consumer: portbound's app, a link shortener that keeps all its state in an upstream it
//! knows only by URL.
//!
//! `UPSTREAM_URL` is its only link to the backing service: point it at another instance (or
//! any backend honouring the upstream's v1 contract), restart, and the same code runs against
//! that one. The consumer stays up while the upstream is away, answers 503/504/502 problems
//! instead of hanging, and recovers by itself when it returns.
//!
//! ```text
//! UPSTREAM_URL=http://127.0.0.1:8081/ cargo run -p consumer
//! curl -X POST localhost:8080/api/links -H 'content-type: application/json' -d '{"url":"https://example.com"}'
//! ```
//!
//! # Layout
//!
//! - [`settings`]: the variables it reads, validated at startup.
//! - [`upstream`]: the attached resource — its URL and credentials, the one HTTP client with
//!   deadlines, retry and circuit breaker, and the error mapping.
//! - [`links`]: codes, targets and the stored link document.
//! - [`clicks`]: counting clicks off the redirect path, in idempotent batches.
//! - `api`: the HTTP routes — `/api/links`, `/{code}`, `/api/status`, `/readyz`,
//!   `/openapi.json` — and the error type.
//! - `page`: the page at `/` for people, built on the same operations as the API.
//! - [`Application`] (here): wires them, binds, runs until stopped, flushes clicks.

mod api;
pub mod clicks;
pub mod links;
mod page;
pub mod settings;
pub mod upstream;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
pub use api::BODY_LIMIT;
pub use api::openapi::ApiDoc;
pub use settings::{DEFAULT_PORT, Settings};
use shared::config::ConfigError;
use shared::health::Lifecycle;
use shared::server::{Service, Serving};

use clicks::Clicks;
use upstream::Upstream;

/// Extra time the last click flush gets beyond one upstream deadline.
const LAST_FLUSH_MARGIN: Duration = Duration::from_secs(1);

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
    /// Builds the upstream client and binds the port; any problem is a [`ConfigError`] naming
    /// the variable. The upstream need not be up. Must be called inside an async runtime.
    pub fn build(settings: Settings) -> Result<Self, ConfigError> {
        let registry = shared::metrics::Registry::new();
        let upstream = Arc::new(
            Upstream::new(&settings.upstream, &registry)
                .expect("the upstream metrics register once"),
        );
        let clicks = Arc::new(
            Clicks::new(upstream.clone(), settings.click_buffer_limit, &registry)
                .expect("the click metrics register once"),
        );
        let lifecycle = Lifecycle::new();
        let state = web::Data::new(api::State {
            upstream,
            clicks: clicks.clone(),
            public_url: settings.public_url.clone(),
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
        }
        .bind(move |app| {
            app.app_data(state.clone())
                .configure(page::routes)
                .configure(api::routes);
        })?;
        log::info!(
            "consumer {} ready: attached to {}, short links under {}",
            env!("CARGO_PKG_VERSION"),
            settings.upstream.attachment,
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
    /// clicks still pending, within one upstream deadline plus a second.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let stop_flushing = Arc::new(tokio::sync::Notify::new());
        let flusher = tokio::spawn(self.clicks.clone().run(
            self.settings.click_flush_interval,
            stop_flushing.clone(),
            self.settings.upstream.timeout + LAST_FLUSH_MARGIN,
        ));
        let served = self.serving.run_until_stopped().await;
        stop_flushing.notify_one();
        if flusher.await.is_err() {
            log::error!("clicks: the flusher task failed");
        }
        served
    }
}
