//! What every route shares: auth, request ids, problem bodies, health, metrics, OpenAPI.

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::{Trickle, assert_not_allowed, assert_problem, get_json, inprocess};
use upstream::settings::AccessToken;

#[tokio::test]
async fn with_a_token_v1_needs_it_as_bearer_or_basic_password() {
    let app =
        inprocess::upstream_with(|s| s.access_token = Some(AccessToken::parse("s3cret").unwrap()))
            .await;
    let info = || app.client.get(app.url("/v1/info"));

    let missing = info().send().await.unwrap();
    let www = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("Bearer") && www.contains("Basic"), "{www}");
    assert_problem(missing, StatusCode::UNAUTHORIZED).await;
    let wrong = info().bearer_auth("s3cre").send().await.unwrap();
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;

    assert_eq!(
        info().bearer_auth("s3cret").send().await.unwrap().status(),
        StatusCode::OK
    );
    let basic = info()
        .basic_auth("portbound", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
}

#[tokio::test]
async fn probes_metrics_and_the_contract_stay_open_with_a_token() {
    let app =
        inprocess::upstream_with(|s| s.access_token = Some(AccessToken::parse("s3cret").unwrap()))
            .await;
    for path in ["/livez", "/readyz", "/metrics", "/openapi.json"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn info_names_the_instance_and_counts_keys() {
    let app = inprocess::upstream_with(|s| s.instance_name = "upstream-b".to_owned()).await;
    app.put_json("a", &json!(1)).await;
    app.put_json("b", &json!(2)).await;
    let response = app.client.get(app.url("/v1/info")).send().await.unwrap();
    assert_eq!(response.headers()["x-instance"], "upstream-b");
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["service"], "upstream");
    assert_eq!(info["instance"], "upstream-b");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["storage"], "sqlite");
    assert_eq!(info["keys"], 2);
}

#[tokio::test]
async fn every_response_names_the_instance() {
    let app = inprocess::upstream_with(|s| s.instance_name = "a1".to_owned()).await;
    for path in ["/livez", "/nowhere", "/v1/kv/missing"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["x-instance"], "a1", "{path}");
    }
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_a_bad_one_replaced() {
    let app = inprocess::upstream().await;
    let echoed = app
        .client
        .get(app.url("/v1/kv/missing"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-123");
    assert_eq!(
        assert_problem(echoed, StatusCode::NOT_FOUND).await["request_id"],
        "trace-123"
    );

    let replaced = app
        .client
        .get(app.url("/livez"))
        .header("X-Request-Id", "bad id;")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "bad id;");
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_problems() {
    let app = inprocess::upstream().await;
    let missing = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND).await;

    let patch = app.client.patch(app.url("/v1/kv/k")).send().await.unwrap();
    assert!(patch.headers()["allow"].to_str().unwrap().contains("PUT"));
    assert_problem(patch, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn every_known_path_answers_an_unserved_method_with_405_and_allow() {
    let app = inprocess::upstream().await;
    for (method, path, allow) in [
        ("TRACE", "/readyz", "GET"),
        ("POST", "/livez", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/openapi.json", "GET"),
        ("TRACE", "/v1/info", "GET"),
        ("POST", "/v1/kv", "GET"),
        ("TRACE", "/v1/kv/a/b", "GET, PUT, DELETE"),
        ("PUT", "/v1/counters/c", "GET, POST"),
    ] {
        assert_not_allowed(&app.client, method, &app.url(path), allow).await;
    }
    let unknown = app
        .client
        .request("TRACE".parse().unwrap(), app.url("/v1/nothing"));
    assert_problem(unknown.send().await.unwrap(), StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn liveness_and_readiness_answer_and_readiness_turns_503_while_draining() {
    let app = inprocess::upstream().await;
    let live = app.client.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );

    app.lifecycle.start_draining();
    let draining = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(draining, StatusCode::SERVICE_UNAVAILABLE).await;
    let still_live = app.client.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(still_live.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_request_counts() {
    let app = inprocess::upstream().await;
    app.put_json("k", &json!(1)).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"upstream_http_requests_total{endpoint="/v1/kv/{key}*",method="PUT",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("upstream_storage_batch_writes_count"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_v1_contract() {
    let app = inprocess::upstream().await;
    let doc: Value = get_json(&app.client, app.url("/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/kv/{key}", "put"),
        ("/v1/kv/{key}", "get"),
        ("/v1/kv/{key}", "delete"),
        ("/v1/kv", "get"),
        ("/v1/counters/{name}", "post"),
        ("/v1/counters/{name}", "get"),
        ("/v1/info", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"].get("securitySchemes").is_none());
    let info = &doc["paths"]["/v1/info"]["get"];
    assert!(info.get("security").is_none());
    assert!(info["responses"].get("401").is_none());
}

#[tokio::test]
async fn with_a_token_the_document_asks_for_it_on_v1_only() {
    let app = inprocess::upstream_with(|settings| {
        settings.access_token = Some(AccessToken::parse("s3cret").unwrap());
    })
    .await;
    let doc: Value = get_json(&app.client, app.url("/openapi.json")).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    let info = &doc["paths"]["/v1/info"]["get"];
    assert_eq!(info["security"], json!([{"bearer": []}, {"basic": []}]));
    assert!(info["responses"]["401"].is_object());
    let readyz = &doc["paths"]["/readyz"]["get"];
    assert!(readyz.get("security").is_none());
}

#[tokio::test]
async fn clients_trickling_their_headers_neither_block_others_nor_stay_open() {
    let upstream = inprocess::upstream().await;
    testkit::assert_serves_beside_trickling_clients(&upstream.url, upstream.port, Trickle::Head)
        .await;
}

#[tokio::test]
async fn clients_trickling_their_bodies_neither_block_others_nor_stay_open() {
    let upstream = inprocess::upstream().await;
    let head = "PUT /v1/kv/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n";
    testkit::assert_serves_beside_trickling_clients(
        &upstream.url,
        upstream.port,
        Trickle::Body(head),
    )
    .await;
    // Nothing of a body cut short was stored.
    assert_eq!(
        upstream.get_key("slow").await.status(),
        reqwest::StatusCode::NOT_FOUND
    );
}
