//! The consumer on a backend that honours only the core of the contract: no click batches
//! (`POST /v1/counters`), no batch reads. Its clicks must still arrive, each counted once.

use std::sync::Arc;

use consumer::backend::Backend;
use consumer::clicks::Clicks;
use consumer::links::Code;
use testkit::core_only::{Lists, core_only};
use testkit::inprocess;

/// How many of the requests `seen` are `request`, or begin with it where it ends in `*`.
fn count(seen: &[String], request: &str) -> usize {
    seen.iter()
        .filter(|line| match request.strip_suffix('*') {
            Some(start) => line.starts_with(start),
            None => *line == request,
        })
        .count()
}

const ONE_COUNTER: &str = "POST /v1/counters/clicks%2F*";
const COUNTER_BATCH: &str = "POST /v1/counters";
const BATCH_READ: &str = "POST /v1/kv:batchGet";

#[tokio::test]
async fn without_click_batches_each_code_is_sent_on_its_own_and_counted_once() {
    let upstream = inprocess::upstream().await;
    let front = core_only(&upstream.url, Lists::Nothing).await;
    let settings = consumer::Settings::local(0, &front.url).unwrap();
    let registry = prometheus::Registry::new();
    let backend = Arc::new(Backend::new(&settings.backend, &registry).unwrap());
    let clicks = Clicks::new(backend.clone(), 10_000, &registry).unwrap();
    let codes: Vec<Code> = ["a", "b", "c"]
        .iter()
        .map(|code| Code::parse(code).unwrap())
        .collect();
    for code in &codes {
        clicks.record(code);
    }
    clicks.record(&codes[1]);

    let flushed = clicks.flush().await;
    assert_eq!(flushed.sent, 4, "{flushed:?}");
    assert_eq!(flushed.dropped, 0, "{flushed:?}");
    for (code, expected) in [("a", 1), ("b", 2), ("c", 1)] {
        assert_eq!(upstream.counter(&format!("clicks/{code}")).await, expected);
    }
    let seen = front.seen();
    assert_eq!(count(&seen, COUNTER_BATCH), 0, "{seen:?}");
    assert_eq!(count(&seen, ONE_COUNTER), 3, "{seen:?}");

    // The same batch sent again under its key (its answer lost, say) counts nothing more.
    let batch = vec![("a".to_owned(), 5), ("c".to_owned(), 1)];
    backend.add_clicks(&batch, "batch-1").await.unwrap();
    backend.add_clicks(&batch, "batch-1").await.unwrap();
    assert_eq!(upstream.counter("clicks/a").await, 6);
    assert_eq!(upstream.counter("clicks/c").await, 2);
}

#[tokio::test]
async fn click_batches_listed_but_not_served_fall_back_at_once_and_are_not_tried_again() {
    let upstream = inprocess::upstream().await;
    let front = core_only(&upstream.url, Lists::WhatItDoesNotServe).await;
    let settings = consumer::Settings::local(0, &front.url).unwrap();
    let backend = Backend::new(&settings.backend, &prometheus::Registry::new()).unwrap();

    let batch = vec![("x".to_owned(), 2), ("y".to_owned(), 3)];
    backend.add_clicks(&batch, "first").await.unwrap();
    assert_eq!(upstream.counter("clicks/x").await, 2);
    assert_eq!(upstream.counter("clicks/y").await, 3);
    let seen = front.seen();
    assert_eq!(count(&seen, COUNTER_BATCH), 1, "{seen:?}");
    assert_eq!(count(&seen, ONE_COUNTER), 2, "{seen:?}");

    backend.add_clicks(&batch, "second").await.unwrap();
    assert_eq!(upstream.counter("clicks/x").await, 4);
    let seen = front.seen();
    assert_eq!(
        count(&seen, COUNTER_BATCH),
        1,
        "tried once, not again: {seen:?}"
    );
    assert_eq!(count(&seen, ONE_COUNTER), 4, "{seen:?}");
}

/// Looks up `n` codes at once through `backend`: code `k{i}` is stored for even `i` only.
async fn look_up_many(upstream: &inprocess::Upstream, backend: &Backend, n: usize) {
    for i in (0..n).step_by(2) {
        let link = serde_json::json!({
            "url": format!("https://example.com/{i}"), "created_at": "2026-12-02T00:00:00Z"
        });
        upstream.put_json(&format!("links/k{i}"), &link).await;
    }
    let codes: Vec<Code> = (0..n)
        .map(|i| Code::parse(&format!("k{i}")).unwrap())
        .collect();
    let found = futures_util::future::join_all(codes.iter().map(|code| backend.link(code))).await;
    for (i, lookup) in found.into_iter().enumerate() {
        let expected = (i % 2 == 0).then(|| format!("https://example.com/{i}"));
        assert_eq!(lookup.unwrap().map(|link| link.url), expected, "k{i}");
    }
}

#[tokio::test]
async fn without_batch_reads_coalesced_lookups_are_read_one_by_one() {
    let upstream = inprocess::upstream().await;
    let front = core_only(&upstream.url, Lists::Nothing).await;
    let settings = consumer::Settings::local(0, &front.url).unwrap();
    let backend = Backend::new(&settings.backend, &prometheus::Registry::new()).unwrap();

    look_up_many(&upstream, &backend, 50).await;
    let seen = front.seen();
    assert_eq!(count(&seen, BATCH_READ), 0, "{seen:?}");
    assert_eq!(count(&seen, "GET /v1/kv/links%2F*"), 50, "{seen:?}");
}

#[tokio::test]
async fn batch_reads_listed_but_not_served_fall_back_at_once() {
    let upstream = inprocess::upstream().await;
    let front = core_only(&upstream.url, Lists::WhatItDoesNotServe).await;
    let settings = consumer::Settings::local(0, &front.url).unwrap();
    let backend = Backend::new(&settings.backend, &prometheus::Registry::new()).unwrap();

    look_up_many(&upstream, &backend, 50).await;
    look_up_many(&upstream, &backend, 50).await;
    let seen = front.seen();
    assert_eq!(
        count(&seen, BATCH_READ),
        1,
        "tried once, not again: {seen:?}"
    );
}

#[tokio::test]
async fn with_batch_reads_lookups_that_wait_go_in_one_call() {
    let upstream = inprocess::upstream().await;
    let settings = consumer::Settings::local(0, &upstream.attach_url()).unwrap();
    let registry = prometheus::Registry::new();
    let backend = Backend::new(&settings.backend, &registry).unwrap();

    look_up_many(&upstream, &backend, 50).await;
    let calls = registry
        .gather()
        .into_iter()
        .find(|family| family.name() == "consumer_backend_lookups_per_call")
        .unwrap();
    let histogram = calls.get_metric()[0].get_histogram();
    // The first lookups each start a call at once; the rest wait, and go together.
    assert!(histogram.get_sample_count() < 50, "{histogram:?}");
    assert_eq!(histogram.get_sample_sum(), 50.0, "{histogram:?}");
}
