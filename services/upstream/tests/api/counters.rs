//! `/v1/counters`: atomic, idempotent increments.

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::{assert_problem, inprocess};

#[tokio::test]
async fn a_counter_never_incremented_reads_zero() {
    let app = inprocess::upstream().await;
    let response = app
        .client
        .get(app.url("/v1/counters/clicks/new"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"name": "clicks/new", "value": 0})
    );
}

#[tokio::test]
async fn increments_add_one_by_default_or_the_amount_given() {
    let app = inprocess::upstream().await;
    let once = app.increment("c", None, None).await;
    assert_eq!(
        once.json::<Value>().await.unwrap(),
        json!({"name": "c", "value": 1})
    );
    let more = app.increment("c", Some(json!({"by": 41})), None).await;
    assert_eq!(more.json::<Value>().await.unwrap()["value"], 42);
    let less = app.increment("c", Some(json!({"by": -2})), None).await;
    assert_eq!(less.json::<Value>().await.unwrap()["value"], 40);
}

#[tokio::test]
async fn a_retried_increment_with_the_same_idempotency_key_counts_once() {
    let app = inprocess::upstream().await;
    let first = app
        .increment("c", Some(json!({"by": 3})), Some("batch-1"))
        .await;
    assert_eq!(first.json::<Value>().await.unwrap()["value"], 3);

    let retry = app
        .increment("c", Some(json!({"by": 3})), Some("batch-1"))
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap()["value"], 3);

    let other_key = app
        .increment("c", Some(json!({"by": 3})), Some("batch-2"))
        .await;
    assert_eq!(other_key.json::<Value>().await.unwrap()["value"], 6);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_amount_is_422() {
    let app = inprocess::upstream().await;
    app.increment("c", Some(json!({"by": 1})), Some("k")).await;
    let reused = app.increment("c", Some(json!({"by": 2})), Some("k")).await;
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn two_clients_of_1000_concurrent_increments_count_exactly_2000() {
    let app = inprocess::upstream().await;
    let clients = [reqwest::Client::new(), reqwest::Client::new()];
    let url = app.url("/v1/counters/hot");
    let tasks: Vec<_> = clients
        .iter()
        .flat_map(|client| (0..1000).map(|_| client.post(&url)))
        .map(|request| tokio::spawn(async move { request.send().await.map(|r| r.status()) }))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    let total = app
        .client
        .get(app.url("/v1/counters/hot"))
        .send()
        .await
        .unwrap();
    assert_eq!(total.json::<Value>().await.unwrap()["value"], 2000);
}

#[tokio::test]
async fn a_bad_increment_body_is_refused_with_the_right_status() {
    let app = inprocess::upstream().await;
    let send = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/v1/counters/c"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        send("text/plain", "5").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_problem(
        send("application/json", "{").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        send("application/json", r#"{"by":"x"}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(
        send("application/json", r#"{"bye":1}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    for not_an_object in ["[]", "[5]", "5"] {
        assert_problem(
            send("application/json", not_an_object).await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let value = app
        .client
        .get(app.url("/v1/counters/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(value.json::<Value>().await.unwrap()["value"], 0);
}

#[tokio::test]
async fn a_null_body_adds_one_as_no_body_does() {
    let app = inprocess::upstream().await;
    let response = app.increment("c", Some(Value::Null), None).await;
    assert_eq!(response.json::<Value>().await.unwrap()["value"], 1);
}

#[tokio::test]
async fn an_increment_past_the_64_bit_range_is_422() {
    let app = inprocess::upstream().await;
    app.increment("c", Some(json!({"by": i64::MAX})), None)
        .await;
    let over = app.increment("c", None, None).await;
    assert_problem(over, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_400() {
    let app = inprocess::upstream().await;
    let long = "k".repeat(256);
    let response = app.increment("c", None, Some(&long)).await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

/// Sends a batch of increments.
async fn increment_many(
    app: &inprocess::Upstream,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/counters")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_batch_adds_to_each_counter_in_order_and_answers_each_value() {
    let app = inprocess::upstream().await;
    app.increment("a", Some(json!({"by": 10})), None).await;
    let batch = json!({"increments": [
        {"name": "a", "by": 2}, {"name": "b"}, {"name": "a", "by": -5}
    ]});
    let response = increment_many(&app, &batch, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"counters": [
            {"name": "a", "value": 12}, {"name": "b", "value": 1}, {"name": "a", "value": 7}
        ]})
    );
    assert_eq!(app.counter("a").await, 7);
    assert_eq!(app.counter("b").await, 1);
}

#[tokio::test]
async fn a_retried_batch_with_the_same_key_counts_once_and_another_batch_may_not_reuse_it() {
    let app = inprocess::upstream().await;
    let batch = json!({"increments": [{"name": "clicks/x", "by": 3}, {"name": "clicks/y"}]});
    let first = increment_many(&app, &batch, Some("flush-1")).await;
    let first: Value = first.json().await.unwrap();

    let retry = increment_many(&app, &batch, Some("flush-1")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    assert_eq!(app.counter("clicks/x").await, 3);

    let other = json!({"increments": [{"name": "clicks/x", "by": 4}]});
    let reused = increment_many(&app, &other, Some("flush-1")).await;
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    // The same key on one counter's own call is a key of that counter: unrelated to a batch's.
    let single = app.increment("clicks/x", None, Some("flush-1")).await;
    assert_eq!(single.json::<Value>().await.unwrap()["value"], 4);
}

#[tokio::test]
async fn a_batch_that_would_overflow_one_counter_counts_nothing() {
    let app = inprocess::upstream().await;
    app.increment("full", Some(json!({"by": i64::MAX})), None)
        .await;
    let batch = json!({"increments": [{"name": "other", "by": 5}, {"name": "full"}]});
    let over = increment_many(&app, &batch, Some("k")).await;
    let problem = assert_problem(over, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(problem["detail"].as_str().unwrap().contains("\"full\""));
    assert_eq!(app.counter("other").await, 0);
    // Nothing was remembered under the key either: the batch may be sent again as it is.
    let batch = json!({"increments": [{"name": "other", "by": 5}]});
    let retried = increment_many(&app, &batch, Some("k")).await;
    assert_eq!(retried.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_batch_of_no_increments_too_many_or_a_bad_name_is_422_and_counts_nothing() {
    let app = inprocess::upstream().await;
    let too_many: Vec<Value> = (0..=1000)
        .map(|i| json!({"name": format!("n{i}")}))
        .collect();
    for body in [
        json!({"increments": []}),
        json!({"increments": too_many}),
        json!({"increments": [{"name": "ok"}, {"name": "a/../b"}]}),
        json!({"increments": [{"name": "ok", "by": "x"}]}),
        json!({"increments": [["ok", 1]]}),
        json!({"increments": [{"name": "ok"}], "more": 1}),
        json!([{"name": "ok"}]),
    ] {
        let refused = increment_many(&app, &body, None).await;
        assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert_eq!(app.counter("ok").await, 0);
    assert_eq!(app.counter("n0").await, 0);
}

#[tokio::test]
async fn a_full_batch_fits_whatever_max_value_bytes_is_and_a_larger_body_is_413() {
    let app = inprocess::upstream_with(|settings| settings.max_value_bytes = 100).await;
    let longest = |i: usize| format!("{i:0>256}");
    let full: Vec<Value> = (0..1000)
        .map(|i| json!({"name": longest(i), "by": i64::MIN}))
        .collect();
    let response = increment_many(&app, &json!({"increments": full}), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.counter(&longest(999)).await, i64::MIN);

    let padded = format!(
        r#"{{"increments": [{{"name": "a"}}]{}}}"#,
        " ".repeat(512 * 1024)
    );
    let response = app
        .client
        .post(app.url("/v1/counters"))
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}
