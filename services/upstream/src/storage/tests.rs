//! The store's behaviour: values, versions, listing, counters, durability settings and the
//! read cache.

use testkit::eventually;

use super::*;
use crate::key::Key;

fn key(text: &str) -> Key {
    Key::parse(text).unwrap()
}

fn memory() -> Store {
    Store::open(":memory:", 1 << 20, DEFAULT_WRITE_QUEUE, &Registry::new()).unwrap()
}

#[tokio::test]
async fn a_value_round_trips_with_a_fresh_version_on_each_write() {
    let store = memory();
    let Put::Created { version: v1 } = store
        .put(key("a"), "1".into(), Precondition::None)
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let Put::Replaced { version: v2 } = store
        .put(key("a"), "2".into(), Precondition::None)
        .await
        .unwrap()
    else {
        panic!("not replaced")
    };
    assert!(v2 > v1);
    let entry = store.get(key("a")).await.unwrap().unwrap();
    assert_eq!(
        entry,
        Entry {
            value: "2".into(),
            version: v2
        }
    );
}

#[tokio::test]
async fn a_recreated_key_never_reuses_a_version() {
    let store = memory();
    store
        .put(key("a"), "1".into(), Precondition::None)
        .await
        .unwrap();
    let old = store.get(key("a")).await.unwrap().unwrap().version;
    store.delete(key("a"), Precondition::None).await.unwrap();
    store
        .put(key("a"), "1".into(), Precondition::None)
        .await
        .unwrap();
    let stale = Precondition::OneOf(vec![old]);
    let outcome = store.put(key("a"), "2".into(), stale).await.unwrap();
    assert_eq!(outcome, Put::PreconditionFailed);
}

#[tokio::test]
async fn listing_pages_through_a_prefix_in_key_order() {
    let store = memory();
    for k in ["l/c", "l/a", "m/x", "l/b", "k/z"] {
        store
            .put(key(k), "0".into(), Precondition::None)
            .await
            .unwrap();
    }
    let first = store.list("l/".into(), None, 2).await.unwrap();
    let names: Vec<_> = first.keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["l/a", "l/b"]);
    assert_eq!(first.next.as_deref(), Some("l/b"));
    let second = store.list("l/".into(), first.next, 2).await.unwrap();
    let names: Vec<_> = second.keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["l/c"]);
    assert_eq!(second.next, None);
    assert_eq!(
        store
            .list(String::new(), None, 10)
            .await
            .unwrap()
            .keys
            .len(),
        5
    );
}

#[tokio::test]
async fn an_idempotency_key_counts_once_and_refuses_another_amount() {
    let store = memory();
    let retry = || store.increment(key("c"), 5, Some("k1".into()));
    assert_eq!(retry().await.unwrap(), Increment::Counted { value: 5 });
    assert_eq!(retry().await.unwrap(), Increment::Replayed { value: 5 });
    assert_eq!(store.counter(key("c")).await.unwrap(), 5);
    let other = store
        .increment(key("c"), 6, Some("k1".into()))
        .await
        .unwrap();
    assert_eq!(other, Increment::KeyReused);
}

#[tokio::test]
async fn counters_refuse_to_overflow() {
    let store = memory();
    store.increment(key("c"), i64::MAX, None).await.unwrap();
    assert_eq!(
        store.increment(key("c"), 1, None).await.unwrap(),
        Increment::Overflow
    );
    assert_eq!(store.counter(key("c")).await.unwrap(), i64::MAX);
}

