//! The consumer's statements on PostgreSQL, as PostgreSQL plans them. Each test starts its own
//! server; where PostgreSQL is not installed, the tests say SKIPPED.

use consumer::backend::Backend;
use consumer::backend::postgres::LINKS;
use consumer::links::Code;
use testkit::postgres::PostgresServer;

/// A pooled connection keeps the plan of its prepared statements, and PostgreSQL may choose a
/// generic one planned while the table was small. The many-links lookup must probe the primary
/// key per code in that plan too, never scan the table.
#[tokio::test]
async fn many_links_are_probed_by_key_even_in_a_plan_made_for_a_small_table() {
    let test = "many_links_are_probed_by_key_even_in_a_plan_made_for_a_small_table";
    let Some(postgres) = PostgresServer::start(test, "plan-secret").await else {
        return;
    };
    let settings = consumer::Settings::local(0, &postgres.attach_url()).unwrap();
    let backend = Backend::new(&settings.backend, &prometheus::Registry::new()).unwrap();
    // The first call creates the tables.
    let none = backend.link(&Code::parse("none").unwrap()).await;
    assert_eq!(none.unwrap(), None);
    let client = postgres.client().await;
    client
        .batch_execute(
            "INSERT INTO portbound_links (code, url, created_at) \
             SELECT 's' || i, 'https://example.com/' || i, 'now' FROM generate_series(1, 1000) i; \
             ANALYZE portbound_links; \
             SET plan_cache_mode = force_generic_plan",
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!("PREPARE links(text[], int) AS {LINKS}"))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query("EXPLAIN EXECUTE links(ARRAY['s1', 's2'], 32768)", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
