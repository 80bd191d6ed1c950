//! The upstream as a process: durability across `kill -9`, draining on SIGTERM, refusing bad
//! configuration, and its `healthcheck` subcommand. Each test runs its own binary instance on
//! an ephemeral port with its own database file.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use testkit::process::{Service, binary, run_to_exit, start};
use testkit::{get_json, get_text, metric};

async fn upstream(database: &Path, extra: &[(&str, &str)]) -> Service {
    let database = database.to_str().unwrap();
    let mut env = vec![("DATABASE_PATH", database)];
    env.extend_from_slice(extra);
    start(&binary("upstream"), &env).await
}

#[tokio::test]
async fn acknowledged_writes_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("upstream.sqlite3");
    let service = upstream(&database, &[]).await;
    let client = reqwest::Client::new();

    let puts = (0..400).map(|i| {
        let request = client
            .put(format!("{}/v1/kv/burst/{i}", service.url))
            .json(&json!({"i": i}));
        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
    });
    let increments = (0..200).map(|i| {
        let request = client
            .post(format!("{}/v1/counters/burst", service.url))
            .header("Idempotency-Key", format!("k{i}"));
        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
    });
    let tasks: Vec<_> = puts.chain(increments).collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_success());
    }
    // Every write above was acknowledged; kill the process before it can do anything else.
    service.kill9().await;

    let service = upstream(&database, &[]).await;
    for i in 0..400 {
        let response = client
            .get(format!("{}/v1/kv/burst/{i}", service.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "burst/{i} was lost");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"i": i}));
    }
    let counter: Value = get_json(&client, format!("{}/v1/counters/burst", service.url)).await;
    assert_eq!(counter["value"], 200);

    let conn = rusqlite::Connection::open(&database).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// Reads one HTTP/1.1 response (with `Content-Length`) from a kept-alive connection.
async fn read_response(stream: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).await.unwrap() > 0,
            "connection closed"
        );
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let status = head[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .iter()
        .find_map(|h| {
            h.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn sigterm_stops_accepting_reports_not_ready_and_finishes_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("upstream.sqlite3");
    let mut service = upstream(&database, &[("SHUTDOWN_DELAY", "1s")]).await;
    let address = format!("127.0.0.1:{}", service.port);

    // A client with a kept-alive connection, as a load balancer's health checker has.
    let mut prober = BufReader::new(TcpStream::connect(&address).await.unwrap());
    let probe = b"GET /readyz HTTP/1.1\r\nHost: upstream\r\n\r\n";
    prober.get_mut().write_all(probe).await.unwrap();
    assert_eq!(read_response(&mut prober).await.0, 200);

    // A write whose body is only half sent when the signal arrives.
    let body = br#"{"in":"flight"}"#;
    let mut writer = BufReader::new(TcpStream::connect(&address).await.unwrap());
    let head = format!(
        "PUT /v1/kv/in-flight HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.get_mut().write_all(head.as_bytes()).await.unwrap();
    writer.get_mut().write_all(&body[..5]).await.unwrap();

    let signalled = Instant::now();
    service.signal(Signal::SIGTERM);

    // During SHUTDOWN_DELAY the prober hears that the instance is going away.
    let problem = testkit::within(Duration::from_secs(1), async || {
        prober.get_mut().write_all(probe).await.unwrap();
        let (status, body) = read_response(&mut prober).await;
        assert!(
            status == 200 || status == 503,
            "readiness answered {status}"
        );
        (status == 503).then_some(body)
    })
    .await
    .expect("readiness turns 503 within 1 s of SIGTERM");
    assert!(problem.contains("shutting down"), "{problem}");

    // Then the listener closes: new connections are refused.
    testkit::eventually(
        Duration::from_secs(5),
        "the listener closes after SIGTERM",
        || async { TcpStream::connect(&address).await.is_err() },
    )
    .await;

    // The request in flight completes, and is acknowledged.
    writer.get_mut().write_all(&body[5..]).await.unwrap();
    let (status, written) = read_response(&mut writer).await;
    assert_eq!(status, 201, "{written}");
    drop(writer);

    let exit = service.wait_exit(Duration::from_secs(9)).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(9),
        "took {:?}",
        signalled.elapsed()
    );
    let logs = service.logs().join("\n");
    assert!(logs.contains("SIGTERM"), "{logs}");
    // One access-log line per request, the one in flight included.
    assert!(
        logs.contains(r#""PUT /v1/kv/in-flight HTTP/1.1" 201"#),
        "{logs}"
    );

    let service = upstream(&database, &[]).await;
    let kept = reqwest::get(format!("{}/v1/kv/in-flight", service.url))
        .await
        .unwrap();
    assert_eq!(kept.json::<Value>().await.unwrap(), json!({"in": "flight"}));
}

#[tokio::test]
async fn sigint_also_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = upstream(&dir.path().join("db.sqlite3"), &[]).await;
    service.signal(Signal::SIGINT);
    assert!(service.wait_exit(Duration::from_secs(9)).await.success());
}

async fn refused(env: &[(&str, &str)]) -> String {
    let (status, output) = run_to_exit(&binary("upstream"), &[], env).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        !output.contains("listening on"),
        "it bound before refusing: {output}"
    );
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("invalid configuration"))
        .collect();
    assert_eq!(lines.len(), 1, "{output}");
    lines[0].to_owned()
}

