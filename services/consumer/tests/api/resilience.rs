//! The consumer while its upstream is away, slow or back again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use testkit::misbehaving::{never_answering, refusing_port};
use testkit::proxy::{Fault, FaultProxy};
use testkit::{Trickle, assert_problem, eventually, inprocess};

#[tokio::test]
async fn with_the_upstream_down_it_starts_answers_503_and_recovers_by_itself() {
    // The consumer's upstream address is a proxy to a port that refuses connections, until
    // the proxy is pointed at the upstream once it runs.
    let (refusing, _held) = refusing_port();
    let address = FaultProxy::start_open(([127, 0, 0, 1], refusing).into()).await;
    let consumer = inprocess::consumer_with(&address.url(), |s| {
        s.backend.circuit_cooldown = Duration::from_millis(200);
    })
    .await;

    let live = consumer
        .client
        .get(consumer.url("/livez"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = consumer.get_json("/readyz").await;
    assert_eq!(ready["status"], "degraded");

    let refused = consumer
        .shorten(json!({"url": "https://example.com/"}))
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;

    let upstream = inprocess::upstream().await;
    address.retarget(([127, 0, 0, 1], upstream.port).into());
    eventually(
        Duration::from_secs(5),
        "the consumer uses the returned upstream",
        || async {
            consumer
                .shorten(json!({"url": "https://example.com/"}))
                .await
                .status()
                == StatusCode::CREATED
        },
    )
    .await;
    let ready = consumer.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn repeated_failures_open_the_circuit_which_then_fails_fast() {
    let (port, _held) = refusing_port();
    let consumer = inprocess::consumer_with(&format!("http://127.0.0.1:{port}/"), |s| {
        s.backend.circuit_failures = 2;
        s.backend.circuit_cooldown = Duration::from_secs(30);
    })
    .await;
    for _ in 0..2 {
        let response = consumer.follow("abc").await;
        let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(problem["detail"], "the backend is unreachable");
    }
    let unreachable = consumer.backend_calls("unreachable").await;
    let fast = consumer.follow("abc").await;
    assert_eq!(consumer.backend_calls("unreachable").await, unreachable);
    assert_eq!(
        consumer.backend_calls("circuit_open").await,
        1,
        "it failed fast"
    );
    // The first cooldown is short: a second, rounded up from 100 ms.
    let retry_after: u64 = fast.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1);
    let problem = assert_problem(fast, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not calling it")
    );

    let status = consumer.get_json("/api/status").await;
    assert_eq!(status["upstream"]["circuit"], "open");
    assert_eq!(status["upstream"]["reachable"], false);
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_at_the_deadline() {
    let (port, _never_answering) = never_answering().await;
    let consumer = inprocess::consumer_with(&format!("http://127.0.0.1:{port}/"), |s| {
        s.backend.connect_timeout = Duration::from_millis(200);
        s.backend.timeout = Duration::from_millis(400);
    })
    .await;
    let started = Instant::now();
    let response = consumer.follow("abc").await;
    let took = started.elapsed();
    assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "took {took:?}"
    );
}

#[tokio::test]
async fn readiness_says_degraded_within_a_second_while_the_upstream_hangs() {
    let (port, _never_answering) = never_answering().await;
    // A generous call deadline: readiness must not wait for it.
    let consumer = inprocess::consumer_with(&format!("http://127.0.0.1:{port}/"), |s| {
        s.backend.timeout = Duration::from_secs(10);
    })
    .await;
    let started = Instant::now();
    let ready = consumer.get_json("/readyz").await;
    let took = started.elapsed();
    assert_eq!(ready["status"], "degraded");
    // The probe's own one-second bound gave the answer, not the ten-second call deadline.
    assert_eq!(ready["detail"], "the backend did not answer within 1s");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "took {took:?}"
    );
}

#[tokio::test]
async fn clicks_made_before_an_outage_arrive_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("upstream.sqlite3").display().to_string();
    let start_upstream = || {
        let database = database.clone();
        inprocess::upstream_with(move |s| s.database_path = database)
    };
    let upstream = start_upstream().await;
    // The consumer reaches each upstream through one address, whichever port it runs on.
    let address = FaultProxy::start_open(([127, 0, 0, 1], upstream.port).into()).await;
    // The flusher ticks at once (nothing to send) and then after a second; the redirects and
    // the outage below take milliseconds, so the clicks are still unsent when it goes.
    let consumer = inprocess::consumer_with(&address.url(), |s| {
        s.click_flush_interval = Duration::from_secs(1);
        s.backend.circuit_cooldown = Duration::from_millis(100);
    })
    .await;
    let code = consumer.shorten_ok("https://example.com/").await;

    for _ in 0..4 {
        assert_eq!(consumer.follow(&code).await.status(), StatusCode::FOUND);
    }
    drop(upstream);
    let metrics = || async {
        let url = consumer.url("/metrics");
        reqwest::get(url).await.unwrap().text().await.unwrap()
    };
    eventually(
        Duration::from_secs(5),
        "a flush fails and keeps the clicks",
        || async {
            let text = metrics().await;
            text.contains("consumer_clicks_pending 4")
                && text.contains(r#"consumer_backend_calls_total{outcome="unreachable"}"#)
        },
    )
    .await;

    let upstream = start_upstream().await;
    address.retarget(([127, 0, 0, 1], upstream.port).into());
    eventually(
        Duration::from_secs(5),
        "the kept clicks are counted once",
        || async { upstream.counter(&format!("clicks/{code}")).await == 4 },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "nothing is left pending",
        || async { metrics().await.contains("consumer_clicks_pending 0") },
    )
    .await;
    assert_eq!(
        upstream.counter(&format!("clicks/{code}")).await,
        4,
        "counted more than once"
    );
}

#[tokio::test]
async fn an_upstream_gone_for_two_seconds_is_used_again_within_a_second_of_its_return() {
    let upstream = inprocess::upstream().await;
    let proxy = FaultProxy::start_open(([127, 0, 0, 1], upstream.port).into()).await;
    // The default CIRCUIT_COOLDOWN (5 s): only its growth from a short first cooldown makes
    // the consumer notice the return in time.
    let consumer = inprocess::consumer_with(&proxy.url(), |s| {
        s.backend.circuit_failures = 2;
    })
    .await;
    let code = consumer.shorten_ok("https://example.com/back").await;

    proxy.set(Fault::Reset);
    let gone = Instant::now();
    // Redirects keep coming while it is away (every 50 ms), opening the circuit.
    let mut every = tokio::time::interval(Duration::from_millis(50));
    while gone.elapsed() < Duration::from_secs(2) {
        every.tick().await;
        let away = consumer.follow(&code).await;
        assert_problem(away, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let status = consumer.get_json("/api/status").await;
    assert_ne!(status["upstream"]["circuit"], "closed", "{status}");

    proxy.set(Fault::Pass);
    let back = Instant::now();
    eventually(
        Duration::from_secs(1),
        "redirects are served within a second of the upstream's return",
        || async { consumer.follow(&code).await.status() == StatusCode::FOUND },
    )
    .await;
    eprintln!("served again {:?} after the return", back.elapsed());
}

#[tokio::test]
async fn clients_trickling_their_headers_neither_block_others_nor_stay_open() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let port = consumer.url.rsplit(':').next().unwrap().parse().unwrap();
    testkit::assert_serves_beside_trickling_clients(&consumer.url, port, Trickle::Head).await;
}

#[tokio::test]
async fn clients_trickling_their_bodies_neither_block_others_nor_stay_open() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let port = consumer.url.rsplit(':').next().unwrap().parse().unwrap();
    let head = "POST /api/links HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 20000\r\n\r\n";
    testkit::assert_serves_beside_trickling_clients(&consumer.url, port, Trickle::Body(head)).await;
}
