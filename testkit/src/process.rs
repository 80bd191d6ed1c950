//! Running the real service binaries: built once, started on ephemeral ports with a clean
//! environment, their logs kept for assertions, stopped by signal or on drop.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::proxy;

/// How long a service may take to bind, and then to become ready.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(15);

/// The path of a workspace binary, up to date.
///
/// The binaries are built once per test process with `cargo build --bins --tests`: the same
/// selection as a plain `cargo test`, so right after one it is a no-op. (Building one package
/// alone resolves dependency features without the dev-dependencies and relinks everything on
/// each run; running a single test target, `cargo test --test e2e`, costs one relink.)
pub fn binary(name: &str) -> PathBuf {
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = PROFILE_DIR.get_or_init(|| {
        // Test executables live in <target>/<profile>/deps.
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in <target>/<profile>/deps")
            .to_owned();
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["build", "--quiet", "--bins", "--tests"]);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(
            status.success(),
            "cargo could not build the service binaries"
        );
        dir
    });
    dir.join(name)
}

/// A service process started by a test.
pub struct Service {
    child: Child,
    pub port: u16,
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// For a consumer, the proxy that checks what it sends upstream against the contract.
    tap: Option<proxy::FaultProxy>,
}

/// Starts `binary` with only `env` (plus `PORT=0` unless given), waits until it logs the port
/// it bound and answers `/readyz`, and returns it.
pub async fn start(binary: &Path, env: &[(&str, &str)]) -> Service {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the service binary starts");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (bound_tx, mut bound) = mpsc::unbounded_channel();
    collect_lines(child.stdout.take().unwrap(), logs.clone(), bound_tx.clone());
    collect_lines(child.stderr.take().unwrap(), logs.clone(), bound_tx);

    let bound_at = tokio::time::timeout(STARTUP_DEADLINE, bound.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "no 'listening on' line; logs:\n{}",
                logs.lock().unwrap().join("\n")
            )
        });
    let (scheme, port) = bound_at;
    let service = Service {
        child,
        port,
        url: format!("{scheme}://127.0.0.1:{port}"),
        logs,
        tap: None,
    };
    service.wait_ready().await;
    service
}

fn collect_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
    bound: mpsc::UnboundedSender<(&'static str, u16)>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for scheme in ["http", "https"] {
                if let Some(port) = line
                    .split(&format!("listening on {scheme}://"))
                    .nth(1)
                    .and_then(|addr| addr.rsplit(':').next())
                    .and_then(|port| port.trim().parse().ok())
                {
                    let _ = bound.send((scheme, port));
                }
            }
            logs.lock().unwrap().push(line);
        }
    });
}

impl Service {
    /// Polls `/readyz` until it answers 200, or panics at the deadline. Over HTTPS it asks
    /// only whether the service is up: what its certificate proves is the tests' business.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let ready = crate::within(STARTUP_DEADLINE, async || {
            client
                .get(format!("{}/readyz", self.url))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "not ready within {STARTUP_DEADLINE:?}; logs:\n{}",
            self.logs().join("\n")
        );
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("still running") as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the signal is delivered");
    }

    /// Waits for the process to exit, or panics after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("the exit status is known"),
            Err(_) => panic!(
                "still running after {limit:?}; logs:\n{}",
                self.logs().join("\n")
            ),
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("SIGKILL is delivered");
    }

    /// A consumer's proxy to its upstream: retarget it to attach the consumer to an upstream
    /// started elsewhere, at the same address.
    pub fn upstream_proxy(&self) -> &proxy::FaultProxy {
        self.tap.as_ref().expect("a consumer attached to 127.0.0.1")
    }

    /// How many requests a consumer has sent upstream, all of them checked against the contract.
    pub fn requests_upstream(&self) -> usize {
        self.tap
            .as_ref()
            .map_or(0, proxy::FaultProxy::requests_seen)
    }

    /// Every line it printed so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

/// Runs `binary` with only `env` and `args` until it exits (within 15 s), for failures at start.
pub async fn run_to_exit(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String) {
    let output = tokio::time::timeout(
        STARTUP_DEADLINE,
        Command::new(binary)
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("it exits in time")
    .expect("it starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// The token the spawned upstreams require, and the consumers present.
pub const TOKEN: &str = "e2e-t0ken";

/// A stack that is already running, named by `E2E_CONSUMER_URL` and `E2E_UPSTREAM_URL` (and
/// `E2E_UPSTREAM_TOKEN` when the upstream needs one).
pub struct External {
    pub consumer: String,
    pub upstream: String,
    pub token: Option<String>,
}

/// The running stack to test, if the environment names one.
pub fn external() -> Option<External> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    Some(External {
        consumer: var("E2E_CONSUMER_URL")?.trim_end_matches('/').to_owned(),
        upstream: var("E2E_UPSTREAM_URL")?.trim_end_matches('/').to_owned(),
        token: var("E2E_UPSTREAM_TOKEN"),
    })
}

/// True (after saying so) when the suite runs against an external stack, which a test that
/// must start, kill or restart processes cannot do.
pub fn skipped_on_external_stack(test: &str) -> bool {
    let skip = external().is_some();
    if skip {
        crate::skipped(
            test,
            "it starts and kills processes, and E2E_CONSUMER_URL names a running stack",
        );
    }
    skip
}

/// An upstream binary with its database in `dir`, requiring [`TOKEN`].
pub async fn spawn_upstream(dir: &Path, instance: &str, extra: &[(&str, &str)]) -> Service {
    let database = dir.join(format!("{instance}.sqlite3"));
    let mut env = vec![
        ("DATABASE_PATH", database.to_str().expect("a UTF-8 path")),
        ("ACCESS_TOKEN", TOKEN),
        ("INSTANCE_NAME", instance),
    ];
    env.extend_from_slice(extra);
    start(&binary("upstream"), &env).await
}

/// A consumer binary attached to `upstream_url`. When that names a port on 127.0.0.1, the
/// consumer reaches it through a proxy that checks every request against the upstream's
/// contract; the service fails the test when it is dropped if one was outside it.
pub async fn spawn_consumer(upstream_url: &str, extra: &[(&str, &str)]) -> Service {
    let tapped = tap(upstream_url).await;
    let attached = tapped
        .as_ref()
        .map_or(upstream_url.to_owned(), |(url, _)| url.clone());
    let mut env = vec![("UPSTREAM_URL", attached.as_str())];
    env.extend_from_slice(extra);
    let mut service = start(&binary("consumer"), &env).await;
    service.tap = tapped.map(|(_, proxy)| proxy);
    service
}

/// A contract-checking proxy in front of a local `upstream_url`, and the URL that reaches it
/// (credentials and path kept).
async fn tap(upstream_url: &str) -> Option<(String, proxy::FaultProxy)> {
    let mut url = url::Url::parse(upstream_url).ok()?;
    if url.scheme() != "http" || url.host_str() != Some("127.0.0.1") {
        return None;
    }
    let proxy = proxy::FaultProxy::start(([127, 0, 0, 1], url.port()?).into()).await;
    url.set_port(Some(proxy.port)).ok()?;
    Some((url.to_string(), proxy))
}

/// The `UPSTREAM_URL` for a spawned upstream on `port`, with the token in the userinfo.
pub fn attach(port: u16) -> String {
    format!("http://portbound:{TOKEN}@127.0.0.1:{port}/")
}