#[tokio::test]
async fn bad_configuration_stops_with_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let db = db.to_str().unwrap();

    let line = refused(&[("PORT", "80a"), ("DATABASE_PATH", db)]).await;
    assert!(
        line.contains(r#"PORT="80a": expected a port number"#),
        "{line}"
    );

    let line = refused(&[("SHUTDOWN_TIMEOUT", "soon"), ("DATABASE_PATH", db)]).await;
    assert!(
        line.contains(r#"SHUTDOWN_TIMEOUT="soon": expected a positive duration"#),
        "{line}"
    );

    let line = refused(&[("HOST", "example.com"), ("DATABASE_PATH", db)]).await;
    assert!(
        line.contains(r#"HOST="example.com": expected an IP address"#),
        "{line}"
    );

    let line = refused(&[("ACCESS_TOKEN", "two words"), ("DATABASE_PATH", db)]).await;
    assert!(
        line.contains(r#"ACCESS_TOKEN="***""#) && !line.contains("words"),
        "{line}"
    );

    let line = refused(&[("CONFIG_FILE", "/nonexistent/upstream.toml")]).await;
    assert!(
        line.contains(r#"CONFIG_FILE="/nonexistent/upstream.toml""#),
        "{line}"
    );
}

#[tokio::test]
async fn an_unusable_database_path_stops_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().to_str().unwrap();
    let line = refused(&[("DATABASE_PATH", directory)]).await;
    assert!(
        line.contains("DATABASE_PATH=") && line.contains("expected a writable SQLite"),
        "{line}"
    );

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let below_a_file = file.join("db.sqlite3");
    let line = refused(&[("DATABASE_PATH", below_a_file.to_str().unwrap())]).await;
    assert!(line.contains("cannot create directory"), "{line}");

    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(&not_sqlite, "x".repeat(4096)).unwrap();
    let line = refused(&[("DATABASE_PATH", not_sqlite.to_str().unwrap())]).await;
    assert!(line.contains("DATABASE_PATH="), "{line}");
}

#[tokio::test]
async fn a_port_already_in_use_is_reported_against_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let line = refused(&[("PORT", &port), ("DATABASE_PATH", ":memory:")]).await;
    assert!(
        line.contains(&format!(
            "PORT=\"{port}\": expected a port that can be bound"
        )),
        "{line}"
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_probes_the_running_instance() {
    let dir = tempfile::tempdir().unwrap();
    let service = upstream(&dir.path().join("db.sqlite3"), &[]).await;
    let port = service.port.to_string();
    let upstream = binary("upstream");

    let (healthy, output) = run_to_exit(&upstream, &["healthcheck"], &[("PORT", &port)]).await;
    assert_eq!(healthy.code(), Some(0), "{output}");

    service.kill9().await;
    let (unhealthy, output) = run_to_exit(&upstream, &["healthcheck"], &[("PORT", &port)]).await;
    assert_eq!(unhealthy.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("127.0.0.1:{port}/readyz")),
        "{output}"
    );

    // Docker reserves status 2; a healthcheck never uses it, even for bad configuration.
    let (misconfigured, output) = run_to_exit(&upstream, &["healthcheck"], &[("PORT", "x")]).await;
    assert_eq!(misconfigured.code(), Some(1), "{output}");
}

/// A small tmpfs of its own, mounted for one test and unmounted when dropped; `None` where
/// this process may not mount (not root, or in a container without the capability).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_507_logged_once_reads_go_on_and_writes_resume_with_space() {
    let Some(disk) = SmallDisk::mount("2m") else {
        testkit::missing(
            "a_full_disk_is_a_507_logged_once_reads_go_on_and_writes_resume_with_space",
            "mounting a small tmpfs needs root (or CAP_SYS_ADMIN)",
        );
        return;
    };
    // Space that the test gives back later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0; 512 * 1024]).unwrap();
    let database = disk.path().join("upstream.sqlite3");
    let mut service = upstream(&database, &[]).await;
    let client = reqwest::Client::new();
    let value = json!({ "pad": "x".repeat(16 * 1024) });
    let put = |key: String| {
        let request = client
            .put(format!("{}/v1/kv/{key}", service.url))
            .json(&value);
        async move { request.send().await.unwrap() }
    };

    // Fill the disk: every answer is a 201 until the first 507.
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..400 {
        let response = put(format!("fill/{i}")).await;
        if response.status() == StatusCode::CREATED {
            acknowledged.push(i);
            continue;
        }
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        full = Some(response.json::<Value>().await.unwrap());
        break;
    }
    let problem = full.expect("the disk filled up within 400 writes of 16 KiB");
    assert_eq!(problem["detail"], "storage is full", "{problem}");
    assert!(!acknowledged.is_empty());
    // More writes are refused the same way, and reads go on.
    for i in 0..20 {
        let refused = put(format!("more/{i}")).await;
        assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
    }
    let read = client
        .get(format!("{}/v1/kv/fill/{}", service.url, acknowledged[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let metrics = get_text(&client, format!("{}/metrics", service.url)).await;
    let counted = metric(&metrics, "upstream_storage_full_total").expect("the metric");
    assert!(counted >= 21.0, "{counted} refused writes counted");
    let full_lines = |logs: &[String]| {
        logs.iter()
            .filter(|line| line.contains("the disk is full"))
            .count()
    };
    assert_eq!(full_lines(&service.logs()), 1, "one line for the burst");

    // Space comes back: writes succeed again by themselves.
    std::fs::remove_file(&filler).unwrap();
    testkit::eventually(Duration::from_secs(10), "writes resume", || async {
        put("after".to_owned()).await.status().is_success()
    })
    .await;
    testkit::eventually(Duration::from_secs(5), "the recovery is logged", || async {
        service
            .logs()
            .iter()
            .any(|line| line.contains("writes succeed again"))
    })
    .await;

    service.signal(Signal::SIGTERM);
    assert!(service.wait_exit(Duration::from_secs(9)).await.success());
    let conn = rusqlite::Connection::open(&database).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    for i in &acknowledged {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM kv WHERE key = ?1",
                [format!("fill/{i}")],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "acknowledged write fill/{i} was lost");
    }
    drop(conn);
    drop(disk);
}
