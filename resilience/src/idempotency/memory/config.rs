use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{MemoryStore, shard::RECORD_OVERHEAD};
use crate::config::{ConfigError, check};
use crate::idempotency::{check_retention, ensure};

/// The most shards a memory store has.
const MAX_SHARDS: usize = 1024;

/// Configuration of a [`MemoryStore`], as plain data that can be loaded
/// from a file or the environment.
///
/// The bounds are split evenly between the `shards`: each holds at most
/// `max_records / shards` records and `max_bytes / shards` bytes. Keys
/// spread over the shards through a randomly keyed hash, so the shards
/// fill evenly, but a store may report [`Full`](crate::idempotency::StoreError::Full)
/// a little before the totals are reached. `max_bytes` counts names,
/// saved responses and a fixed overhead per record (the map entry and its
/// expiry queue entries), so it bounds the store's memory.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::idempotency::MemoryStoreConfig;
///
/// let config: MemoryStoreConfig = serde_json::from_str(
///     r#"{ "retention": "1h", "max_records": 10000, "max_bytes": 67108864, "shards": 16 }"#,
/// )
/// .unwrap();
/// assert_eq!(config.retention, Duration::from_secs(3600));
/// let store = config.build().unwrap();
/// assert_eq!(store.len(), 0);
///
/// let err = MemoryStoreConfig::default().max_records(0).validate().unwrap_err();
/// assert_eq!(err.field_name(), "idempotency.memory.max_records");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryStoreConfig {
    /// How long a completed record is replayed after its completion (and
    /// the least time a record in progress is kept after its claim).
    /// Also the longest lease a claim may take. Default 24 hours, as
    /// Stripe keeps keys; at most 366 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Records the store holds at most, in progress or completed. Must be
    /// at least `shards`. Default 1,000,000.
    pub max_records: usize,
    /// Bytes the store holds at most (names, responses, per-record
    /// overhead). Each shard's share must hold one record with the largest
    /// response. Default 512 MiB.
    pub max_bytes: usize,
    /// The largest response (body, headers and trailers) the store saves;
    /// a larger one is refused with `ResponseTooLarge`. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Independent parts of the store, each behind its own lock, so that
    /// threads working on different keys rarely wait for each other. A
    /// power of two, at most 1024. Default 64.
    pub shards: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 60 * 60),
            max_records: 1_000_000,
            max_bytes: 512 << 20,
            max_response_bytes: 1 << 20,
            shards: 64,
        }
    }
}

impl MemoryStoreConfig {
    /// Sets the retention.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the bound on records.
    pub fn max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// Sets the bound on bytes.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the largest response saved.
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// Sets the number of shards.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Rejects values that cannot work; the error names the field
    /// (`idempotency.memory.max_records`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_retention("idempotency.memory.retention", self.retention)?;
        ensure(
            self.shards.is_power_of_two() && self.shards <= MAX_SHARDS,
            "idempotency.memory.shards",
            "must be a power of two from 1 to 1024",
        )?;
        check::non_zero("idempotency.memory.max_records", self.max_records)?;
        ensure(
            self.max_records >= self.shards,
            "idempotency.memory.max_records",
            "must be at least the number of shards",
        )?;
        check::non_zero("idempotency.memory.max_response_bytes", self.max_response_bytes)?;
        let per_record = (self.max_response_bytes).saturating_add(RECORD_OVERHEAD + MAX_NAME_ALLOWANCE);
        ensure(
            self.max_bytes / self.shards >= per_record,
            "idempotency.memory.max_bytes",
            "must give each shard (max_bytes / shards) room for a record with a response of max_response_bytes",
        )
    }

    /// Validates the config and builds the store.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        MemoryStore::new(self)
    }
}

/// Room for a record's scope and key when checking that a shard can hold
/// the largest response: more than the HTTP layer's key and scope limits.
const MAX_NAME_ALLOWANCE: usize = 1024;
