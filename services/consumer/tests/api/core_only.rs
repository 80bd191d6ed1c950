//! The consumer on a backend that honours only the core of the contract: no click batches
//! (`POST /v1/counters`), no batch reads. Its clicks must still arrive, each counted once.

use std::sync::Arc;

use consumer::backend::Backend;
use consumer::clicks::Clicks;
use consumer::links::Code;
use testkit::core_only::{Lists, core_only};
use testkit::inprocess;

/// The calls `seen` made to one counter each.
fn one_counter_calls(seen: &[String]) -> usize {
    seen.iter()
        .filter(|line| line.starts_with("POST /v1/counters/clicks%2F"))
        .count()
}

fn batch_calls(seen: &[String]) -> usize {
    seen.iter()
        .filter(|line| *line == "POST /v1/counters")
        .count()
}

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
    assert_eq!(batch_calls(&seen), 0, "{seen:?}");
    assert_eq!(one_counter_calls(&seen), 3, "{seen:?}");

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
    assert_eq!(batch_calls(&seen), 1, "{seen:?}");
    assert_eq!(one_counter_calls(&seen), 2, "{seen:?}");

    backend.add_clicks(&batch, "second").await.unwrap();
    assert_eq!(upstream.counter("clicks/x").await, 4);
    let seen = front.seen();
    assert_eq!(batch_calls(&seen), 1, "tried once, not again: {seen:?}");
    assert_eq!(one_counter_calls(&seen), 4, "{seen:?}");
}
