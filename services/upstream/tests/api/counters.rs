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
