//! The PostgreSQL store against a real server: the whole conformance
//! suite, fencing seen in the table itself, the reaper, a down server and
//! bad names.
//!
//! The server is `ORCH_TEST_POSTGRES_URL` (CI's `.ci/run` sets it and
//! starts PostgreSQL). Unset, every test that needs the server says it was
//! skipped and passes; set with the server down, they fail. Each store
//! works in a schema of its own (`orch_test_<uuid>`), dropped when the
//! store is, so runs never see each other's rows.

use std::{future::Future, pin::Pin, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use orch_resilience::idempotency::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, PostgresStore, PostgresStoreConfig, ResponseStatus,
    SavedResponse, StoreError,
    conformance::{Conformance, Timing},
};

const URL_VAR: &str = "ORCH_TEST_POSTGRES_URL";

/// The server's URL, or `None` after saying why `test` is skipped.
fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped {test}: {URL_VAR} is not set (set it to a PostgreSQL URL, as .ci/run does, to run it)"
            );
            None
        }
    }
}

/// A store in a fresh schema that it drops when dropped.
struct TestStore {
    store: PostgresStore,
    url: String,
}

impl TestStore {
    async fn new(url: String, retention: Duration) -> Self {
        let schema = format!("orch_test_{}", uuid::Uuid::now_v7().simple());
        let config = PostgresStoreConfig::default()
            .url(url.clone())
            .schema(schema)
            .retention(retention)
            .max_connections(8);
        let store = PostgresStore::new(config).expect("valid config");
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("{URL_VAR} is set but the server is not usable: {err}"));
        Self { store, url }
    }

    fn schema(&self) -> &str {
        &self.store.config().schema
    }

    /// A client of its own, to look at the table behind the store's back.
    async fn sql(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // a thread with a runtime of its own drops the schema, and the test
        // waits for it so that nothing is left behind.
        let (url, schema) = (self.url.clone(), self.schema().to_owned());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test schema {}", self.schema());
        }
    }
}

#[async_trait]
impl IdempotencyStore for TestStore {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.store.claim(scope, key, fingerprint, lease).await
    }

    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError> {
        self.store.complete(token, response).await
    }

    async fn release(&self, token: &FencingToken) -> Result<(), StoreError> {
        self.store.release(token).await
    }

    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError> {
        self.store.renew(token, lease).await
    }
}

type MakeStore = fn(Duration) -> Pin<Box<dyn Future<Output = TestStore> + Send>>;

fn make_store(retention: Duration) -> Pin<Box<dyn Future<Output = TestStore> + Send>> {
    Box::pin(async move {
        let url = std::env::var(URL_VAR).expect("the suite runs only with the URL set");
        TestStore::new(url, retention).await
    })
}

fn suite() -> Option<Conformance<MakeStore>> {
    server_url("the PostgreSQL conformance check")?;
    Some(Conformance::new(make_store as MakeStore, Timing::real_server()))
}

mod conformance {
    use super::suite;

    orch_resilience::idempotency_conformance_tests!(
        #[tokio::test]
        suite
    );
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn response(body: &'static str) -> SavedResponse {
    SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(body.as_bytes()))
}

async fn acquire(store: &TestStore, key: &str, lease: Duration) -> FencingToken {
    match store.claim("tenant", key, fp(1), lease).await.expect("claim") {
        Claim::Acquired { token } => token,
        other => panic!("{key} should be acquired, got {other:?}"),
    }
}

/// A holder whose lease ran out and whose record was re-claimed cannot
/// complete, release or renew: the row keeps the new holder's generation
/// and state, and then the new holder's response, as the table shows.
#[tokio::test]
async fn stale_holder_cannot_overwrite_the_new_holder() {
    let Some(url) = server_url("stale_holder_cannot_overwrite_the_new_holder") else {
        return;
    };
    let store = TestStore::new(url, Duration::from_secs(60)).await;
    let lease = Duration::from_millis(300);
    let old = acquire(&store, "k", lease).await;
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let new = acquire(&store, "k", lease).await;
    assert!(new.generation() > old.generation(), "generations only grow");
    assert!(
        store
            .complete(&old, response("stale"))
            .await
            .is_err_and(|e| e.is_stale())
    );
    assert!(store.release(&old).await.is_err_and(|e| e.is_stale()));
    assert!(store.renew(&old, lease).await.is_err_and(|e| e.is_stale()));

    let sql = store.sql().await;
    let select = format!(
        "SELECT generation, state, body FROM \"{}\".idempotency_records WHERE key = 'k'",
        store.schema()
    );
    let row = sql.query_one(&select, &[]).await.expect("the row");
    assert_eq!(row.get::<_, i64>(0), new.generation() as i64);
    assert_eq!(row.get::<_, &str>(1), "in_progress");
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2), None);

    store
        .complete(&new, response("fresh"))
        .await
        .expect("new holder completes");
    assert!(
        store
            .complete(&old, response("stale"))
            .await
            .is_err_and(|e| e.is_stale())
    );
    let row = sql.query_one(&select, &[]).await.expect("the row");
    assert_eq!(row.get::<_, &str>(1), "completed");
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2).as_deref(), Some(&b"fresh"[..]));
}

