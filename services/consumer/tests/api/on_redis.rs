//! The consumer attached to Redis (`UPSTREAM_URL=redis://…`): the same behaviour as on its HTTP
//! upstream, with its state under documented keys. Each test starts its own `redis-server`;
//! where that is not installed, the tests say SKIPPED.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::redis::RedisServer;
use testkit::{assert_problem, eventually, inprocess};

const PASSWORD: &str = "r3dis-secret";

#[tokio::test]
async fn links_and_clicks_live_in_redis_under_documented_keys() {
    let test = "links_and_clicks_live_in_redis_under_documented_keys";
    let Some(redis) = RedisServer::start(test, Some(PASSWORD)).await else {
        return;
    };
    let consumer = inprocess::consumer(&redis.attach_url()).await;
    let code = consumer.shorten_ok("https://example.com/on-redis").await;
    let custom = consumer
        .shorten(json!({"url": "https://example.com/custom", "code": "mine"}))
        .await;
    assert_eq!(custom.status(), StatusCode::CREATED);
    let again = consumer
        .shorten(json!({"url": "https://example.com/other", "code": "mine"}))
        .await;
    let problem = assert_problem(again, StatusCode::CONFLICT).await;
    assert_eq!(problem["pointer"], "/code");

    for _ in 0..3 {
        let follow = consumer.follow(&code).await;
        assert_eq!(follow.status(), StatusCode::FOUND);
        assert_eq!(follow.headers()["location"], "https://example.com/on-redis");
    }
    assert_eq!(
        consumer.follow("unknown").await.status(),
        StatusCode::NOT_FOUND
    );

    let mut connection = redis.connection().await;
    let stored: String = connection
        .get(format!("portbound:links:{code}"))
        .await
        .unwrap();
    let document: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(document["url"], "https://example.com/on-redis");
    let custom: String = connection.get("portbound:links:mine").await.unwrap();
    assert!(custom.contains("https://example.com/custom"), "{custom}");
    eventually(Duration::from_secs(5), "the clicks reach Redis", || {
        let mut connection = connection.clone();
        let key = format!("portbound:clicks:{code}");
        async move { connection.get::<_, Option<i64>>(key).await.unwrap() == Some(3) }
    })
    .await;
    let shown = consumer.get_json(&format!("/api/links/{code}")).await;
    assert_eq!(shown["clicks"], 3);
}

#[tokio::test]
async fn a_click_batch_sent_twice_counts_once() {
    let test = "a_click_batch_sent_twice_counts_once";
    let Some(redis) = RedisServer::start(test, None).await else {
        return;
    };
    let settings = consumer::Settings::local(0, &redis.attach_url()).unwrap();
    let registry = prometheus::Registry::new();
    let upstream = consumer::backend::Backend::new(&settings.backend, &registry).unwrap();
    let batch = |counts: &[(&str, u64)]| -> Vec<(String, u64)> {
        counts
            .iter()
            .map(|(code, by)| ((*code).to_owned(), *by))
            .collect()
    };
    for _ in 0..2 {
        upstream
            .add_clicks(&batch(&[("abc", 5), ("def", 1)]), "batch-1")
            .await
            .unwrap();
    }
    upstream
        .add_clicks(&batch(&[("abc", 2)]), "batch-2")
        .await
        .unwrap();
    let upstream = &upstream;
    let clicks = |code| async move {
        let code = consumer::links::Code::parse(code).unwrap();
        upstream.clicks(&code).await.unwrap()
    };
    assert_eq!(clicks("abc").await, 7);
    assert_eq!(clicks("def").await, 1);
    let mut connection = redis.connection().await;
    let kept: i64 = connection.ttl("portbound:batches:batch-1").await.unwrap();
    assert!((86_000..=86_400).contains(&kept), "kept {kept} s");
}

#[tokio::test]
async fn status_names_the_redis_server_and_its_database() {
    let test = "status_names_the_redis_server_and_its_database";
    let Some(redis) = RedisServer::start(test, Some(PASSWORD)).await else {
        return;
    };
    let consumer = inprocess::consumer(&redis.attach_url()).await;
    let status = consumer.get_json("/api/status").await;
    let upstream = &status["upstream"];
    assert_eq!(upstream["kind"], "redis");
    assert_eq!(upstream["reachable"], true);
    assert_eq!(
        upstream["url"],
        format!("redis://:***@127.0.0.1:{}/0", redis.port)
    );
    let instance = upstream["instance"].as_str().unwrap();
    assert!(
        instance.starts_with("redis ")
            && instance.ends_with(&format!(" at 127.0.0.1:{}/0", redis.port)),
        "{instance}"
    );
    assert!(!status.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn a_wrong_password_is_a_502_and_redis_away_is_a_503_until_it_is_back() {
    let test = "a_wrong_password_is_a_502_and_redis_away_is_a_503_until_it_is_back";
    let Some(mut redis) = RedisServer::start(test, Some(PASSWORD)).await else {
        return;
    };
    let wrong = inprocess::consumer(&format!("redis://:wrong@127.0.0.1:{}/0", redis.port)).await;
    let refused = wrong.shorten(json!({"url": "https://example.com/"})).await;
    let problem = assert_problem(refused, StatusCode::BAD_GATEWAY).await;
    assert!(!problem.to_string().contains("wrong"), "{problem}");

    let consumer = inprocess::consumer_with(&redis.attach_url(), |s| {
        s.backend.circuit_cooldown = Duration::from_millis(200);
    })
    .await;
    let code = consumer.shorten_ok("https://example.com/before").await;
    redis.kill9().await;
    let away = consumer
        .shorten(json!({"url": "https://example.com/"}))
        .await;
    assert!(away.headers().contains_key("retry-after"));
    assert_problem(away, StatusCode::SERVICE_UNAVAILABLE).await;

    redis.restart().await;
    eventually(
        Duration::from_secs(5),
        "the consumer reconnects to the restarted Redis",
        || async {
            consumer
                .shorten(json!({"url": "https://example.com/after"}))
                .await
                .status()
                == StatusCode::CREATED
        },
    )
    .await;
    // Acknowledged before the kill, so on disk (appendfsync always): still there.
    assert_eq!(consumer.follow(&code).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn redis_out_of_memory_is_a_full_store_503_and_reads_go_on() {
    let test = "redis_out_of_memory_is_a_full_store_503_and_reads_go_on";
    let Some(redis) = RedisServer::start(test, None).await else {
        return;
    };
    let consumer = inprocess::consumer(&redis.attach_url()).await;
    let code = consumer.shorten_ok("https://example.com/before-full").await;
    // Less memory than Redis already uses, and no eviction: every write is refused with OOM.
    let mut connection = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"])
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "1"])
        .query_async(&mut connection)
        .await
        .unwrap();

    let refused = consumer
        .shorten(json!({"url": "https://example.com/when-full"}))
        .await;
    assert_eq!(refused.headers()["retry-after"], "30");
    let problem = assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["detail"], "the backend is full; try again later");
    assert_eq!(consumer.follow(&code).await.status(), StatusCode::FOUND);
    assert_eq!(consumer.backend_calls("full").await, 1);
}
