//! What the public API cannot see: the expiry queue stays bounded and in
//! step with the records.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::shard::{Limits, Shard, Slot};
use crate::idempotency::{
    Claim, FencingToken, Fingerprint, ResponseStatus, SavedResponse, token::RecordName,
};

const LIMITS: Limits = Limits {
    max_records: 1_000,
    max_bytes: 1 << 30,
    retention: Duration::from_secs(60),
};
const LEASE: Duration = Duration::from_secs(10);

fn slot(key: &str) -> Slot {
    // One shard, so any hash works; a distinct one per key keeps probes short.
    let hash = key
        .bytes()
        .fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Slot {
        hash,
        name: RecordName::new("s", key),
    }
}

fn acquire(shard: &mut Shard, key: &str, now: Instant) -> FencingToken {
    match shard.claim(slot(key), Fingerprint::from_bytes([1; 32]), LEASE, now, &LIMITS) {
        Ok(Claim::Acquired { token }) => token,
        other => panic!("{key}: expected Acquired, got {other:?}"),
    }
}

fn ok_response() -> SavedResponse {
    SavedResponse::new(ResponseStatus::Http(200), Bytes::from_static(b"ok"))
}

#[test]
fn claim_release_loops_do_not_grow_the_queue() {
    let mut shard = Shard::default();
    let now = Instant::now();
    for _ in 0..10_000 {
        let token = acquire(&mut shard, "k", now);
        shard
            .release(&slot("k"), token.generation(), now)
            .expect("release");
    }
    assert_eq!(shard.len(), 0);
    assert!(shard.queue_len() <= 64 + 1, "queue holds {}", shard.queue_len());
}

#[test]
fn one_entry_per_completed_record_and_all_freed_at_expiry() {
    let mut shard = Shard::default();
    let now = Instant::now();
    for n in 0..500 {
        let key = format!("k{n}");
        let token = acquire(&mut shard, &key, now);
        shard
            .complete(
                &slot(&key),
                token.generation(),
                ok_response(),
                now + Duration::from_secs(1),
                &LIMITS,
            )
            .expect("complete");
    }
    assert_eq!(shard.queue_len(), 500);
    // Completion moved each deadline a second later: not yet due at claim + retention.
    acquire(&mut shard, "probe", now + LIMITS.retention);
    assert_eq!(shard.len(), 501);
    acquire(
        &mut shard,
        "probe-2",
        now + LIMITS.retention + Duration::from_secs(1),
    );
    assert_eq!(
        shard.len(),
        2,
        "every completed record freed at completion + retention"
    );
    assert_eq!(shard.queue_len(), 2);
}

#[test]
fn renewed_records_survive_their_first_entry() {
    let mut shard = Shard::default();
    let start = Instant::now();
    let token = acquire(&mut shard, "long", start);
    // Renew just before the claim's retention ends, for a full lease.
    let late = start + LIMITS.retention - Duration::from_secs(1);
    shard
        .renew(&slot("long"), token.generation(), LEASE, late)
        .expect("renew");
    let after_retention = start + LIMITS.retention + Duration::from_secs(1);
    match shard.claim(
        slot("long"),
        Fingerprint::from_bytes([1; 32]),
        LEASE,
        after_retention,
        &LIMITS,
    ) {
        Ok(Claim::InProgress { .. }) => {}
        other => panic!("a renewed lease outlives the retention, got {other:?}"),
    }
    shard
        .complete(
            &slot("long"),
            token.generation(),
            ok_response(),
            after_retention,
            &LIMITS,
        )
        .expect("the holder completes");
    assert_eq!(shard.queue_len(), 1);
    let bytes = shard.bytes();
    assert!(bytes > 0);
    acquire(&mut shard, "other", after_retention + LIMITS.retention);
    assert_eq!(
        shard.len(),
        1,
        "the renewed record is freed a retention after completing"
    );
}
