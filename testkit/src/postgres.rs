//! A real PostgreSQL for the tests: Debian's PostgreSQL 15 server (`initdb`, `postgres`,
//! `pg_basebackup`), on an ephemeral port of 127.0.0.1 with its data and socket in a temporary
//! directory, password authentication (scram-sha-256) on TCP as compose's image has it.
//!
//! The server refuses to run as root: run by root, it runs as the `postgres` user the package
//! creates (through `setpriv`, which execs, so the child's pid is the server's). A primary can
//! be given a streaming standby made by `pg_basebackup`, synchronous or not, and the standby
//! promoted. Where the server is not installed, [`PostgresServer::start`] says that the test is
//! SKIPPED (a failure with `CI=true`) and returns `None`.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::tls::Pair;

/// The database and the user every test server has.
pub const DATABASE: &str = "portbound";
pub const USER: &str = "portbound";

/// How long the server may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Where Debian puts PostgreSQL 15's programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL server, killed when dropped.
pub struct PostgresServer {
    pub port: u16,
    password: String,
    child: Child,
    dir: tempfile::TempDir,
    /// The `postgres` user's ids, when the tests run as root.
    run_as: Option<(u32, u32)>,
}

/// The `postgres` user's uid and gid, when the tests run as root (the server refuses root).
fn run_as() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgresql package creates the postgres user");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// A command for a PostgreSQL program, run as `run_as` where that is set.
fn program(name: &str, run_as: Option<(u32, u32)>) -> Command {
    let path = Path::new(BIN).join(name);
    let mut command = match run_as {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(path);
            command
        }
        None => Command::new(path),
    };
    command
        .stdin(Stdio::null())
        .env("LC_ALL", "C.UTF-8")
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command, what: &str) {
    let output = command.output().await.expect("the program starts");
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A directory for one server, owned by the user it runs as.
fn server_dir(run_as: Option<(u32, u32)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    dir
}

impl PostgresServer {
    /// A fresh primary whose user [`USER`] has `password`, with the database [`DATABASE`], or
    /// `None` (having said SKIPPED) where PostgreSQL 15 is not installed.
    pub async fn start(test: &str, password: &str) -> Option<PostgresServer> {
        if !Path::new(BIN).join("postgres").is_file() {
            crate::missing(
                test,
                "PostgreSQL 15 is not installed (Debian: apt-get install postgresql-15)",
            );
            return None;
        }
        let run_as = run_as();
        let dir = server_dir(run_as);
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, password).unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = program("initdb", run_as);
        initdb
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .args([
                "--username",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(initdb, "initdb").await;
        let server = PostgresServer::launch(dir, password, run_as).await;
        let client = server.client_of("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .unwrap();
        Some(server)
    }

    /// Starts the server on the data in `dir`, on a new port, and waits until it answers.
    async fn launch(dir: tempfile::TempDir, password: &str, run_as: Option<(u32, u32)>) -> Self {
        let port = crate::free_port();
        let child = spawn(dir.path(), port, run_as);
        let server = PostgresServer {
            port,
            password: password.to_owned(),
            child,
            dir,
            run_as,
        };
        server.wait_ready().await;
        server
    }

    /// A streaming standby of this server, made by `pg_basebackup`. A synchronous one is named
    /// in this server's `synchronous_standby_names`, so that a commit here is acknowledged only
    /// once the standby has it; an asynchronous one may lag.
    pub async fn standby(&self, synchronous: bool) -> PostgresServer {
        let dir = server_dir(self.run_as);
        let mut backup = program("pg_basebackup", self.run_as);
        backup
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--username",
                USER,
                "--write-recovery-conf",
                "--wal-method=stream",
            ])
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .env("PGPASSWORD", &self.password);
        run(backup, "pg_basebackup").await;
        // Later lines win: the standby names itself to the primary.
        let conninfo = format!(
            "\nprimary_conninfo = 'host=127.0.0.1 port={} user={USER} password={} application_name=standby'\n",
            self.port, self.password
        );
        let auto = dir.path().join("data/postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto).unwrap();
        text.push_str(&conninfo);
        std::fs::write(&auto, text).unwrap();
        let standby = PostgresServer::launch(dir, &self.password, self.run_as).await;
        let primary = self.client().await;
        if synchronous {
            // Two statements: ALTER SYSTEM cannot run inside the one transaction of a batch.
            primary
                .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
                .await
                .unwrap();
            primary
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .unwrap();
        }
        let state = if synchronous { "sync" } else { "async" };
        crate::eventually(STARTUP_DEADLINE, "the standby streams", || async {
            primary
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication \
                     WHERE application_name = 'standby' AND state = 'streaming' AND sync_state = $1",
                    &[&state],
                )
                .await
                .is_ok_and(|row| row.is_some())
        })
        .await;
        standby
    }

    /// `UPSTREAM_URL` for a consumer attached to this server's database.
    pub fn attach_url(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password, self.port
        )
    }

    /// Turns TLS on (`ssl=on`) with `certificate`, as a reload, and waits until it is on.
    pub async fn serve_tls(&self, certificate: &Pair) {
        let data = self.dir.path().join("data");
        for (from, to, mode) in [
            (&certificate.cert, "server.crt", 0o644),
            (&certificate.key, "server.key", 0o600),
        ] {
            let path = data.join(to);
            std::fs::copy(from, &path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let client = self.client().await;
        for statement in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
            client.batch_execute(statement).await.unwrap();
        }
        crate::eventually(STARTUP_DEADLINE, "PostgreSQL serves TLS", || async {
            let client = self.client().await;
            client
                .query_one("SHOW ssl", &[])
                .await
                .is_ok_and(|row| row.get::<_, String>(0) == "on")
        })
        .await;
    }

    /// `UPSTREAM_URL` for a consumer attached over TLS with `sslmode`, by the name the
    /// certificate gives.
    pub fn attach_url_tls(&self, sslmode: &str) -> String {
        format!(
            "postgres://{USER}:{}@localhost:{}/{DATABASE}?sslmode={sslmode}",
            self.password, self.port
        )
    }

    /// A client of this server's database, to read what the consumer stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_of(DATABASE).await
    }

    async fn client_of(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(&self.password)
            .dbname(database)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connects to the test server");
        tokio::spawn(connection);
        client
    }

    /// SIGKILL to the server and every process it started, as a crash of its machine would,
    /// and wait until the server is gone.
    pub async fn kill9(&mut self) {
        kill_group(&self.child);
        self.child.wait().await.expect("the server is reaped");
    }

    /// Starts it again on the same port and data, after [`PostgresServer::kill9`].
    pub async fn restart(&mut self) {
        // A killed postmaster leaves its children to notice; the port is free once they have.
        let pid_file = self.dir.path().join("data/postmaster.pid");
        crate::eventually(
            STARTUP_DEADLINE,
            "the killed server's processes end",
            || {
                let port = self.port;
                async move { TcpListener::bind(("127.0.0.1", port)).is_ok() }
            },
        )
        .await;
        let _ = std::fs::remove_file(pid_file);
        self.child = spawn(self.dir.path(), self.port, self.run_as);
        self.wait_ready().await;
    }

    /// Promotes this standby to a primary, and waits until it accepts writes.
    pub async fn promote(&self) {
        let client = self.client().await;
        client.batch_execute("SELECT pg_promote()").await.unwrap();
        crate::eventually(STARTUP_DEADLINE, "the promoted standby writes", || async {
            client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .is_ok_and(|row| !row.get::<_, bool>(0))
        })
        .await;
    }

    async fn wait_ready(&self) {
        let config = {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(self.port)
                .user(USER)
                .password(&self.password)
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(1));
            config
        };
        let ready = crate::within(STARTUP_DEADLINE, async || {
            config.connect(tokio_postgres::NoTls).await.ok().map(|_| ())
        })
        .await;
        assert!(
            ready.is_some(),
            "PostgreSQL did not accept connections within {STARTUP_DEADLINE:?}; its log:\n{}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }
}

fn spawn(dir: &Path, port: u16, run_as: Option<(u32, u32)>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    let mut command = program("postgres", run_as);
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group, so that a crash can take its backends with it.
        .process_group(0);
    command.spawn().expect("postgres starts")
}

/// SIGKILL to the process group `child` leads: the postmaster and its backends.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        kill_group(&self.child);
    }
}
