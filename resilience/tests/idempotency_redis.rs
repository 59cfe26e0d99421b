//! The Redis store against a real server: the whole conformance suite, the
//! fencing of a stale holder seen in the record itself, and `Unavailable`
//! from a server that is not there.
//!
//! The server is `ORCH_TEST_REDIS_URL` (`.ci/run` sets it and starts
//! Redis; there, a server that does not answer fails the tests). Where it
//! is unset, each test prints that it was skipped and passes. Every store
//! gets a key prefix of its own (a UUID v7), so runs never see each
//! other's records.

use std::{future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use orch_resilience::idempotency::{
    Claim, Fingerprint, IdempotencyStore, ResponseStatus, SavedResponse, StoreError,
    conformance::{Conformance, Timing},
    redis::{RedisStore, RedisStoreConfig},
};

const URL_VAR: &str = "ORCH_TEST_REDIS_URL";

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty());
    if url.is_none() {
        println!("{test}: skipped, {URL_VAR} is not set (CI sets it and starts Redis)");
    }
    url
}

fn store_at(url: &str, retention: Duration) -> RedisStore {
    RedisStoreConfig::default()
        .url(url)
        .key_prefix(format!("orch-test:{}:", uuid::Uuid::now_v7()))
        .retention(retention)
        .build()
        .expect("valid config")
}

type MakeStore = Box<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = RedisStore>>>>;

fn suite() -> Option<Conformance<MakeStore>> {
    let url = redis_url("conformance")?;
    let make: MakeStore = Box::new(move |retention| {
        let store = store_at(&url, retention);
        Box::pin(async move { store })
    });
    Some(Conformance::new(make, Timing::real_server()))
}

mod conformance {
    use super::suite;

    orch_resilience::idempotency_conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        suite
    );
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

/// A holder whose lease ran out and whose record was re-claimed cannot
/// overwrite it, and the record in Redis still holds the new generation.
#[tokio::test]
async fn stale_holder_cannot_overwrite_the_record() {
    let Some(url) = redis_url("stale_holder_cannot_overwrite_the_record") else {
        return;
    };
    let store = store_at(&url, Duration::from_secs(10));
    let lease = Duration::from_millis(200);
    let Claim::Acquired { token: old } = store.claim("s", "k", fp(1), lease).await.expect("claim") else {
        panic!("fresh key is acquired");
    };
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let Claim::Acquired { token: new } = store.claim("s", "k", fp(1), lease * 10).await.expect("claim")
    else {
        panic!("an expired lease is re-claimed");
    };
    assert!(new.generation() > old.generation(), "generations grow");
    let stale = SavedResponse::new(ResponseStatus::Http(500), Bytes::from_static(b"stale"));
    assert!(store.complete(&old, stale).await.expect_err("stale").is_stale());

    let client = redis::Client::open(url.as_str()).expect("url");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
    let record_key = store.record_key("s", "k");
    let (state, generation): (String, String) = redis::cmd("HMGET")
        .arg(&record_key)
        .arg("state")
        .arg("gen")
        .query_async(&mut connection)
        .await
        .expect("HMGET");
    assert_eq!(state, "run", "the stale complete changed nothing");
    assert_eq!(generation, new.generation().to_string());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&record_key)
        .query_async(&mut connection)
        .await
        .expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 10_000,
        "the record expires within the retention, ttl {ttl} ms"
    );

    let fresh = SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(b"new"));
    store
        .complete(&new, fresh.clone())
        .await
        .expect("new holder completes");
    match store.claim("s", "k", fp(1), lease).await.expect("claim") {
        Claim::Completed(saved) => assert_eq!(saved, fresh),
        other => panic!("replay expected, got {other:?}"),
    }
}

