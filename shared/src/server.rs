//! Port binding (twelve-factor VII) and the server's life: bind, serve, drain, exit.
//!
//! A service binds its own `std::net::TcpListener` before it builds the HTTP server, so the
//! real port is known (and logged) even when `PORT=0` asked for any free one; tests read it back
//! instead of guessing. [`run_until_stopped`] then serves until SIGTERM, SIGINT or
//! [`Lifecycle::request_stop`] and then stops in two steps:
//!
//! 1. readiness turns 503 at once, while the server keeps serving for `SHUTDOWN_DELAY`
//!    (default 0 s), so a load balancer that probes readiness can take the instance out before
//!    connections are refused (the images have no shell for a `preStop: sleep` hook);
//! 2. the listener closes, idle connections are closed, and in-flight requests get up to
//!    `SHUTDOWN_TIMEOUT` (default 5 s) to finish.
//!
//! Keep the sum below the orchestrator's grace period (Docker's default is 10 s). A second
//! signal skips what is left of the delay.
//!
//! The process around it (logging, the `healthcheck` subcommand, exit statuses) is
//! [`crate::process`].

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::pin::pin;
use std::time::Duration;

use actix_http::{Request, Response};
use actix_service::IntoServiceFactory;
use actix_web::body::MessageBody;
use actix_web::dev::{self, AppConfig, Server, ServiceFactory};
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{HttpServer, web};
use rustls::ServerConfig;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{ConfigError, DURATION_EXPECTED, Layers, duration};
use crate::health::Lifecycle;
use crate::metrics::{Registry, RequestMetrics};
use crate::tls::TlsFiles;

/// How long a client may take to send a request's head (its request line and headers): a
/// slower one is answered 408 and its connection closed, so clients that trickle their headers
/// a byte at a time hold a connection for this long at most, and never a worker (connections
/// are served concurrently on each worker). The body has its own deadline,
/// [`crate::request_body::REQUEST_BODY_TIMEOUT`].
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle client connection is kept open. Clients that pool connections (the
/// consumer does) must retire them sooner, or they race the server's close.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Where and how a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Interface to bind. `HOST`, default `127.0.0.1`; images set `0.0.0.0`.
    pub host: IpAddr,
    /// Port to bind. `PORT`, default per service; `0` asks for any free port.
    pub port: u16,
    /// HTTP worker threads. `WORKERS`, default the number of CPUs.
    pub workers: usize,
    /// How long to keep serving, reporting not ready, after SIGTERM before the listener closes.
    /// `SHUTDOWN_DELAY`, default `0s`; set it to the load balancer's readiness interval.
    pub shutdown_delay: Duration,
    /// Longest wait for in-flight requests once the listener is closed. `SHUTDOWN_TIMEOUT`,
    /// default `5s`. Keep delay + timeout below the orchestrator's grace period (Docker: 10 s).
    pub shutdown_timeout: Duration,
}

impl ServerSettings {
    /// Local settings for `port` (tests use `0`).
    pub fn local(port: u16) -> Self {
        ServerSettings {
            host: IpAddr::from([127, 0, 0, 1]),
            port,
            workers: 2,
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Reads the server variables, with `default_port` for `PORT`.
    pub fn from_layers(layers: &Layers, default_port: u16) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(ServerSettings {
            host: layers.parse(
                "HOST",
                "127.0.0.1",
                "an IP address such as 127.0.0.1 or 0.0.0.0",
                str::parse,
            )?,
            port: layers.parse(
                "PORT",
                &default_port.to_string(),
                "a port number from 0 to 65535 (0 = any free port)",
                str::parse,
            )?,
            workers: layers.parse_in_range::<usize>(
                "WORKERS",
                cpus,
                "a number of worker threads",
                1..=256,
            )?,
            shutdown_delay: layers.parse(
                "SHUTDOWN_DELAY",
                "0s",
                "a duration such as 0s, 500ms or 5s",
                humantime::parse_duration,
            )?,
            shutdown_timeout: layers.parse(
                "SHUTDOWN_TIMEOUT",
                "5s",
                DURATION_EXPECTED,
                duration,
            )?,
        })
    }

    /// Binds the listener and logs the address it got, as a URL of `scheme`.
    pub fn bind(&self, scheme: &str) -> Result<TcpListener, ConfigError> {
        let listener = TcpListener::bind(SocketAddr::new(self.host, self.port)).map_err(|e| {
            ConfigError::invalid(
                "PORT",
                &self.port.to_string(),
                format_args!("a port that can be bound on {} ({e})", self.host),
            )
        })?;
        if let Ok(addr) = listener.local_addr() {
            log::info!("listening on {scheme}://{addr}");
        }
        Ok(listener)
    }

    /// Starts `server` on `listener` with these settings, the keep-alive and our own signal
    /// handling (see [`run_until_stopped`]); over TLS with `tls`.
    pub fn start<F, I, S, B>(
        &self,
        server: HttpServer<F, I, S, B>,
        listener: TcpListener,
        tls: Option<ServerConfig>,
    ) -> Result<Server, ConfigError>
    where
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<actix_web::Error> + 'static,
        S::InitError: std::fmt::Debug,
        S::Response: Into<Response<B>> + 'static,
        <S::Service as dev::Service<Request>>::Future: 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let server = server
            .workers(self.workers)
            .keep_alive(KEEP_ALIVE)
            .client_request_timeout(REQUEST_HEAD_TIMEOUT)
            .shutdown_timeout(self.shutdown_timeout.as_secs_f64().ceil() as u64)
            .disable_signals();
        let server = match tls {
            None => server.listen(listener),
            Some(config) => server.listen_rustls_0_23(listener, config),
        }
        .map_err(|error| {
            ConfigError::invalid(
                "PORT",
                &self.port.to_string(),
                format_args!("a port to listen on ({error})"),
            )
        })?;
        Ok(server.run())
    }
}