#[tokio::test]
async fn a_file_database_uses_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/db.sqlite3");
    let store = Store::open(
        path.to_str().unwrap(),
        1 << 20,
        DEFAULT_WRITE_QUEUE,
        &Registry::new(),
    )
    .unwrap();
    store
        .put(key("a"), "true".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(store.get(key("a")).await.unwrap().unwrap().value, "true");
    assert!(store.is_cached("a"), "a written key is cached");
    store.close().await;
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn every_write_is_read_back_at_once_through_the_cache() {
    let store = memory();
    for n in 0..200 {
        let value = format!("{{\"n\":{n}}}");
        let (Put::Created { version } | Put::Replaced { version }) = store
            .put(key("hot"), value.clone(), Precondition::None)
            .await
            .unwrap()
        else {
            panic!("not written")
        };
        let read = store.get(key("hot")).await.unwrap().unwrap();
        assert_eq!((read.value, read.version), (Bytes::from(value), version));
    }
    store.delete(key("hot"), Precondition::None).await.unwrap();
    assert_eq!(store.get(key("hot")).await.unwrap(), None);
}

#[tokio::test]
async fn a_key_written_before_startup_is_loaded_then_kept_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let path = path.to_str().unwrap();
    let first = Store::open(path, 0, DEFAULT_WRITE_QUEUE, &Registry::new()).unwrap();
    first
        .put(key("cold"), "1".into(), Precondition::None)
        .await
        .unwrap();
    first.close().await;

    let store = Store::open(path, 1 << 20, DEFAULT_WRITE_QUEUE, &Registry::new()).unwrap();
    assert!(!store.is_cached("cold"));
    assert_eq!(store.get(key("cold")).await.unwrap().unwrap().value, "1");
    // A cache load is asynchronous.
    eventually(Duration::from_secs(2), "a missed key is loaded", || async {
        store.is_cached("cold")
    })
    .await;

    store
        .put(key("cold"), "2".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(store.get(key("cold")).await.unwrap().unwrap().value, "2");
    store.delete(key("cold"), Precondition::None).await.unwrap();
    assert_eq!(store.get(key("cold")).await.unwrap(), None);
    // An unknown key is remembered as absent, and creating it replaces that.
    assert_eq!(store.get(key("never")).await.unwrap(), None);
    eventually(
        Duration::from_secs(2),
        "an absent key is remembered",
        || async { store.is_cached("never") },
    )
    .await;
    store
        .put(key("never"), "3".into(), Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(store.get(key("never")).await.unwrap().unwrap().value, "3");
    store.close().await;
}

#[tokio::test]
async fn without_a_cache_reads_go_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let store = Store::open(
        path.to_str().unwrap(),
        0,
        DEFAULT_WRITE_QUEUE,
        &Registry::new(),
    )
    .unwrap();
    store
        .put(key("k"), "1".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(store.get(key("k")).await.unwrap().unwrap().value, "1");
    assert!(!store.is_cached("k"));
    store.close().await;
}

#[tokio::test]
async fn a_path_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text");
    std::fs::write(&path, "this is not sqlite, not at all, no header here").unwrap();
    assert!(
        Store::open(
            path.to_str().unwrap(),
            0,
            DEFAULT_WRITE_QUEUE,
            &Registry::new()
        )
        .is_err()
    );
    assert!(
        Store::open(
            dir.path().to_str().unwrap(),
            0,
            DEFAULT_WRITE_QUEUE,
            &Registry::new()
        )
        .is_err()
    );
}

#[tokio::test]
async fn the_key_count_follows_creates_and_deletes_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.sqlite3");
    let path = path.to_str().unwrap();
    let store = Store::open(path, 0, DEFAULT_WRITE_QUEUE, &Registry::new()).unwrap();
    for name in ["a", "b", "c"] {
        store
            .put(key(name), "1".into(), Precondition::None)
            .await
            .unwrap();
    }
    store
        .put(key("a"), "2".into(), Precondition::None)
        .await
        .unwrap();
    store.delete(key("b"), Precondition::None).await.unwrap();
    store.delete(key("b"), Precondition::None).await.unwrap();
    store
        .put(key("c"), "3".into(), Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(store.key_count().await.unwrap(), 2);
    store.close().await;

    let store = Store::open(path, 0, DEFAULT_WRITE_QUEUE, &Registry::new()).unwrap();
    assert_eq!(store.key_count().await.unwrap(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_database_from_before_the_count_is_counted_once_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    let store = Store::open(
        path.to_str().unwrap(),
        0,
        DEFAULT_WRITE_QUEUE,
        &Registry::new(),
    )
    .unwrap();
    for name in ["a", "b"] {
        store
            .put(key(name), "1".into(), Precondition::None)
            .await
            .unwrap();
    }
    store.close().await;
    // As an older upstream left it: the same rows, no count.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE stats").unwrap();
    drop(conn);

    let store = Store::open(
        path.to_str().unwrap(),
        0,
        DEFAULT_WRITE_QUEUE,
        &Registry::new(),
    )
    .unwrap();
    assert_eq!(store.key_count().await.unwrap(), 2);
    store.close().await;
}

#[tokio::test]
async fn expired_keys_of_single_increments_and_of_batches_are_pruned_and_no_others() {
    let store = memory();
    let batch = || vec![(key("c"), 1)];
    store
        .increment(key("c"), 1, Some("old".into()))
        .await
        .unwrap();
    store
        .increment_many(batch(), Some("old-batch".into()))
        .await
        .unwrap();
    store
        .increment_many(batch(), Some("new-batch".into()))
        .await
        .unwrap();
    let expired = schema::unix_now() - IDEMPOTENCY_TTL.as_secs() as i64 - 1;
    let removed = store
        .writer
        .run(move |conn, _| {
            conn.execute(
                "UPDATE idempotency SET created_at = ?1 WHERE key = 'old'",
                [expired],
            )?;
            conn.execute(
                "UPDATE batch_idempotency SET created_at = ?1 WHERE key = 'old-batch'",
                [expired],
            )?;
            Ok(schema::prune_idempotency_keys(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(removed, 2);
    // The kept key still replays; the pruned ones count as new.
    assert_eq!(
        store
            .increment_many(batch(), Some("new-batch".into()))
            .await
            .unwrap(),
        Increments::Replayed { values: vec![3] }
    );
    assert_eq!(
        store
            .increment_many(batch(), Some("old-batch".into()))
            .await
            .unwrap(),
        Increments::Counted { values: vec![4] }
    );
}