/// A server that is not there: every operation is `Unavailable` with the
/// configured retry hint, never a silent success or a hang.
#[tokio::test]
async fn down_server_is_unavailable_with_retry_after() {
    // A port nobody listens on: bound, then closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let store = RedisStoreConfig::default()
        .url(format!("redis://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_millis(200))
        .unavailable_retry_after(Duration::from_secs(2))
        .build()
        .expect("valid config");
    for _ in 0..2 {
        match store.claim("s", "k", fp(1), Duration::from_secs(1)).await {
            Err(err @ StoreError::Unavailable { .. }) => {
                assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
            }
            other => panic!("a closed port is Unavailable, got {other:?}"),
        }
    }
    let token = orch_resilience::idempotency::FencingToken::new("s", "k", 1);
    assert!(matches!(
        store.release(&token).await,
        Err(StoreError::Unavailable { .. })
    ));
}

/// An outage at start does not leave the store failed: once the server is
/// reachable (here a forwarder to it appears on the port that was closed),
/// the next operations succeed.
#[tokio::test]
async fn store_recovers_once_the_server_is_reachable() {
    let Some(url) = redis_url("store_recovers_once_the_server_is_reachable") else {
        return;
    };
    let client = redis::Client::open(url.as_str()).expect("url");
    let redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone() else {
        println!("store_recovers_once_the_server_is_reachable: skipped, {URL_VAR} is not TCP");
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let front = listener.local_addr().expect("addr");
    drop(listener);
    let store = RedisStoreConfig::default()
        .url(format!("redis://{front}/"))
        .key_prefix(format!("orch-test:{}:", uuid::Uuid::now_v7()))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("valid config");
    assert!(matches!(
        store.claim("s", "k", fp(1), Duration::from_secs(1)).await,
        Err(StoreError::Unavailable { .. })
    ));

    let listener = tokio::net::TcpListener::bind(front)
        .await
        .expect("rebind the closed port");
    let forwarder = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backend = format!("{host}:{port}");
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let mut outcome = None;
    for _ in 0..50 {
        match store.claim("s", "k", fp(1), Duration::from_secs(1)).await {
            Ok(claim) => {
                outcome = Some(claim);
                break;
            }
            Err(StoreError::Unavailable { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("only Unavailable while reconnecting, got {other:?}"),
        }
    }
    forwarder.abort();
    assert!(
        matches!(outcome, Some(Claim::Acquired { .. })),
        "the store reconnects within 5 s, got {outcome:?}"
    );
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (
            RedisStoreConfig::default().url("http://x/"),
            "idempotency.redis.url",
        ),
        (RedisStoreConfig::default(), "idempotency.redis.url"),
        (
            RedisStoreConfig::default().url("redis://h/").key_prefix(""),
            "idempotency.redis.key_prefix",
        ),
        (
            RedisStoreConfig::default()
                .url("redis://h/")
                .retention(Duration::ZERO),
            "idempotency.redis.retention",
        ),
        (
            RedisStoreConfig::default()
                .url("redis://h/")
                .max_response_bytes(0),
            "idempotency.redis.max_response_bytes",
        ),
        (
            RedisStoreConfig::default()
                .url("redis://h/")
                .connect_timeout(Duration::ZERO),
            "idempotency.redis.connect_timeout",
        ),
        (
            RedisStoreConfig::default()
                .url("redis://h/")
                .response_timeout(Duration::ZERO),
            "idempotency.redis.response_timeout",
        ),
    ];
    for (config, field) in cases {
        let err = config.build().expect_err(field);
        assert_eq!(err.field_name(), field, "{err}");
    }
    let unknown = serde_json::from_str::<RedisStoreConfig>(r#"{ "prefix": "x" }"#);
    assert!(unknown.is_err(), "unknown keys are rejected");
    let config: RedisStoreConfig =
        serde_json::from_str(r#"{ "url": "redis://127.0.0.1/", "retention": "90s" }"#).expect("parse");
    assert_eq!(config.retention, Duration::from_secs(90));
    assert_eq!(config.key_prefix, "orch:idempotency:");
}
