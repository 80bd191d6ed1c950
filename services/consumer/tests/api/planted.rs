//! A huge value planted under a link's key, on Redis and on PostgreSQL: the consumer refuses it
//! as too large without reading it whole, and the links looked up beside it are unharmed. On
//! Redis also a key of another type and an empty value, each refused alone.

use consumer::backend::coalescer::Lookup;
use consumer::backend::{Backend, BackendError};
use consumer::links::{Code, LinkDocument, MAX_DOCUMENT_BYTES};
use redis::AsyncCommands;
use testkit::postgres::PostgresServer;
use testkit::redis::RedisServer;

/// What is planted: 8 MiB, far past any link document.
const PLANTED_BYTES: usize = 8 << 20;

fn backend(url: &str) -> (Backend, prometheus::Registry) {
    let settings = consumer::Settings::local(0, url).unwrap();
    let registry = prometheus::Registry::new();
    (
        Backend::new(&settings.backend, &registry).unwrap(),
        registry,
    )
}

/// How many lookup calls `registry`'s backend made, and how many lookups they answered.
fn calls(registry: &prometheus::Registry) -> (u64, f64) {
    let family = registry
        .gather()
        .into_iter()
        .find(|family| family.name() == "consumer_backend_lookups_per_call")
        .unwrap();
    let histogram = family.get_metric()[0].get_histogram();
    (histogram.get_sample_count(), histogram.get_sample_sum())
}

/// Looks `codes` up in one call: four lookups of other codes go first, each starting a call of
/// its own (as many as may be in flight), so that `codes` wait and go together in the next.
async fn look_up_together<const N: usize>(backend: &Backend, codes: [&str; N]) -> [Lookup; N] {
    let first: Vec<Code> = (0..4)
        .map(|i| Code::parse(&format!("first{i}")).unwrap())
        .collect();
    let codes = codes.map(|code| Code::parse(code).unwrap());
    let (firsts, found) = tokio::join!(
        futures_util::future::join_all(first.iter().map(|code| backend.link(code))),
        futures_util::future::join_all(codes.iter().map(|code| backend.link(code)))
    );
    assert!(firsts.into_iter().all(|lookup| lookup.unwrap().is_none()));
    found.try_into().unwrap()
}

/// Looks `huge` and `fine` up in one call, and checks what each got.
async fn look_up_beside_each_other(backend: &Backend) {
    let [planted, kept] = look_up_together(backend, ["huge", "fine"]).await;
    assert!(
        matches!(planted, Err(BackendError::TooLarge(limit)) if limit == MAX_DOCUMENT_BYTES),
        "{planted:?}"
    );
    assert_eq!(kept.unwrap().unwrap().url, "https://example.com/fine");
}

fn fine() -> LinkDocument {
    LinkDocument {
        url: "https://example.com/fine".to_owned(),
        created_at: "2026-12-02T00:00:00Z".to_owned(),
        creation_id: None,
    }
}

#[tokio::test]
async fn on_redis_a_planted_huge_value_is_refused_without_being_sent_whole() {
    let test = "on_redis_a_planted_huge_value_is_refused_without_being_sent_whole";
    let Some(redis) = RedisServer::start(test, None).await else {
        return;
    };
    let mut connection = redis.connection().await;
    let huge = format!(
        r#"{{"url":"https://example.com/{}"}}"#,
        "a".repeat(PLANTED_BYTES)
    );
    let _: () = connection.set("portbound:links:huge", huge).await.unwrap();
    let fine = serde_json::to_string(&fine()).unwrap();
    let _: () = connection.set("portbound:links:fine", fine).await.unwrap();
    let sent = || {
        let mut connection = connection.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(&mut connection)
                .await
                .unwrap();
            info.lines()
                .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        }
    };
    let before = sent().await;

    let (backend, registry) = backend(&redis.attach_url());
    look_up_beside_each_other(&backend).await;
    assert_eq!(calls(&registry), (5, 6.0), "the two went together");
    let sent = sent().await - before;
    assert!(
        sent < 4 * MAX_DOCUMENT_BYTES,
        "Redis sent {sent} bytes for two lookups"
    );
}

#[tokio::test]
async fn on_postgres_a_planted_huge_value_is_refused_and_its_neighbour_served() {
    let test = "on_postgres_a_planted_huge_value_is_refused_and_its_neighbour_served";
    let Some(postgres) = PostgresServer::start(test, "planted-secret").await else {
        return;
    };
    let (backend, registry) = backend(&postgres.attach_url());
    // The first call creates the tables the values are planted in.
    let none = backend.link(&Code::parse("none").unwrap()).await;
    assert_eq!(none.unwrap(), None);
    let client = postgres.client().await;
    let fine = fine();
    client
        .execute(
            "INSERT INTO portbound_links (code, url, created_at) VALUES ('huge', $1, 'now'), ('fine', $2, $3)",
            &[
                &format!("https://example.com/{}", "a".repeat(PLANTED_BYTES)),
                &fine.url,
                &fine.created_at,
            ],
        )
        .await
        .unwrap();

    look_up_beside_each_other(&backend).await;
    assert_eq!(calls(&registry), (6, 7.0), "the two went together");
}

#[tokio::test]
async fn on_redis_a_key_holding_no_link_document_fails_its_own_lookup_alone() {
    let test = "on_redis_a_key_holding_no_link_document_fails_its_own_lookup_alone";
    let Some(redis) = RedisServer::start(test, None).await else {
        return;
    };
    let mut connection = redis.connection().await;
    let _: () = connection
        .hset("portbound:links:hash", "url", "https://example.com/")
        .await
        .unwrap();
    let _: () = connection.set("portbound:links:empty", "").await.unwrap();
    let fine = serde_json::to_string(&fine()).unwrap();
    let _: () = connection.set("portbound:links:fine", fine).await.unwrap();

    let (backend, registry) = backend(&redis.attach_url());
    let [hash, empty, fine, absent] =
        look_up_together(&backend, ["hash", "empty", "fine", "absent"]).await;
    assert!(matches!(hash, Err(BackendError::Malformed(_))), "{hash:?}");
    assert!(
        matches!(empty, Err(BackendError::Malformed(_))),
        "{empty:?}"
    );
    assert_eq!(fine.unwrap().unwrap().url, "https://example.com/fine");
    assert_eq!(absent.unwrap(), None);
    assert_eq!(calls(&registry), (5, 8.0), "the four went together");
}

#[tokio::test]
async fn on_redis_a_read_refused_for_every_key_fails_the_call_as_refused() {
    let test = "on_redis_a_read_refused_for_every_key_fails_the_call_as_refused";
    let Some(redis) = RedisServer::start(test, None).await else {
        return;
    };
    let mut connection = redis.connection().await;
    // A user who may not read links' keys: every read of the call is refused alike (NOPERM),
    // which is the call's failure, not a value the key holds.
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "counter",
            "on",
            ">counter-secret",
            "~portbound:clicks:*",
            "+@all",
        ])
        .query_async(&mut connection)
        .await
        .unwrap();
    let url = redis
        .attach_url()
        .replace("redis://", "redis://counter:counter-secret@");
    let (backend, _) = backend(&url);
    let refused = backend.link(&Code::parse("any").unwrap()).await;
    assert!(
        matches!(refused, Err(BackendError::Rejected(_))),
        "{refused:?}"
    );
}
