//! The memory store: the conformance suite under paused time, its bounds,
//! its configuration, and exactly-once claims across OS threads.

use std::{
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use orch_resilience::idempotency::{
    Capacity, Claim, FencingToken, Fingerprint, IdempotencyStore, MemoryStore, MemoryStoreConfig,
    ResponseStatus, SavedResponse, StoreError,
    conformance::{Conformance, Timing},
};

fn store_with(retention: Duration) -> Ready<MemoryStore> {
    ready(
        MemoryStoreConfig::default()
            .retention(retention)
            .build()
            .expect("valid config"),
    )
}

type Suite = Conformance<fn(Duration) -> Ready<MemoryStore>>;

fn paused_suite() -> Option<Suite> {
    Some(Conformance::new(store_with, Timing::paused()))
}

mod conformance_paused {
    use super::paused_suite;

    orch_resilience::idempotency_conformance_tests!(
        #[tokio::test(start_paused = true)]
        paused_suite
    );
}

/// `run_all` runs the same checks in one test.
#[tokio::test(start_paused = true)]
async fn conformance_run_all() {
    Conformance::new(store_with, Timing::paused()).run_all().await;
}

const LEASE: Duration = Duration::from_secs(30);

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn body(len: usize) -> SavedResponse {
    SavedResponse::new(ResponseStatus::Http(200), Bytes::from(vec![b'x'; len]))
}

async fn acquire(store: &MemoryStore, key: &str) -> Result<FencingToken, StoreError> {
    match store.claim("tenant", key, fp(1), LEASE).await? {
        Claim::Acquired { token } => Ok(token),
        other => panic!("{key} should be acquired, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn full_store_refuses_new_claims_and_evicts_nothing() {
    let store = MemoryStoreConfig::default()
        .shards(1)
        .max_records(3)
        .build()
        .expect("valid");
    let held = acquire(&store, "a").await.expect("room");
    let done = acquire(&store, "b").await.expect("room");
    store.complete(&done, body(10)).await.expect("complete");
    acquire(&store, "c").await.expect("room");
    match store.claim("tenant", "d", fp(1), LEASE).await {
        Err(StoreError::Full {
            capacity: Capacity::Records,
            limit: 3,
            retry_after,
        }) => {
            // The next record that can go is the first claim's, a retention away.
            assert_eq!(retry_after, Some(store.config().retention));
        }
        other => panic!("a full store refuses, got {other:?}"),
    }
    // Nothing was evicted: the running record still fences, the saved one replays.
    assert!(matches!(
        store.claim("tenant", "a", fp(1), LEASE).await,
        Ok(Claim::InProgress { .. })
    ));
    assert!(matches!(
        store.claim("tenant", "b", fp(1), LEASE).await,
        Ok(Claim::Completed(_))
    ));
    // A release makes room at once.
    store.release(&held).await.expect("release");
    acquire(&store, "d").await.expect("room after a release");
}

#[tokio::test(start_paused = true)]
async fn expired_records_make_room_without_a_reaper() {
    let store = MemoryStoreConfig::default()
        .shards(1)
        .max_records(2)
        .retention(Duration::from_secs(60))
        .build()
        .expect("valid");
    for key in ["a", "b"] {
        let token = acquire(&store, key).await.expect("room");
        store.complete(&token, body(100)).await.expect("complete");
    }
    let before = store.bytes();
    tokio::time::advance(Duration::from_secs(61)).await;
    // The claim frees both expired records on its way in.
    acquire(&store, "c").await.expect("expired records freed");
    assert_eq!(store.len(), 1);
    assert!(store.bytes() < before, "freed bytes are returned");
}

#[tokio::test(start_paused = true)]
async fn byte_bound_refuses_completions_it_cannot_hold() {
    let config = MemoryStoreConfig::default().shards(1).max_response_bytes(1000);
    // 3.5 KiB: after two completed records there is room for a third
    // claim but not its response, whatever the per-record overhead within
    // a few hundred bytes, so the bound is met by a completion.
    let store = config.max_bytes(3584).build().expect("valid");
    match store
        .complete(&acquire(&store, "big").await.expect("room"), body(1001))
        .await
    {
        Err(StoreError::ResponseTooLarge {
            size: 1001,
            max: 1000,
        }) => {}
        other => panic!("a response above max_response_bytes is refused, got {other:?}"),
    }
    let mut refused = None;
    for n in 0..8 {
        let token = acquire(&store, &format!("k{n}"))
            .await
            .expect("records are small");
        if let Err(err) = store.complete(&token, body(1000)).await {
            refused = Some((err, token));
            break;
        }
    }
    let (err, token) = refused.expect("3.5 KiB cannot hold eight 1000-byte responses");
    assert!(
        matches!(
            err,
            StoreError::Full {
                capacity: Capacity::Bytes,
                limit: 3584,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.bytes() <= 3584);
    // The refused record is still the holder's to release.
    store
        .release(&token)
        .await
        .expect("release after a refused completion");
}

#[tokio::test(start_paused = true)]
async fn purge_expired_frees_idle_records() {
    let store = MemoryStoreConfig::default()
        .retention(Duration::from_secs(60))
        .build()
        .expect("valid");
    for n in 0..100 {
        let token = acquire(&store, &format!("k{n}")).await.expect("room");
        store.complete(&token, body(10)).await.expect("complete");
    }
    assert_eq!(store.purge_expired(), 0);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(store.purge_expired(), 100);
    assert!(store.is_empty());
    assert_eq!(store.bytes(), 0);
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (
            MemoryStoreConfig::default().retention(Duration::ZERO),
            "idempotency.memory.retention",
        ),
        (
            MemoryStoreConfig::default().retention(Duration::from_secs(400 * 86_400)),
            "idempotency.memory.retention",
        ),
        (
            MemoryStoreConfig::default().shards(0),
            "idempotency.memory.shards",
        ),
        (
            MemoryStoreConfig::default().shards(48),
            "idempotency.memory.shards",
        ),
        (
            MemoryStoreConfig::default().shards(2048),
            "idempotency.memory.shards",
        ),
        (
            MemoryStoreConfig::default().max_records(0),
            "idempotency.memory.max_records",
        ),
        (
            MemoryStoreConfig::default().max_records(63),
            "idempotency.memory.max_records",
        ),
        (
            MemoryStoreConfig::default().max_response_bytes(0),
            "idempotency.memory.max_response_bytes",
        ),
        (
            MemoryStoreConfig::default().max_bytes(64 << 20),
            "idempotency.memory.max_bytes",
        ),
    ];
    for (config, field) in cases {
        let err = config.build().expect_err(field);
        assert_eq!(err.field_name(), field, "{err}");
    }
    let unknown = serde_json::from_str::<MemoryStoreConfig>(r#"{ "max_record": 10 }"#);
    assert!(unknown.is_err(), "unknown keys are rejected");
    let round_trip: MemoryStoreConfig =
        serde_json::from_str(&serde_json::to_string(&MemoryStoreConfig::default()).expect("serialise"))
            .expect("deserialise");
    assert_eq!(round_trip, MemoryStoreConfig::default());
}

/// Threads racing for real: for each of 200 keys, 16 tasks on four worker
/// threads claim at once; exactly one acquires each key and every task ends
/// with that key's response.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_winner_per_key_across_threads() {
    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::default());
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for key in 0..200 {
        for _ in 0..16 {
            let (store, acquired) = (Arc::clone(&store), Arc::clone(&acquired));
            tasks.push(tokio::spawn(async move {
                let key = format!("key-{key}");
                loop {
                    match store.claim("tenant", &key, fp(1), LEASE).await.expect("claim") {
                        Claim::Acquired { token } => {
                            acquired.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            let saved =
                                SavedResponse::new(ResponseStatus::Http(201), Bytes::from(key.clone()));
                            store.complete(&token, saved).await.expect("complete");
                        }
                        Claim::InProgress { .. } => tokio::task::yield_now().await,
                        Claim::Completed(saved) => return (key, saved.body),
                        Claim::Mismatch => panic!("same fingerprint"),
                    }
                }
            }));
        }
    }
    for task in tasks {
        let (key, body) = task.await.expect("task");
        assert_eq!(body, key.as_bytes(), "every claimer replays its key's response");
    }
    assert_eq!(acquired.load(Ordering::SeqCst), 200, "one acquisition per key");
}
