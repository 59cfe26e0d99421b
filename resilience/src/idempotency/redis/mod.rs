//! The Redis idempotency store (feature `redis`): records shared by every
//! replica of a service, in one Redis key each.
//!
//! Use it when several instances serve retries of the same key and Redis
//! is already at hand; the [`MemoryStore`](super::MemoryStore) suits one
//! instance, PostgreSQL a service that wants the record in its database.
//!
//! # Key layout
//!
//! A record is one hash under
//! `<key_prefix><length of scope>:<scope>:<key>`, for example
//! `orch:idempotency:8:tenant-1:018f6b2e-…`. The scope's length keeps
//! (`"ab"`, `"c"`) and (`"a"`, `"bc"`) apart whatever the characters. The
//! hash holds the state (`run`, `done`, `free`), the fingerprint, the
//! claim's generation, the lease deadline and the saved response; its TTL
//! is the retention (`PEXPIRE`).
//!
//! # Why one key per record
//!
//! Every operation reads and writes one key, so each is one Lua script
//! that Redis runs atomically, and on Redis Cluster every script's keys
//! are in one slot: no `CROSSSLOT` errors, no hash tags, records spread
//! over the shards. A counter or an index in another key would need both
//! keys on one slot, funnelling every record to one node. The store itself
//! connects to one server (`redis::Client`); a cluster connection is not
//! supported yet.
//!
//! # Scripts
//!
//! One per operation (`scripts.rs`), sent as `EVALSHA` and, when the server
//! does not know the script yet (first use, a restart, a failover), loaded
//! and sent again (the `redis` crate's `Script`). So each operation is one
//! round trip once the scripts are cached.
//!
//! - claim: a missing, released or orphaned record (lease deadline passed)
//!   is taken under a new generation, deadline `now + lease`, TTL the
//!   retention; a running one answers `InProgress` with the time left,
//!   a completed one its response, another fingerprint `Mismatch`.
//! - complete, release, renew: only if the record is `run` under the
//!   token's generation (else [`StoreError::StaleToken`]); complete saves
//!   the response and resets the TTL to the retention, release marks the
//!   record `free`, renew moves the deadline.
//!
//! Lease deadlines and generations come from the server's clock (`TIME`
//! inside the scripts), so the clocks of the service's instances play no
//! part. Tests of this store run in real time: tokio's paused clock does
//! not reach the server.
//!
//! # Errors
//!
//! A connection or server failure is [`StoreError::Unavailable`] with the
//! configured `retry_after`. The connection is a
//! [`ConnectionManager`]: multiplexed
//! (one socket carries every task's operations) and reconnecting after a
//! failure, made on the first operation, so the store outlives any outage.

mod codec;
mod config;
mod scripts;

use std::{fmt, time::Duration};

use ::redis::{
    RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use async_trait::async_trait;
use tokio::sync::OnceCell;

pub use config::RedisStoreConfig;

use super::{Claim, FencingToken, Fingerprint, IdempotencyStore, SavedResponse, StoreError};

/// An [`IdempotencyStore`] in Redis: one hash per record, one Lua script
/// per operation, leases on the server's clock.
///
/// Clones share one connection. Build it with
/// [`RedisStoreConfig::build`] or [`build_with_client`](RedisStoreConfig::build_with_client);
/// the first operation connects, inside a tokio runtime.
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use orch_resilience::idempotency::{
///     Claim, Fingerprint, IdempotencyStore, ResponseStatus, SavedResponse,
///     redis::RedisStoreConfig,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStoreConfig::default()
///     .url("redis://127.0.0.1:6379/")
///     .key_prefix("payments:idem:")
///     .build()?;
/// let fp = Fingerprint::from_bytes([1; 32]);
/// match store.claim("tenant-1", "018f6b2e-7c1a-7000-8000-0000000000aa", fp, Duration::from_secs(30)).await? {
///     Claim::Acquired { token } => {
///         let response = SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(b"created"));
///         store.complete(&token, response).await?;
///     }
///     Claim::Completed(saved) => println!("replay {:?}", saved.status),
///     Claim::InProgress { retry_after } => println!("409, retry in {retry_after:?}"),
///     Claim::Mismatch => println!("422"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    connection: OnceCell<ConnectionManager>,
    config: RedisStoreConfig,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the config: its URL may carry a password.
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.inner.config.key_prefix)
            .field("retention", &self.inner.config.retention)
            .field("connected", &self.inner.connection.initialized())
            .finish()
    }
}

