//! The embedded idempotency store: records in this process's memory.
//!
//! Use it when one instance of a service serves a key's retries (one
//! replica, or a balancer that routes by key); replicas that share keys
//! need a shared store (Redis, PostgreSQL).
//!
//! The store is split into shards, each a `Mutex<HashMap>` with its own
//! expiry queue, so that threads working on different keys rarely meet on
//! one lock. It is bounded in records and bytes; when full it refuses new
//! claims with [`StoreError::Full`] rather than evict anything (evicting a
//! record in progress would let a retry run the handler twice, evicting a
//! completed one within its retention would too). Expiry is lazy (see
//! `shard.rs` and `expiry.rs`): no task runs in the background, and
//! [`purge_expired`](MemoryStore::purge_expired) is there for a service
//! that wants idle memory back sooner. Time is `tokio::time::Instant`, so
//! tests drive leases and retention with paused time.

mod config;
mod expiry;
mod shard;

use std::{
    fmt,
    hash::BuildHasher,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

pub use config::MemoryStoreConfig;
use shard::{Limits, Shard, Slot};

use super::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, SavedResponse, StoreError, token::RecordName,
};
use crate::{config::ConfigError, shard::Padded};

/// An [`IdempotencyStore`] in this process's memory: sharded, bounded in
/// records and bytes, with lazy expiry.
///
/// Clones share the same records (the store is one `Arc`).
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use orch_resilience::idempotency::{
///     Claim, Fingerprint, IdempotencyStore, MemoryStore, MemoryStoreConfig, ResponseStatus, SavedResponse,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStoreConfig::default().retention(Duration::from_secs(3600)).build()?;
/// let fp = Fingerprint::from_bytes([9; 32]);
/// let Claim::Acquired { token } = store.claim("t", "key-1", fp, Duration::from_secs(10)).await? else {
///     unreachable!("fresh key")
/// };
/// // A repeat while the first runs is told to come back later.
/// assert!(matches!(store.claim("t", "key-1", fp, Duration::from_secs(10)).await?, Claim::InProgress { .. }));
/// store.complete(&token, SavedResponse::new(ResponseStatus::Http(200), Bytes::new())).await?;
/// assert_eq!(store.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Padded<Mutex<Shard>>]>,
    mask: usize,
    /// Keyed with random seeds per store, so clients cannot choose keys
    /// that land in one shard or one bucket.
    hasher: std::hash::RandomState,
    limits: Limits,
    config: MemoryStoreConfig,
}

// ===== impl MemoryStore =====

impl MemoryStore {
    /// A store with `config`, validated first.
    pub fn new(config: MemoryStoreConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let limits = Limits {
            max_records: config.max_records / config.shards,
            max_bytes: config.max_bytes / config.shards,
            retention: config.retention,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shards: (0..config.shards).map(|_| Padded(Mutex::default())).collect(),
                mask: config.shards - 1,
                hasher: std::hash::RandomState::new(),
                limits,
                config,
            }),
        })
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &MemoryStoreConfig {
        &self.inner.config
    }

    /// Records held, including expired ones not freed yet.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted against `max_bytes`, including expired records not
    /// freed yet.
    pub fn bytes(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).bytes()).sum()
    }

    /// Frees every expired record now, one shard at a time, and returns how
    /// many. Claims free expired records as they go; call this from a
    /// periodic task to return memory during quiet periods too. Each shard
    /// is scanned whole under its lock.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        self.inner.shards.iter().map(|shard| lock(shard).purge(now)).sum()
    }

    fn slot(&self, name: RecordName) -> Slot {
        Slot {
            hash: self.inner.hasher.hash_one(&name),
            name,
        }
    }

    fn shard(&self, slot: &Slot) -> MutexGuard<'_, Shard> {
        // Bits 40 and up: the map takes its bucket index from the low bits
        // and its tag from the top seven, so within a shard they still vary.
        lock(&self.inner.shards[(slot.hash >> 40) as usize & self.inner.mask])
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic under the lock leaves no half-made change: every operation
    // checks first and changes last, with nothing that panics in between.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for MemoryStore {
    /// A store with [`MemoryStoreConfig::default`].
    fn default() -> Self {
        let config = MemoryStoreConfig::default();
        debug_assert!(config.validate().is_ok());
        Self::new(config).unwrap_or_else(|_| unreachable!("the default config is valid"))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        StoreError::check_lease(lease, self.inner.limits.retention)?;
        let slot = self.slot(RecordName::new(scope, key));
        let now = Instant::now();
        self.shard(&slot)
            .claim(slot, fingerprint, lease, now, &self.inner.limits)
    }

    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError> {
        StoreError::check_size(&response, self.inner.config.max_response_bytes)?;
        let slot = self.slot(token.name().clone());
        let now = Instant::now();
        let result = self
            .shard(&slot)
            .complete(&slot, token.generation(), response, now, &self.inner.limits);
        if let Err(StoreError::StaleToken) = result {
            tracing::debug!(
                scope = token.scope(),
                generation = token.generation(),
                "stale completion refused"
            );
        }
        result
    }

    async fn release(&self, token: &FencingToken) -> Result<(), StoreError> {
        let slot = self.slot(token.name().clone());
        let now = Instant::now();
        self.shard(&slot).release(&slot, token.generation(), now)
    }

    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError> {
        StoreError::check_lease(lease, self.inner.limits.retention)?;
        let slot = self.slot(token.name().clone());
        let now = Instant::now();
        self.shard(&slot).renew(&slot, token.generation(), lease, now)
    }
}

#[cfg(test)]
mod tests;
