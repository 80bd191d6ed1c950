//! `/v1/kv`: values, versions and conditional requests.

use reqwest::StatusCode;
use serde_json::{Value, json};

use reqwest::Response;
use testkit::{assert_problem, inprocess};

#[tokio::test]
async fn put_creates_with_201_then_replaces_with_200_and_a_new_etag() {
    let app = inprocess::upstream().await;

    let created = app
        .put_json("links/abc", &json!({"url": "https://example.com"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["location"], "/v1/kv/links/abc");
    let first = etag(&created);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["key"], "links/abc");
    assert_eq!(format!("\"{}\"", body["version"].as_str().unwrap()), first);

    let replaced = app.put_json("links/abc", &json!([1, 2, 3])).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_ne!(etag(&replaced), first);
}

#[tokio::test]
async fn get_returns_the_stored_json_with_its_etag() {
    let app = inprocess::upstream().await;
    let value = json!({"nested": {"list": [1, "two", null]}, "n": 1.5});
    let put = app.put_json("k", &value).await;

    let got = app.get_key("k").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/json");
    assert_eq!(etag(&got), etag(&put));
    assert_eq!(got.json::<Value>().await.unwrap(), value);
}

#[tokio::test]
async fn get_of_an_unknown_key_is_a_404_problem() {
    let app = inprocess::upstream().await;
    let body = assert_problem(app.get_key("missing").await, StatusCode::NOT_FOUND).await;
    assert!(body["detail"].as_str().unwrap().contains("missing"));
}

#[tokio::test]
async fn get_with_the_current_etag_in_if_none_match_is_304() {
    let app = inprocess::upstream().await;
    let tag = etag(&app.put_json("k", &json!(1)).await);

    let cached = app
        .client
        .get(app.url("/v1/kv/k"))
        .header("If-None-Match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&cached), tag);

    app.put_json("k", &json!(2)).await;
    let stale = app
        .client
        .get(app.url("/v1/kv/k"))
        .header("If-None-Match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.json::<Value>().await.unwrap(), json!(2));
}

#[tokio::test]
async fn if_none_match_star_creates_only() {
    let app = inprocess::upstream().await;
    let create = || {
        app.client
            .put(app.url("/v1/kv/once"))
            .header("If-None-Match", "*")
            .json(&json!("first"))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), StatusCode::CREATED);
    let refused = assert_problem(create().await.unwrap(), StatusCode::PRECONDITION_FAILED).await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(r#"the precondition on key "once" does not hold"#),
        "{detail}"
    );
    assert_eq!(
        app.get_key("once").await.json::<Value>().await.unwrap(),
        json!("first")
    );
}

#[tokio::test]
async fn if_match_replaces_only_the_named_version() {
    let app = inprocess::upstream().await;
    let v1 = etag(&app.put_json("k", &json!(1)).await);
    let v2 = etag(&app.put_json("k", &json!(2)).await);
    let put_if = |tag: String| {
        app.client
            .put(app.url("/v1/kv/k"))
            .header("If-Match", tag)
            .json(&json!(3))
            .send()
    };

    assert_problem(put_if(v1).await.unwrap(), StatusCode::PRECONDITION_FAILED).await;
    assert_problem(
        put_if(format!("W/{v2}")).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_eq!(put_if(v2).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        app.get_key("k").await.json::<Value>().await.unwrap(),
        json!(3)
    );
}

#[tokio::test]
async fn if_match_on_a_missing_key_fails_and_creates_nothing() {
    let app = inprocess::upstream().await;
    for tag in ["*", "\"1\""] {
        let response = app
            .client
            .put(app.url("/v1/kv/ghost"))
            .header("If-Match", tag)
            .json(&json!(1))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::PRECONDITION_FAILED).await;
    }
    assert_eq!(app.get_key("ghost").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_malformed_conditional_header_is_a_400() {
    let app = inprocess::upstream().await;
    let response = app
        .client
        .put(app.url("/v1/kv/k"))
        .header("If-Match", "not-quoted")
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    // A list with one good tag is still malformed as a whole.
    let partly = app
        .client
        .get(app.url("/v1/kv/k"))
        .header("If-None-Match", r#""1", garbage"#)
        .send()
        .await
        .unwrap();
    assert_problem(partly, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn if_match_and_if_none_match_are_both_checked_and_both_must_hold() {
    let app = inprocess::upstream().await;
    let tag = etag(&app.put_json("k", &json!(1)).await);
    let put = |if_match: &str, if_none_match: &str| {
        app.client
            .put(app.url("/v1/kv/k"))
            .header("If-Match", if_match)
            .header("If-None-Match", if_none_match)
            .json(&json!(2))
            .send()
    };
    let malformed = put("*", "not-quoted").await.unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;
    let second_fails = put(&tag, &tag).await.unwrap();
    assert_problem(second_fails, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(
        put(&tag, r#""999""#).await.unwrap().status(),
        StatusCode::OK
    );
    let value = app.get_key("k").await.json::<Value>().await.unwrap();
    assert_eq!(value, json!(2));
}

#[tokio::test]
async fn an_empty_list_of_tags_matches_no_version() {
    let app = inprocess::upstream().await;
    app.put_json("k", &json!(1)).await;
    let with = |name: &str| {
        app.client
            .put(app.url("/v1/kv/k"))
            .header(name, "")
            .json(&json!(2))
            .send()
    };
    let if_match = with("If-Match").await.unwrap();
    assert_problem(if_match, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(
        with("If-None-Match").await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn of_concurrent_writers_on_one_version_exactly_one_wins() {
    let app = inprocess::upstream().await;
    let tag = etag(&app.put_json("contended", &json!(0)).await);
    let writers = (0..32).map(|n| {
        app.client
            .put(app.url("/v1/kv/contended"))
            .header("If-Match", &tag)
            .json(&json!(n))
            .send()
    });
    let statuses: Vec<StatusCode> = futures_statuses(writers).await;
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, lost), (1, 31), "{statuses:?}");
}

async fn futures_statuses(
    requests: impl Iterator<
        Item = impl Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
    >,
) -> Vec<StatusCode> {
    let tasks: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().unwrap().status());
    }
    statuses
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let app = inprocess::upstream().await;
    app.put_json("k", &json!(1)).await;
    let delete = || app.client.delete(app.url("/v1/kv/k")).send();
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_problem(delete().await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_eq!(app.get_key("k").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_with_a_stale_if_match_is_412_and_keeps_the_value() {
    let app = inprocess::upstream().await;
    let old = etag(&app.put_json("k", &json!(1)).await);
    app.put_json("k", &json!(2)).await;
    let response = app
        .client
        .delete(app.url("/v1/kv/k"))
        .header("If-Match", old)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.get_key("k").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400() {
    let app = inprocess::upstream().await;
    let response = app
        .client
        .put(app.url("/v1/kv/k"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));
}

#[tokio::test]
async fn a_body_not_declared_as_json_is_a_415() {
    let app = inprocess::upstream().await;
    let response = app
        .client
        .put(app.url("/v1/kv/k"))
        .header("content-type", "text/plain")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn a_value_over_the_limit_is_a_413() {
    let app = inprocess::upstream_with(|settings| settings.max_value_bytes = 100).await;
    let fits = json!("x".repeat(90));
    assert_eq!(app.put_json("k", &fits).await.status(), StatusCode::CREATED);
    let too_big = json!("x".repeat(101));
    assert_problem(
        app.put_json("k", &too_big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
}

#[tokio::test]
async fn keys_that_could_escape_or_confuse_a_path_are_400() {
    let app = inprocess::upstream().await;
    for key in ["a//b", "a/", "a%20b", "a%25b", "%C3%A9", &"k".repeat(257)] {
        let response = app.put_json(key, &json!(1)).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    for path in [
        "/v1/kv/a/../b",
        "/v1/kv/./a",
        "/v1/kv/a/%2e%2e/b",
        "/v1/kv/..",
    ] {
        let answer = app.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn listing_pages_through_a_prefix_in_key_order() {
    let app = inprocess::upstream().await;
    for key in ["links/c", "links/a", "other/x", "links/b", "linkz"] {
        app.put_json(key, &json!(key)).await;
    }
    let page = |query: &str| {
        let url = app.url(&format!("/v1/kv?{query}"));
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    let first = page("prefix=links/&limit=2").await;
    let keys: Vec<&str> = first["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["links/a", "links/b"]);
    assert!(first["keys"][0]["version"].is_string());
    assert_eq!(first["next"], "links/b");

    let second = page("prefix=links/&limit=2&after=links/b").await;
    let keys: Vec<&str> = second["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["links/c"]);
    assert_eq!(second["next"], Value::Null);

    assert_eq!(page("").await["keys"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn listing_refuses_a_bad_limit_or_prefix() {
    let app = inprocess::upstream().await;
    for query in ["limit=0", "limit=1001", "limit=ten", "prefix=a%20b"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/kv?{query}")))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let max = app
        .client
        .get(app.url("/v1/kv?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(max.status(), StatusCode::OK);
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_beyond_the_queue_are_told_503_retry_after_and_every_acknowledged_write_is_kept() {
    // Room for one waiting write: 300 writers at once cannot all find a place.
    let app = std::sync::Arc::new(inprocess::upstream_with(|s| s.write_queue_limit = 1).await);
    let writers: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                (
                    i,
                    app.put_json(&format!("busy/{i}"), &json!({"i": i})).await,
                )
            })
        })
        .collect();
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for writer in writers {
        let (i, response) = writer.await.unwrap();
        match response.status() {
            StatusCode::CREATED => kept.push(i),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers()["retry-after"], "1");
                let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap()
                        .contains("try again in 1 s"),
                    "{problem}"
                );
                refused.push(i);
            }
            other => panic!("write {i}: {other}"),
        }
    }
    eprintln!(
        "{} writes acknowledged, {} refused",
        kept.len(),
        refused.len()
    );
    assert!(!refused.is_empty(), "no write was refused");
    assert!(!kept.is_empty(), "no write was acknowledged");
    for i in &kept {
        let got = app.get_key(&format!("busy/{i}")).await;
        assert_eq!(got.json::<Value>().await.unwrap(), json!({"i": i}));
    }
    for i in &refused {
        assert_eq!(
            app.get_key(&format!("busy/{i}")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let metrics = testkit::get_text(&app.client, app.url("/metrics")).await;
    assert_eq!(
        testkit::metric(&metrics, "upstream_storage_busy_total"),
        Some(refused.len() as f64)
    );
}

/// Sends a batch read.
async fn get_many(app: &inprocess::Upstream, body: &Value) -> Response {
    app.client
        .post(app.url("/v1/kv:batchGet"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_read_answers_each_key_in_order_with_its_value_and_version_or_not_found() {
    let app = inprocess::upstream().await;
    let link = json!({"url": "https://example.com", "created_at": "2026-12-02T00:00:00Z"});
    let version = etag(&app.put_json("links/a", &link).await);
    app.put_json("n", &json!(null)).await;

    // Asked twice, a key is answered twice; a stored null is found, an absent key is not.
    let response = get_many(
        &app,
        &json!({"keys": ["missing", "links/a", "n", "links/a"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let values = response.json::<Value>().await.unwrap()["values"].clone();
    let version = version.trim_matches('"');
    assert_eq!(
        values,
        json!([
            {"key": "missing", "found": false},
            {"key": "links/a", "found": true, "version": version, "value": link},
            {"key": "n", "found": true, "version": values[2]["version"], "value": null},
            {"key": "links/a", "found": true, "version": version, "value": link},
        ])
    );
    assert!(values[2]["version"].is_string());
}

#[tokio::test]
async fn a_batch_read_sees_a_value_written_after_it_was_cached() {
    let app = inprocess::upstream().await;
    app.put_json("k", &json!(1)).await;
    let first = get_many(&app, &json!({"keys": ["k"]})).await;
    assert_eq!(
        first.json::<Value>().await.unwrap()["values"][0]["value"],
        1
    );
    app.put_json("k", &json!(2)).await;
    let second = get_many(&app, &json!({"keys": ["k", "k"]})).await;
    let values = second.json::<Value>().await.unwrap()["values"].clone();
    assert_eq!(
        (&values[0]["value"], &values[1]["value"]),
        (&json!(2), &json!(2))
    );
}

#[tokio::test]
async fn a_batch_read_of_no_keys_too_many_or_a_bad_key_is_422() {
    let app = inprocess::upstream().await;
    let too_many: Vec<String> = (0..=1000).map(|i| format!("k{i}")).collect();
    for body in [
        json!({"keys": []}),
        json!({"keys": too_many}),
        json!({"keys": ["ok", "a/../b"]}),
        json!({"keys": ["ok", 1]}),
        json!({"keys": ["ok"], "more": 1}),
        json!(["ok"]),
    ] {
        assert_problem(
            get_many(&app, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
}

#[tokio::test]
async fn a_full_batch_read_of_the_longest_keys_fits_and_a_larger_body_is_413() {
    let app = inprocess::upstream().await;
    let longest = |i: usize| format!("{i:0>256}");
    app.put_json(&longest(999), &json!("last")).await;
    let keys: Vec<String> = (0..1000).map(longest).collect();
    let response = get_many(&app, &json!({"keys": keys})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let values = response.json::<Value>().await.unwrap()["values"].clone();
    assert_eq!(values.as_array().unwrap().len(), 1000);
    assert_eq!(values[0]["found"], false);
    assert_eq!(values[999]["value"], "last");

    let padded = format!(r#"{{"keys": ["a"]{}}}"#, " ".repeat(512 * 1024));
    let response = app
        .client
        .post(app.url("/v1/kv:batchGet"))
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn a_batch_read_can_never_be_mistaken_for_a_key() {
    let app = inprocess::upstream().await;
    // A key may hold ':' but always sits below /v1/kv/, so these are ordinary keys.
    app.put_json("kv:batchGet", &json!("a key")).await;
    let got = app.get_key("kv:batchGet").await;
    assert_eq!(got.json::<Value>().await.unwrap(), "a key");
    let read = get_many(&app, &json!({"keys": ["kv:batchGet"]})).await;
    assert_eq!(
        read.json::<Value>().await.unwrap()["values"][0]["value"],
        "a key"
    );
    // GET on the batch read's path is not a read of anything.
    let wrong = app
        .client
        .get(app.url("/v1/kv:batchGet"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
}
