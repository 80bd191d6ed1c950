//! A real Redis for the tests: Debian's `redis-server`, on an ephemeral port of 127.0.0.1 with
//! its data in a temporary directory, run as compose runs it (append-only file,
//! `appendfsync always`). Where `redis-server` is not installed, [`RedisServer::start`] says
//! that the test is SKIPPED and returns `None`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::tls::Pair;

/// How long `redis-server` may take to answer `PING`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    /// Its TLS port and certificate, beside the plain port, when started with TLS.
    tls: Option<(u16, Pair)>,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A fresh server requiring `password` (if any), or `None` (having said SKIPPED) where
    /// `redis-server` is missing.
    pub async fn start(test: &str, password: Option<&str>) -> Option<RedisServer> {
        Self::start_with(test, password, None).await
    }

    /// [`RedisServer::start`], also serving TLS with `certificate` on a port of its own.
    pub async fn start_tls(
        test: &str,
        password: Option<&str>,
        certificate: Pair,
    ) -> Option<RedisServer> {
        Self::start_with(test, password, Some(certificate)).await
    }

    async fn start_with(
        test: &str,
        password: Option<&str>,
        certificate: Option<Pair>,
    ) -> Option<RedisServer> {
        let Some(binary) = crate::installed("redis-server") else {
            crate::missing(
                test,
                "redis-server is not installed (Debian: apt-get install redis-server)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // redis-server cannot take port 0 and say which it got: take a free one and hand it on.
        let port = crate::free_port();
        let tls = certificate.map(|pair| (crate::free_port(), pair));
        let child = spawn(&binary, &dir, port, password, tls.as_ref());
        let server = RedisServer {
            port,
            password: password.map(str::to_owned),
            tls,
            child,
            dir,
        };
        server.wait_ready().await;
        Some(server)
    }

    /// `UPSTREAM_URL` for a consumer attached to this server's database 0.
    pub fn attach_url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// `UPSTREAM_URL` for a consumer attached over TLS, by the name its certificate gives.
    pub fn attach_url_tls(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with TLS");
        let password = self.password.as_deref().unwrap_or_default();
        format!("rediss://:{password}@localhost:{port}/0")
    }

    /// SIGKILL, as a crash would, and wait until it is gone.
    pub async fn kill9(&mut self) {
        self.child.kill().await.expect("SIGKILL is delivered");
    }

    /// Starts it again on the same port and data, after [`RedisServer::kill9`].
    pub async fn restart(&mut self) {
        let binary =
            crate::installed("redis-server").expect("redis-server was installed at the start");
        self.child = spawn(
            &binary,
            &self.dir,
            self.port,
            self.password.as_deref(),
            self.tls.as_ref(),
        );
        self.wait_ready().await;
    }

    /// A client of this server, to read what the consumer stored.
    pub async fn connection(&self) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(self.attach_url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connects to redis-server")
    }

    async fn wait_ready(&self) {
        let client = ::redis::Client::open(self.attach_url()).expect("a valid URL");
        crate::eventually(STARTUP_DEADLINE, "redis-server answers PING", || async {
            match client.get_multiplexed_async_connection().await {
                Ok(mut connection) => ::redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }
}

fn spawn(
    binary: &PathBuf,
    dir: &tempfile::TempDir,
    port: u16,
    password: Option<&str>,
    tls: Option<&(u16, Pair)>,
) -> Child {
    let mut command = Command::new(binary);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    if let Some((tls_port, pair)) = tls {
        command
            .args(["--tls-port", &tls_port.to_string()])
            .args(["--tls-cert-file", &pair.cert, "--tls-key-file", &pair.key])
            // Clients are not asked for certificates (Redis asks by default).
            .args(["--tls-auth-clients", "no"]);
    }
    command.spawn().expect("redis-server starts")
}