/// What every service's server is made of besides its own state and routes; [`Service::bind`]
/// turns it into a bound [`Serving`]. The part of each `Application::build` that is the same.
pub struct Service<'a> {
    /// The service's name: the prefix of its request metrics (`upstream_http_requests_total`).
    pub name: &'static str,
    pub settings: &'a ServerSettings,
    /// Holds the service's own metrics already; the request metrics join them.
    pub registry: Registry,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// The rendered OpenAPI document, served at `/openapi.json`.
    pub openapi: String,
    /// Headers put on every response (the upstream's `X-Instance`).
    pub headers: Vec<(&'static str, String)>,
    /// Drains and stops the server; the service's readiness reads it too.
    pub lifecycle: Lifecycle,
    /// Serve HTTPS with these files ([`crate::tls`]); plain HTTP when `None`.
    pub tls: Option<&'a TlsFiles>,
}

impl Service<'_> {
    /// Binds the port and builds the server: [`crate::app::base`] apps, to which `configure`
    /// adds the service's state and routes, wrapped in the service's response headers.
    pub fn bind<F>(self, configure: F) -> Result<Serving, ConfigError>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let tls = self.tls.map(TlsFiles::server_config).transpose()?;
        let listener = self
            .settings
            .bind(if tls.is_some() { "https" } else { "http" })?;
        let port = listener
            .local_addr()
            .map_or(self.settings.port, |address| address.port());
        let metrics = RequestMetrics::new(self.name, self.registry)
            .expect("the request metrics register once");
        let Service {
            body_limit,
            openapi,
            headers,
            ..
        } = self;
        let server = HttpServer::new(move || {
            let every_response = headers
                .iter()
                .fold(DefaultHeaders::new(), |all, (name, value)| {
                    all.add((*name, value.clone()))
                });
            // No layer at all for a service without headers of its own: the redirect
            // path pays for every middleware.
            crate::app::base(metrics.clone(), body_limit, openapi.clone())
                .configure(configure.clone())
                .wrap(Condition::new(!headers.is_empty(), every_response))
        })
        .on_connect(crate::tls::on_connect);
        let server = self.settings.start(server, listener, tls)?;
        Ok(Serving {
            port,
            server,
            lifecycle: self.lifecycle,
            shutdown_delay: self.settings.shutdown_delay,
        })
    }
}

/// A bound server, ready to run.
pub struct Serving {
    port: u16,
    server: Server,
    lifecycle: Lifecycle,
    shutdown_delay: Duration,
}

impl Serving {
    /// The port actually bound (the real one when `PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The handle that drains and stops it as SIGTERM would.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// Serves until SIGTERM, SIGINT or [`Lifecycle::request_stop`], then drains.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        run_until_stopped(self.server, self.lifecycle, self.shutdown_delay).await
    }
}

/// Serves until SIGTERM, SIGINT or [`Lifecycle::request_stop`], then stops in the two steps
/// of this module's documentation.
async fn run_until_stopped(
    server: Server,
    lifecycle: Lifecycle,
    shutdown_delay: Duration,
) -> io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let handle = server.handle();
    let mut server = pin!(server);

    let reason = tokio::select! {
        result = &mut server => return result,
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        () = lifecycle.stop_requested() => "stop requested",
    };
    lifecycle.start_draining();
    if !shutdown_delay.is_zero() {
        log::info!("{reason}: not ready any more; serving {shutdown_delay:?} more before closing");
        tokio::select! {
            result = &mut server => return result,
            () = tokio::time::sleep(shutdown_delay) => {}
            _ = terminate.recv() => log::info!("SIGTERM again: closing now"),
            _ = interrupt.recv() => log::info!("SIGINT again: closing now"),
        }
    }
    log::info!("{reason}: closing the listener, draining in-flight requests");
    // The server future must keep running for the stop command to be carried out.
    let ((), result) = tokio::join!(handle.stop(true), server);
    log::info!("drained; server stopped");
    result
}
