//! Creating, following and reading links, and the rules on codes and targets.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::{assert_not_allowed, assert_problem, eventually, get_text, inprocess};

#[tokio::test]
async fn a_link_is_created_followed_and_counted() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;

    let created = consumer
        .shorten(json!({"url": "https://example.com/page?q=1"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let link: Value = created.json().await.unwrap();
    let code = link["code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert_eq!(location, format!("/api/links/{code}"));
    assert_eq!(link["url"], "https://example.com/page?q=1");
    assert_eq!(link["short_url"], format!("http://localhost:8080/{code}"));
    assert!(link["created_at"].as_str().unwrap().ends_with('Z'));

    for _ in 0..3 {
        let redirect = consumer.follow(code).await;
        assert_eq!(redirect.status(), StatusCode::FOUND);
        assert_eq!(
            redirect.headers()["location"],
            "https://example.com/page?q=1"
        );
        assert_eq!(redirect.headers()["cache-control"], "no-store");
    }

    let shown = consumer.get_json(&format!("/api/links/{code}")).await;
    assert_eq!(shown["clicks"], 3);
    assert_eq!(shown["url"], "https://example.com/page?q=1");
    eventually(
        Duration::from_secs(5),
        "clicks reach the upstream",
        || async { upstream.counter(&format!("clicks/{code}")).await == 3 },
    )
    .await;
}

#[tokio::test]
async fn a_custom_code_is_used_and_cannot_be_taken_twice() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer_with(&upstream.attach_url(), |s| {
        s.public_url = "https://sho.rt/x/".parse().unwrap();
    })
    .await;
    let mine = consumer
        .shorten(json!({"url": "https://a.example/", "code": "my-Code_1"}))
        .await;
    assert_eq!(mine.status(), StatusCode::CREATED);
    assert_eq!(
        mine.json::<Value>().await.unwrap()["short_url"],
        "https://sho.rt/x/my-Code_1"
    );

    let again = consumer
        .shorten(json!({"url": "https://b.example/", "code": "my-Code_1"}))
        .await;
    assert_problem(again, StatusCode::CONFLICT).await;
    // The same request again, within the same second, is still a second create: refused.
    let same = consumer
        .shorten(json!({"url": "https://a.example/", "code": "my-Code_1"}))
        .await;
    assert_problem(same, StatusCode::CONFLICT).await;
    let kept = consumer.follow("my-Code_1").await;
    assert_eq!(kept.headers()["location"], "https://a.example/");
}

#[tokio::test]
async fn codes_that_could_reach_other_upstream_paths_are_refused() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    for code in [
        ".",
        "..",
        "%2e%2e",
        "a/b",
        "a.b",
        "api",
        "Metrics",
        "",
        &"x".repeat(65),
    ] {
        let response = consumer
            .shorten(json!({"url": "https://example.com/", "code": code}))
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test]
async fn targets_that_are_not_plain_http_urls_elsewhere_are_refused() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let long = format!("https://example.com/{}", "a".repeat(2040));
    for url in [
        "ftp://example.com/",
        "javascript:alert(1)",
        "example.com",
        "https://user:pw@example.com/",
        "http://localhost:8080/loop",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://example.com/a b",
        " https://example.com/",
        "https://1.2.3/",
        "https://[::1]/",
        long.as_str(),
    ] {
        let response = consumer.shorten(json!({ "url": url })).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            problem["detail"].as_str().unwrap().starts_with("the url "),
            "{problem}"
        );
        assert_eq!(problem["pointer"], "/url", "{problem}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_link_requests_get_400_415_or_422() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let post = |content_type: &'static str, body: &'static str| {
        consumer
            .client
            .post(consumer.url("/api/links"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        post("application/json", "{").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        post("text/plain", "{}").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_problem(
        post("application/json", "{}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(
        post("application/json", r#"{"url":"https://e.com","extra":1}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(
        post("application/json", r#"["https://e.com", null]"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let big = "x".repeat(consumer::BODY_LIMIT);
    let too_large = consumer
        .client
        .post(consumer.url("/api/links"))
        .json(&json!({ "url": big }))
        .send()
        .await
        .unwrap();
    assert_problem(too_large, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn the_longest_valid_request_is_accepted_however_its_json_is_escaped() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let prefix = "https://example.com/";
    let url = format!(
        "{prefix}{}",
        "😀".repeat(consumer::links::MAX_URL_LEN - prefix.len())
    );
    let code = "c".repeat(64);
    // Every character of the path as a surrogate pair escape, every one of the code as \u00XX.
    let escaped_path: String = url[prefix.len()..]
        .encode_utf16()
        .map(|unit| format!("\\u{unit:04x}"))
        .collect();
    let escaped_code: String = code
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let body = format!(r#"{{"url": "{prefix}{escaped_path}", "code": "{escaped_code}"}}"#);
    assert!(body.len() > 24 * 1024, "the body is {} bytes", body.len());
    let response = consumer
        .client
        .post(consumer.url("/api/links"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let link: Value = response.json().await.unwrap();
    assert_eq!(link["code"], code.as_str());
}

#[tokio::test]
async fn unknown_and_impossible_codes_are_404_problems() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    for path in ["/nope", "/a.b", "/api", "/api/links/nope", "/api/links/a.b"] {
        let response = consumer
            .client
            .get(consumer.url(path))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn clicks_pending_at_shutdown_reach_the_upstream() {
    let upstream = inprocess::upstream().await;
    let mut consumer = inprocess::consumer_with(&upstream.attach_url(), |s| {
        s.click_flush_interval = Duration::from_secs(3600);
    })
    .await;
    let code = consumer.shorten_ok("https://example.com/").await;
    for _ in 0..5 {
        assert_eq!(consumer.follow(&code).await.status(), StatusCode::FOUND);
    }
    assert_eq!(
        upstream.counter(&format!("clicks/{code}")).await,
        0,
        "flushed before shutdown"
    );
    consumer.stop().await;
    assert_eq!(upstream.counter(&format!("clicks/{code}")).await, 5);
}

#[tokio::test]
async fn status_names_the_attached_instance_without_its_secret() {
    let upstream = spawn_upstream_with_token("s3cret").await;
    let url = upstream
        .attach_url()
        .replace("http://", "http://portbound:s3cret@");
    let consumer = inprocess::consumer(&url).await;
    let status = consumer.get_json("/api/status").await;
    let reported = &status["upstream"];
    assert_eq!(reported["instance"], "upstream-t");
    assert_eq!(reported["reachable"], true);
    assert_eq!(reported["circuit"], "closed");
    assert!(reported["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        reported["url"],
        format!("http://portbound:***@127.0.0.1:{}/", upstream.port)
    );
    // The credentials work: links can be made.
    consumer.shorten_ok("https://example.com/").await;
}

async fn spawn_upstream_with_token(token: &str) -> inprocess::Upstream {
    inprocess::upstream_with(|s| {
        s.access_token = upstream::settings::AccessToken::parse(token);
        s.instance_name = "upstream-t".to_owned();
    })
    .await
}

#[tokio::test]
async fn wrong_credentials_are_a_502_that_does_not_leak_them() {
    let upstream = spawn_upstream_with_token("s3cret").await;
    let url = upstream
        .attach_url()
        .replace("http://", "http://portbound:wr0ng@");
    let consumer = inprocess::consumer(&url).await;
    let response = consumer
        .shorten(json!({"url": "https://example.com/"}))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_GATEWAY).await;
    assert!(problem["detail"].as_str().unwrap().contains("credentials"));
    assert!(!problem.to_string().contains("wr0ng"));
}

#[tokio::test]
async fn the_request_id_is_forwarded_upstream() {
    // A stand-in upstream that records the request it gets and answers 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = vec![0; 4096];
        let n = socket.read(&mut head).await.unwrap();
        let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&head[..n]).to_lowercase()
    });
    let consumer = inprocess::consumer(&format!("http://127.0.0.1:{port}/")).await;
    let response = consumer
        .client
        .get(consumer.url("/abc"))
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let request = seen.await.unwrap();
    assert!(request.starts_with("get /v1/kv/links%2fabc "), "{request}");
    assert!(request.contains("x-request-id: trace-42"), "{request}");
}

#[tokio::test]
async fn targets_of_every_shape_the_document_admits_are_accepted() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    for url in [
        "HTTPS://Example.COM",
        "http://a_b-c.example:8443?q=<script>",
        "http://10.0.0.255:0#top",
        "https://xn--mnchen-3ya.de/Straße",
        "http://localhost:8081/",
    ] {
        let response = consumer.shorten(json!({ "url": url })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{url}");
    }
}

#[tokio::test]
async fn methods_a_path_does_not_serve_are_405_with_allow() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    for (method, path, allow) in [
        ("TRACE", "/readyz", "GET"),
        ("DELETE", "/api/status", "GET"),
        ("GET", "/api/links", "POST"),
        ("PUT", "/api/links/abc", "GET"),
        ("POST", "/abc", "GET"),
    ] {
        assert_not_allowed(&consumer.client, method, &consumer.url(path), allow).await;
    }
    let unknown = consumer
        .client
        .get(consumer.url("/a/b/c"))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_openapi_document_and_metrics_are_served() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let doc = consumer.get_json("/openapi.json").await;
    for path in ["/api/links", "/{code}", "/api/links/{code}", "/api/status"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let url = &doc["components"]["schemas"]["NewLink"]["properties"]["url"];
    assert_eq!(url["pattern"], consumer::links::TARGET_PATTERN.source());
    assert_eq!(url["maxLength"], consumer::links::MAX_URL_LEN);
    let code = consumer.shorten_ok("https://example.com/").await;
    consumer.follow(&code).await;
    let metrics = get_text(&consumer.client, consumer.url("/metrics")).await;
    assert!(
        metrics.contains(
            r#"consumer_http_requests_total{endpoint="/{code}",method="GET",status="302"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("consumer_clicks_dropped_total 0"),
        "{metrics}"
    );
    assert!(metrics.contains("consumer_backend_circuit 0"), "{metrics}");
}

#[tokio::test]
async fn a_flush_sends_the_codes_clicked_in_batches_of_a_thousand_each_counted_once() {
    let upstream = inprocess::upstream().await;
    let settings = consumer::Settings::local(0, &upstream.attach_url()).unwrap();
    let registry = prometheus::Registry::new();
    let attached =
        std::sync::Arc::new(consumer::backend::Backend::new(&settings.backend, &registry).unwrap());
    let clicks = consumer::clicks::Clicks::new(attached, 10_000, &registry).unwrap();
    // The longest codes, so that a full batch's reply is as long as it gets.
    let code = |i: usize| format!("c{i:0>63}");
    let codes: Vec<consumer::links::Code> = (0..2500)
        .map(|i| consumer::links::Code::parse(&code(i)).unwrap())
        .collect();
    for code in &codes {
        clicks.record(code);
    }
    clicks.record(&codes[7]);

    let flushed = clicks.flush().await;
    assert_eq!(flushed.sent, 2501, "{flushed:?}");
    let calls = registry
        .gather()
        .into_iter()
        .find(|family| family.name() == "consumer_backend_calls_total")
        .unwrap();
    let answered: f64 = calls
        .get_metric()
        .iter()
        .filter(|metric| metric.get_label().iter().any(|l| l.value() == "answered"))
        .map(|metric| metric.get_counter().get_value())
        .sum();
    assert_eq!(answered, 3.0, "2500 codes go in three batches");
    for (i, expected) in [(0, 1), (7, 2), (1999, 1), (2499, 1)] {
        assert_eq!(
            upstream.counter(&format!("clicks/{}", code(i))).await,
            expected
        );
    }
    assert_eq!(clicks.flush().await, consumer::clicks::Flushed::default());
}
