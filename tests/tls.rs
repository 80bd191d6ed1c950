//! TLS end to end, with the real binaries and certificates the tests make ([`testkit::tls`]):
//! the upstream serving HTTPS (its certificate rotated under load, mutual TLS, its
//! healthcheck), the consumer verifying every kind of attachment (`https://`, `rediss://`,
//! `postgres://…?sslmode=verify-full`) against a private CA, and each way a certificate can fail
//! to verify. Redis and PostgreSQL cases say SKIPPED where their servers are not installed.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Client, StatusCode, redirect};
use serde_json::{Value, json};

use testkit::postgres::PostgresServer;
use testkit::process::{
    Service, TOKEN, binary, run_to_exit, skipped_on_external_stack, spawn_consumer, spawn_upstream,
};
use testkit::redis::RedisServer;
use testkit::tls::{Certs, Pair};
use testkit::{assert_problem, eventually, get_json, get_text, metric};

/// What a consumer answers when its backend's certificate did not verify.
const UNTRUSTED: &str = "the backend's TLS certificate did not verify";

fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client of an HTTPS upstream that trusts `certs`' CA, presenting `identity` if any.
fn client_trusting(certs: &Certs, identity: Option<&Pair>) -> Client {
    let ca = std::fs::read(certs.ca_file()).unwrap();
    let mut builder = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .tls_info(true)
        // A connection per request: each one a handshake, with the certificate served now.
        .pool_max_idle_per_host(0);
    if let Some(pair) = identity {
        let mut pem = std::fs::read(&pair.cert).unwrap();
        pem.extend(std::fs::read(&pair.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// An upstream serving HTTPS with `pair`, requiring the token, plus `extra`.
async fn tls_upstream(dir: &std::path::Path, pair: &Pair, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("TLS_CERT_FILE", pair.cert.as_str()),
        ("TLS_KEY_FILE", pair.key.as_str()),
    ];
    env.extend_from_slice(extra);
    let upstream = spawn_upstream(dir, "upstream-tls", &env).await;
    assert!(upstream.url.starts_with("https://"), "{}", upstream.url);
    upstream
}

/// `UPSTREAM_URL` for the HTTPS upstream on `port`, by the name its certificate gives.
fn attach_https(port: u16) -> String {
    format!("https://portbound:{TOKEN}@localhost:{port}/")
}

/// Makes a link through `consumer` and follows it; the answer to the make, if not 201.
async fn shorten_and_follow(consumer: &Service, url: &str) {
    let client = client();
    let made = client
        .post(format!("{}/api/links", consumer.url))
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED, "{:?}", consumer.logs());
    let code = made.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let followed = client
        .get(format!("{}/{code}", consumer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), StatusCode::FOUND);
    assert_eq!(followed.headers()["location"], url);
}

/// Asks `consumer` to make `tries` links through a backend whose certificate does not verify:
/// each is a 502 at once, none is retried or opens the circuit (`CIRCUIT_FAILURES=2`), and the
/// reason is logged once, in `words`, without the secret.
async fn assert_untrusted(consumer: &Service, words: &str, tries: u64) {
    let client = client();
    for _ in 0..tries {
        let answer = client
            .post(format!("{}/api/links", consumer.url))
            .json(&json!({ "url": "https://example.com/untrusted" }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(answer, StatusCode::BAD_GATEWAY).await;
        assert_eq!(problem["detail"], UNTRUSTED);
    }
    let metrics = get_text(&client, format!("{}/metrics", consumer.url)).await;
    let calls = |outcome: &str| {
        metric(
            &metrics,
            &format!(r#"consumer_backend_calls_total{{outcome="{outcome}"}}"#),
        )
    };
    // Each make is one call, and the consumer may have asked who answers (`info`) as well.
    let untrusted = calls("untrusted").unwrap_or_default();
    assert!(untrusted >= tries as f64, "{metrics}");
    assert_eq!(calls("unreachable"), None, "{metrics}");
    let status = get_json(&client, format!("{}/api/status", consumer.url)).await;
    assert_eq!(status["upstream"]["circuit"], "closed", "{status}");
    let logs = consumer.logs();
    let said: Vec<&String> = logs.iter().filter(|line| line.contains(words)).collect();
    assert_eq!(said.len(), 1, "logged once: {logs:#?}");
    assert!(
        said[0].contains("the certificate for localhost"),
        "{}",
        said[0]
    );
    assert!(
        !logs.iter().any(|line| line.contains("retrying")),
        "{logs:#?}"
    );
    assert!(!logs.iter().any(|line| line.contains(TOKEN)), "{logs:#?}");
}

#[tokio::test]
async fn the_consumer_reaches_an_upstream_signed_by_a_private_ca_over_https() {
    if skipped_on_external_stack(
        "the_consumer_reaches_an_upstream_signed_by_a_private_ca_over_https",
    ) {
        return;
    }
    let certs = Certs::new("test CA");
    let pair = certs.server("upstream");
    let dir = tempfile::tempdir().unwrap();
    let upstream = tls_upstream(dir.path(), &pair, &[]).await;
    let ca = certs.ca_file();
    let consumer = spawn_consumer(&attach_https(upstream.port), &[("UPSTREAM_CA_FILE", &ca)]).await;
    shorten_and_follow(&consumer, "https://example.com/over-tls").await;
    let status = get_json(&client(), format!("{}/api/status", consumer.url)).await;
    assert_eq!(status["upstream"]["reachable"], true, "{status}");

    // The healthcheck speaks TLS to its own port, and plain HTTP does not pass for it.
    let port = upstream.port.to_string();
    let tls = [
        ("PORT", port.as_str()),
        ("TLS_CERT_FILE", pair.cert.as_str()),
        ("TLS_KEY_FILE", pair.key.as_str()),
    ];
    let (checked, output) = run_to_exit(&binary("upstream"), &["healthcheck"], &tls).await;
    assert!(checked.success(), "{output}");
    let (plain, output) =
        run_to_exit(&binary("upstream"), &["healthcheck"], &[("PORT", &port)]).await;
    assert_eq!(plain.code(), Some(1), "{output}");
}

#[tokio::test]
async fn with_a_client_ca_the_upstream_requires_a_client_certificate() {
    if skipped_on_external_stack("with_a_client_ca_the_upstream_requires_a_client_certificate") {
        return;
    }
    let certs = Certs::new("test CA");
    let pair = certs.server("upstream");
    let ca = certs.ca_file();
    let dir = tempfile::tempdir().unwrap();
    let upstream = tls_upstream(dir.path(), &pair, &[("TLS_CLIENT_CA_FILE", &ca)]).await;
    let url = format!("https://localhost:{}", upstream.port);

    // The document says both are required; without the certificate, the token is not enough.
    let anonymous = client_trusting(&certs, None);
    let document = get_json(&anonymous, format!("{url}/openapi.json")).await;
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS", "{schemes}");
    let security = &document["paths"]["/v1/info"]["get"]["security"];
    assert_eq!(
        security,
        &json!([{"bearer": [], "mutualTLS": []}, {"basic": [], "mutualTLS": []}])
    );
    let refused = anonymous
        .get(format!("{url}/v1/info"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(refused, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("client certificate")
    );
    // Probes need none.
    let ready = anonymous.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // A certificate from another CA ends the handshake.
    let strangers = Certs::new("another CA");
    let stranger = strangers.client("stranger");
    let refused = client_trusting(&certs, Some(&stranger))
        .get(format!("{url}/readyz"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let own = certs.client("consumer");
    let consumer = spawn_consumer(
        &attach_https(upstream.port),
        &[
            ("UPSTREAM_CA_FILE", &ca),
            ("UPSTREAM_CLIENT_CERT_FILE", &own.cert),
            ("UPSTREAM_CLIENT_KEY_FILE", &own.key),
        ],
    )
    .await;
    shorten_and_follow(&consumer, "https://example.com/mutual").await;

    let without = spawn_consumer(&attach_https(upstream.port), &[("UPSTREAM_CA_FILE", &ca)]).await;
    let answer = client()
        .post(format!("{}/api/links", without.url))
        .json(&json!({ "url": "https://example.com/no-certificate" }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(answer, StatusCode::BAD_GATEWAY).await;
    assert_eq!(
        problem["detail"],
        "the backend refused this service's credentials"
    );
}

#[tokio::test]
async fn each_certificate_that_does_not_verify_is_a_502_at_once_logged_once_in_words() {
    if skipped_on_external_stack(
        "each_certificate_that_does_not_verify_is_a_502_at_once_logged_once_in_words",
    ) {
        return;
    }
    let certs = Certs::new("test CA");
    let ca = certs.ca_file();
    let stranger = Certs::new("another CA");
    let cases = [
        (
            stranger.server("unknown-issuer"),
            "is signed by an unknown authority",
        ),
        (
            certs.server_named("wrong-name", "elsewhere.example"),
            "is not valid for the name localhost",
        ),
        (certs.server_expired("expired"), "has expired"),
        (
            certs.server_not_yet_valid("not-yet-valid"),
            "is not valid yet",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (pair, words) in cases {
        let upstream = tls_upstream(dir.path(), &pair, &[]).await;
        let consumer = spawn_consumer(
            &attach_https(upstream.port),
            &[("UPSTREAM_CA_FILE", &ca), ("CIRCUIT_FAILURES", "2")],
        )
        .await;
        assert_untrusted(&consumer, words, 4).await;
    }
}

#[tokio::test]
async fn a_certificate_rotated_in_place_under_load_fails_no_request() {
    if skipped_on_external_stack("a_certificate_rotated_in_place_under_load_fails_no_request") {
        return;
    }
    let certs = Certs::new("test CA");
    let pair = certs.server("upstream");
    let ca = certs.ca_file();
    let dir = tempfile::tempdir().unwrap();
    let upstream = tls_upstream(dir.path(), &pair, &[]).await;
    let consumer = spawn_consumer(&attach_https(upstream.port), &[("UPSTREAM_CA_FILE", &ca)]).await;
    let client = client();
    let made = client
        .post(format!("{}/api/links", consumer.url))
        .json(&json!({ "url": "https://example.com/rotated" }))
        .send()
        .await
        .unwrap();
    let code = made.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();

    // Redirects through the consumer, and new connections straight to the upstream (a
    // handshake each), until the rotations are done.
    let done = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (done, served, failed) = (done.clone(), served.clone(), failed.clone());
        let redirect = format!("{}/{code}", consumer.url);
        let direct = format!("https://localhost:{}/v1/info", upstream.port);
        let ca = ca.clone();
        load.push(tokio::spawn(async move {
            let client = self::client();
            let pem = std::fs::read(&ca).unwrap();
            while !done.load(Ordering::Relaxed) {
                let ok = if worker % 2 == 0 {
                    client
                        .get(&redirect)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::FOUND)
                } else {
                    let fresh = Client::builder()
                        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                        .tls_built_in_root_certs(false)
                        .build()
                        .unwrap();
                    fresh
                        .get(&direct)
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::OK)
                };
                let counter = if ok { &served } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for round in 0..3 {
        let next = certs.server("upstream");
        assert_eq!(
            next.cert, pair.cert,
            "written in place, over the files in use"
        );
        let expected = shared::tls::read_certificates("TLS_CERT_FILE", &next.cert)
            .unwrap()
            .swap_remove(0);
        eventually(
            Duration::from_secs(10),
            &format!("rotation {round}: new connections get the new certificate"),
            || async {
                // A new client each time: one that resumed its earlier session would be shown
                // the certificate that session began with.
                let response = client_trusting(&certs, None)
                    .get(format!("https://localhost:{}/readyz", upstream.port))
                    .send()
                    .await
                    .unwrap();
                let served = response
                    .extensions()
                    .get::<reqwest::tls::TlsInfo>()
                    .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec));
                served.is_some_and(|served| served == expected.as_ref())
            },
        )
        .await;
    }
    done.store(true, Ordering::Relaxed);
    for worker in load {
        worker.await.unwrap();
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "{failed} of {} requests failed", served + failed);
    assert!(served > 100, "only {served} requests were made");
    assert!(
        upstream
            .logs()
            .iter()
            .any(|line| line.contains("loaded the new certificate")),
        "{:#?}",
        upstream.logs()
    );
}

#[tokio::test]
async fn rediss_is_verified_against_the_private_ca() {
    let test = "rediss_is_verified_against_the_private_ca";
    if skipped_on_external_stack(test) {
        return;
    }
    let certs = Certs::new("test CA");
    let Some(redis) = RedisServer::start_tls(test, Some(TOKEN), certs.server("redis")).await else {
        return;
    };
    let ca = certs.ca_file();
    let consumer = spawn_consumer(&redis.attach_url_tls(), &[("UPSTREAM_CA_FILE", &ca)]).await;
    shorten_and_follow(&consumer, "https://example.com/over-rediss").await;

    let strangers = Certs::new("another CA");
    let stranger = strangers.ca_file();
    let untrusting = spawn_consumer(
        &redis.attach_url_tls(),
        &[("UPSTREAM_CA_FILE", &stranger), ("CIRCUIT_FAILURES", "2")],
    )
    .await;
    assert_untrusted(&untrusting, "is signed by an unknown authority", 3).await;
}

#[tokio::test]
async fn postgres_with_verify_full_is_verified_against_the_private_ca() {
    let test = "postgres_with_verify_full_is_verified_against_the_private_ca";
    if skipped_on_external_stack(test) {
        return;
    }
    let Some(postgres) = PostgresServer::start(test, TOKEN).await else {
        return;
    };
    let certs = Certs::new("test CA");
    postgres.serve_tls(&certs.server("postgres")).await;
    let ca = certs.ca_file();
    let url = postgres.attach_url_tls("verify-full");
    let consumer = spawn_consumer(&url, &[("UPSTREAM_CA_FILE", &ca)]).await;
    shorten_and_follow(&consumer, "https://example.com/over-verified-postgres").await;
    let client = postgres.client().await;
    let encrypted: bool = client
        .query_one(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'portbound-consumer'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the consumer's connections are encrypted");

    let strangers = Certs::new("another CA");
    let stranger = strangers.ca_file();
    let untrusting = spawn_consumer(
        &url,
        &[("UPSTREAM_CA_FILE", &stranger), ("CIRCUIT_FAILURES", "2")],
    )
    .await;
    assert_untrusted(&untrusting, "is signed by an unknown authority", 3).await;
}

#[tokio::test]
async fn a_bad_certificate_or_key_file_stops_the_upstream_naming_the_variable() {
    let certs = Certs::new("test CA");
    let pair = certs.server("upstream");
    let other = certs.server("other");
    let not_pem = certs.dir().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let upstream = binary("upstream");
    for (env, variable) in [
        (
            vec![
                ("TLS_CERT_FILE", "/nonexistent.pem"),
                ("TLS_KEY_FILE", pair.key.as_str()),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", not_pem),
                ("TLS_KEY_FILE", pair.key.as_str()),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", pair.cert.as_str()),
                ("TLS_KEY_FILE", not_pem),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", pair.cert.as_str()),
                ("TLS_KEY_FILE", other.key.as_str()),
            ],
            "TLS_KEY_FILE",
        ),
        (vec![("TLS_CERT_FILE", pair.cert.as_str())], "TLS_CERT_FILE"),
        (
            vec![
                ("TLS_CERT_FILE", pair.cert.as_str()),
                ("TLS_KEY_FILE", pair.key.as_str()),
                ("TLS_CLIENT_CA_FILE", not_pem),
            ],
            "TLS_CLIENT_CA_FILE",
        ),
    ] {
        let mut env = env.clone();
        env.extend([("PORT", "0"), ("DATABASE_PATH", ":memory:")]);
        let (status, output) = run_to_exit(&upstream, &[], &env).await;
        assert_eq!(status.code(), Some(2), "{env:?}: {output}");
        let lines: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("invalid configuration"))
            .collect();
        assert_eq!(lines.len(), 1, "{output}");
        assert!(
            lines[0].contains(&format!("{variable}=")),
            "{variable}: {}",
            lines[0]
        );
    }
    let consumer = binary("consumer");
    for (env, variable) in [
        (vec![("UPSTREAM_CA_FILE", not_pem)], "UPSTREAM_CA_FILE"),
        (
            vec![("UPSTREAM_CLIENT_CERT_FILE", pair.cert.as_str())],
            "UPSTREAM_CLIENT_CERT_FILE",
        ),
        (
            vec![
                ("UPSTREAM_CLIENT_CERT_FILE", pair.cert.as_str()),
                ("UPSTREAM_CLIENT_KEY_FILE", other.key.as_str()),
            ],
            "UPSTREAM_CLIENT_KEY_FILE",
        ),
    ] {
        let (status, output) = run_to_exit(&consumer, &[], &env).await;
        assert_eq!(status.code(), Some(2), "{env:?}: {output}");
        assert!(
            output.contains(&format!("{variable}=")),
            "{variable}: {output}"
        );
    }
}