/// `reap_expired` deletes expired rows, in progress or completed, and
/// leaves live ones; `migrate` may run again on a migrated schema.
#[tokio::test]
async fn reaper_deletes_only_expired_rows() {
    let Some(url) = server_url("reaper_deletes_only_expired_rows") else {
        return;
    };
    let store = TestStore::new(url.clone(), Duration::from_secs(1)).await;
    store
        .store
        .migrate()
        .await
        .expect("a second migration changes nothing");
    let lease = Duration::from_millis(500);
    let done = acquire(&store, "done", lease).await;
    store.complete(&done, response("x")).await.expect("complete");
    acquire(&store, "orphan", lease).await;
    assert_eq!(store.store.reap_expired().await.expect("reap"), 0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    acquire(&store, "live", lease).await;
    assert_eq!(store.store.reap_expired().await.expect("reap"), 2);
    let count = format!("SELECT key FROM \"{}\".idempotency_records", store.schema());
    let rows = store.sql().await.query(&count, &[]).await.expect("select");
    let keys: Vec<&str> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(keys, ["live"]);
}

/// A server that cannot be reached (a closed port) makes every operation
/// `Unavailable`, with the configured retry hint. Needs no server.
#[tokio::test]
async fn down_server_is_unavailable_with_retry_after() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // Closed again here: nothing listens on it.
    let config = PostgresStoreConfig::default()
        .url(format!("postgres://postgres@127.0.0.1:{port}/test"))
        .connect_timeout(Duration::from_secs(2))
        .unavailable_retry_after(Duration::from_secs(3));
    let store = PostgresStore::new(config).expect("valid config: no connection is made yet");
    let unavailable = |result: Result<(), StoreError>, what: &str| match result {
        Err(err @ StoreError::Unavailable { .. }) => {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{what}");
        }
        other => panic!("{what} on a down server should be Unavailable, got {other:?}"),
    };
    let claim = store.claim("t", "k", fp(1), Duration::from_secs(1)).await;
    unavailable(claim.map(drop), "claim");
    let token = FencingToken::new("t", "k", 1);
    unavailable(store.complete(&token, response("x")).await, "complete");
    unavailable(store.release(&token).await, "release");
    unavailable(store.renew(&token, Duration::from_secs(1)).await, "renew");
    unavailable(store.migrate().await, "migrate");
    unavailable(store.reap_expired().await.map(drop), "reap_expired");
}

/// Bad names and values are typed config errors naming the field, before
/// any connection; names that could carry SQL are among them.
#[test]
fn bad_config_is_a_typed_error_naming_the_field() {
    let base = || PostgresStoreConfig::default().url("postgres://postgres@127.0.0.1/test");
    let cases = [
        (
            base().schema("orch\"; DROP TABLE users; --"),
            "idempotency.postgres.schema",
        ),
        (base().schema("Orch"), "idempotency.postgres.schema"),
        (base().schema(""), "idempotency.postgres.schema"),
        (base().schema("pg_catalog"), "idempotency.postgres.schema"),
        (base().schema("a".repeat(64)), "idempotency.postgres.schema"),
        (
            base().table("records; DELETE FROM x"),
            "idempotency.postgres.table",
        ),
        (base().table("1records"), "idempotency.postgres.table"),
        (base().table("a".repeat(53)), "idempotency.postgres.table"),
        (base().retention(Duration::ZERO), "idempotency.postgres.retention"),
        (
            base().retention(Duration::from_secs(400 * 86_400)),
            "idempotency.postgres.retention",
        ),
        (base().max_connections(0), "idempotency.postgres.max_connections"),
        (
            base().connect_timeout(Duration::ZERO),
            "idempotency.postgres.connect_timeout",
        ),
        (
            base().max_response_bytes(0),
            "idempotency.postgres.max_response_bytes",
        ),
        (
            base().max_response_bytes(1 << 30),
            "idempotency.postgres.max_response_bytes",
        ),
        (
            base().unavailable_retry_after(Duration::ZERO),
            "idempotency.postgres.unavailable_retry_after",
        ),
        (
            base().url("postgres://host:notaport/db"),
            "idempotency.postgres.url",
        ),
        (PostgresStoreConfig::default(), "idempotency.postgres.url"),
    ];
    for (config, field) in cases {
        let err = PostgresStore::new(config).expect_err(field);
        assert_eq!(err.field_name(), field, "{err}");
    }
    PostgresStore::new(base().table("a".repeat(52))).expect("52 bytes fit the sequence's name");
}

#[test]
fn config_comes_from_serde_and_rejects_unknown_keys() {
    let config: PostgresStoreConfig = serde_json::from_str(
        r#"{ "url": "postgres://app:pw@db/app", "schema": "orders", "table": "keys",
             "retention": "2h", "max_connections": 4, "connect_timeout": "1s" }"#,
    )
    .expect("deserialise");
    assert_eq!(
        (config.schema.as_str(), config.table.as_str(), config.retention),
        ("orders", "keys", Duration::from_secs(7200))
    );
    assert!(
        !format!("{config:?}").contains(":pw@"),
        "the password stays out of logs"
    );
    let round_trip: PostgresStoreConfig =
        serde_json::from_str(&serde_json::to_string(&config).expect("serialise")).expect("deserialise");
    assert_eq!(round_trip, config);
    assert!(serde_json::from_str::<PostgresStoreConfig>(r#"{ "tabel": "x" }"#).is_err());
}
