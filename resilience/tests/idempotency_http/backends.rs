//! The layer's core flow over the shared stores, against real servers:
//! run once, replay, mismatch, and a 5xx that releases the key.
//!
//! Redis is `ORCH_TEST_REDIS_URL` (feature `redis`), PostgreSQL
//! `ORCH_TEST_POSTGRES_URL` (feature `postgres`); `.ci/run` sets both and
//! starts the servers. Unset (or the feature off), each test prints why it
//! was skipped and passes. Each run works in a key prefix or schema of its
//! own.

#![allow(dead_code, reason = "each backend's test is behind its feature")]

use http::StatusCode;
use orch_resilience::idempotency::{IdempotencyStore, http::IdempotencyConfig};
use tower::Layer;

use super::{Handler, KEY, layer, post, send};

fn url(var: &str, test: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|url| !url.is_empty());
    if url.is_none() {
        println!("{test}: skipped, {var} is not set (.ci/run sets it and starts the server)");
    }
    url
}

/// Runs once, replays, refuses another payload, releases after a 5xx.
async fn core_flow(store: impl IdempotencyStore + 'static) {
    let handler = Handler::new().statuses(&[201, 503]);
    let service = layer(store, IdempotencyConfig::default()).layer(handler.service());

    assert_eq!(send(&service, post(KEY, "a")).await.status, StatusCode::CREATED);
    let replay = send(&service, post(KEY, "a")).await;
    assert!(replay.replayed());
    assert_eq!(replay.text(), "call 0: a");
    assert_eq!(
        send(&service, post(KEY, "b")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let other = "\"018f6b2e-7c1a-7000-8000-0000000000cc\"";
    assert_eq!(
        send(&service, post(other, "a")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&service, post(other, "a")).await.status,
        StatusCode::CREATED,
        "the 503 released it"
    );
    assert_eq!(handler.calls(), 3);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flow_over_redis() {
    let Some(url) = url("ORCH_TEST_REDIS_URL", "core_flow_over_redis") else {
        return;
    };
    let store = orch_resilience::idempotency::redis::RedisStoreConfig::default()
        .url(url)
        .key_prefix(format!("orch-test-http:{}:", uuid::Uuid::now_v7()))
        .build()
        .unwrap();
    core_flow(store).await;
}

#[cfg(not(feature = "redis"))]
#[test]
fn core_flow_over_redis() {
    println!("core_flow_over_redis: skipped, feature `redis` is off");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flow_over_postgres() {
    use orch_resilience::idempotency::{PostgresStore, PostgresStoreConfig};

    let Some(url) = url("ORCH_TEST_POSTGRES_URL", "core_flow_over_postgres") else {
        return;
    };
    let schema = format!("orch_test_http_{}", uuid::Uuid::now_v7().simple());
    let config = PostgresStoreConfig::default()
        .url(url.clone())
        .schema(schema.clone())
        .max_connections(4);
    let store = PostgresStore::new(config).unwrap();
    store.migrate().await.unwrap();
    core_flow(store).await;

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[cfg(not(feature = "postgres"))]
#[test]
fn core_flow_over_postgres() {
    println!("core_flow_over_postgres: skipped, feature `postgres` is off");
}
