//! A hostile upstream: whatever it answers, the consumer reads no more than it can use, answers
//! its own 502 or 504 problem within the deadline, and passes nothing of the upstream's on.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::misbehaving::{HOSTILE_MARKER, Hostile, Hostility, hostile};
use testkit::{assert_problem, inprocess};

/// A consumer attached to a `hostility` upstream with a one-second deadline.
async fn attached_to(hostility: Hostility) -> (inprocess::Consumer, Hostile) {
    let upstream = hostile(hostility).await;
    let consumer = inprocess::consumer_with(&format!("http://127.0.0.1:{}/", upstream.port), |s| {
        s.backend.timeout = Duration::from_secs(1);
        s.backend.connect_timeout = Duration::from_millis(500);
    })
    .await;
    (consumer, upstream)
}

/// Follows a code and checks the answer is `status`, as a problem of the consumer's own, in
/// well under five times the deadline; returns the problem's detail.
async fn follow_expecting(consumer: &inprocess::Consumer, status: StatusCode) -> String {
    let started = Instant::now();
    let response = consumer.follow("abc").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(response.headers().get("location").is_none());
    let problem = assert_problem(response, status).await;
    assert!(!problem.to_string().contains(HOSTILE_MARKER), "{problem}");
    problem["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reply_announcing_more_than_the_bound_is_refused_before_its_body() {
    let (consumer, upstream) = attached_to(Hostility::Announced).await;
    let detail = follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
    // The refused connection is not pooled: the next call opens another.
    follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
    assert_eq!(upstream.connections(), 2);
    assert_eq!(
        detail,
        format!(
            "the backend answered more than {} bytes",
            consumer::backend::MAX_REPLY_BYTES
        )
    );
    assert_eq!(consumer.backend_calls("oversized").await, 2);
}

#[tokio::test]
async fn an_endless_body_is_cut_off_at_the_bound() {
    let (consumer, upstream) = attached_to(Hostility::Endless).await;
    let detail = follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
    assert!(detail.contains("more than"), "{detail}");
    follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
    assert_eq!(
        upstream.connections(),
        2,
        "a cut-off connection is not reused"
    );
    assert_eq!(consumer.backend_calls("oversized").await, 2);
}

#[tokio::test]
async fn a_trickling_body_ends_at_the_deadline() {
    let (consumer, _upstream) = attached_to(Hostility::Trickle).await;
    follow_expecting(&consumer, StatusCode::GATEWAY_TIMEOUT).await;
}

#[tokio::test]
async fn html_a_redirect_or_a_body_that_is_not_json_is_a_502() {
    for hostility in [Hostility::Html, Hostility::Redirect, Hostility::NotJson] {
        let (consumer, _upstream) = attached_to(hostility).await;
        let detail = follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
        assert_eq!(
            detail, "the backend answered something unexpected",
            "{hostility:?}"
        );
    }
}

#[tokio::test]
async fn headers_that_never_end_are_a_502() {
    let (consumer, _upstream) = attached_to(Hostility::EndlessHeaders).await;
    follow_expecting(&consumer, StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn an_answer_nobody_asked_for_is_never_taken_for_the_next_one() {
    let (consumer, _upstream) = attached_to(Hostility::ExtraAnswer).await;
    for _ in 0..3 {
        let response = consumer.follow("abc").await;
        assert!(response.headers().get("location").is_none());
        let status = response.status();
        let problem = assert_problem(response, status).await;
        assert!(
            [StatusCode::NOT_FOUND, StatusCode::BAD_GATEWAY].contains(&status),
            "{status}: {problem}"
        );
        assert!(!problem.to_string().contains(HOSTILE_MARKER), "{problem}");
    }
}

#[tokio::test]
async fn a_busy_upstream_is_a_503_with_its_retry_after_bounded_and_leaves_the_circuit_closed() {
    for (asked, passed_on) in [(7, "7"), (3600, "60")] {
        let (consumer, _upstream) = attached_to(Hostility::Busy(asked)).await;
        for _ in 0..8 {
            let response = consumer
                .shorten(serde_json::json!({"url": "https://example.com/"}))
                .await;
            assert_eq!(response.headers()["retry-after"], passed_on);
            let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
            assert_eq!(problem["detail"], "the backend is busy; try again shortly");
        }
        // Counted as answers of a working backend, which keep the circuit closed.
        assert_eq!(consumer.backend_calls("busy").await, 8);
        let status = consumer.get_json("/api/status").await;
        assert_eq!(status["upstream"]["circuit"], "closed", "{status}");
    }
}

#[tokio::test]
async fn a_full_upstream_is_a_503_to_retry_later_and_leaves_the_circuit_closed() {
    let (consumer, _upstream) = attached_to(Hostility::Full).await;
    for _ in 0..8 {
        let response = consumer
            .shorten(serde_json::json!({"url": "https://example.com/"}))
            .await;
        assert_eq!(response.headers()["retry-after"], "30");
        let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(problem["detail"], "the backend is full; try again later");
    }
    assert_eq!(consumer.backend_calls("full").await, 8);
    let status = consumer.get_json("/api/status").await;
    assert_eq!(status["upstream"]["circuit"], "closed", "{status}");
}