// ===== impl RedisStore =====

impl RedisStore {
    fn new(client: ::redis::Client, config: RedisStoreConfig) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                config,
            }),
        }
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &RedisStoreConfig {
        &self.inner.config
    }

    /// The Redis key of the record `scope`/`key`.
    ///
    /// ```
    /// use orch_resilience::idempotency::redis::RedisStoreConfig;
    ///
    /// let store = RedisStoreConfig::default().url("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(store.record_key("tenant-1", "k"), "orch:idempotency:8:tenant-1:k");
    /// ```
    pub fn record_key(&self, scope: &str, key: &str) -> String {
        let prefix = &self.inner.config.key_prefix;
        format!("{prefix}{}:{scope}:{key}", scope.len())
    }

    /// A handle on the shared connection, made on first use. The manager
    /// itself connects lazily and reconnects after failures, so this only
    /// fails if the client's settings cannot make a manager at all.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = &self.inner.config;
        let manager = self
            .inner
            .connection
            .get_or_try_init(|| async {
                let settings = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    // Fail the waiting operation fast; the next one tries again.
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.inner.client.clone(), settings)
            })
            .await
            .map_err(|err| self.unavailable(err))?;
        Ok(manager.clone())
    }

    fn unavailable(&self, err: RedisError) -> StoreError {
        tracing::warn!(error = %err, "idempotency store: redis unavailable");
        StoreError::unavailable(err).with_retry_after(self.inner.config.unavailable_retry_after)
    }

    fn check_lease(&self, lease: Duration) -> Result<u128, StoreError> {
        StoreError::check_lease(lease, self.inner.config.retention)?;
        Ok(lease.as_micros())
    }

    fn retention_ms(&self) -> u128 {
        self.inner.config.retention.as_millis().max(1)
    }

    /// Runs a fenced script (complete, release, renew): 1 done, 0 stale.
    async fn fenced(&self, invocation: &::redis::ScriptInvocation<'_>) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let done: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|err| self.unavailable(err))?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::StaleToken)
        }
    }
}

// ===== impl IdempotencyStore for RedisStore =====

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let lease_us = self.check_lease(lease)?;
        let mut connection = self.connection().await?;
        let (tag, payload): (String, Vec<u8>) = scripts::CLAIM
            .key(self.record_key(scope, key))
            .arg(&fingerprint.as_bytes()[..])
            .arg(lease_us.to_string())
            .arg(self.retention_ms().to_string())
            .invoke_async(&mut connection)
            .await
            .map_err(|err| self.unavailable(err))?;
        let claim = match tag.as_str() {
            "acquired" => Claim::Acquired {
                token: FencingToken::new(scope, key, number(&payload)?),
            },
            "busy" => Claim::InProgress {
                retry_after: Duration::from_millis(number(&payload)?),
            },
            "done" => Claim::Completed(codec::decode(payload).map_err(StoreError::unavailable)?),
            "mismatch" => Claim::Mismatch,
            _ => return Err(StoreError::unavailable(format!("unknown claim answer {tag:?}"))),
        };
        tracing::debug!(scope, key, outcome = tag, "idempotency claim");
        Ok(claim)
    }

    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError> {
        StoreError::check_size(&response, self.inner.config.max_response_bytes)?;
        self.fenced(
            scripts::COMPLETE
                .key(self.record_key(token.scope(), token.key()))
                .arg(token.generation().to_string())
                .arg(codec::encode(&response))
                .arg(self.retention_ms().to_string()),
        )
        .await
    }

    async fn release(&self, token: &FencingToken) -> Result<(), StoreError> {
        self.fenced(
            scripts::RELEASE
                .key(self.record_key(token.scope(), token.key()))
                .arg(token.generation().to_string()),
        )
        .await
    }

    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError> {
        let lease_us = self.check_lease(lease)?;
        self.fenced(
            scripts::RENEW
                .key(self.record_key(token.scope(), token.key()))
                .arg(token.generation().to_string())
                .arg(lease_us.to_string()),
        )
        .await
    }
}

/// A decimal number a script returned.
fn number(payload: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::unavailable("a script returned a malformed number"))
}
