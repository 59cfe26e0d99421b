//! The PostgreSQL idempotency store (feature `postgres`): records in one
//! table that every replica of a service shares.
//!
//! # Table
//!
//! Made by an embedded migration (`migration.sql`), which
//! [`PostgresStore::migrate`] runs, explicitly: creating schemas and tables
//! often needs rights a service's runtime role should not have, and a
//! service decides when its database changes. Every statement is
//! `IF NOT EXISTS` and the whole runs under an advisory lock, so replicas
//! may all call it at start-up.
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `scope`, `key` | `text` | the record's name (primary key) |
//! | `fingerprint` | `bytea` | the request's digest |
//! | `generation` | `bigint` | the fencing token, from the sequence `<table>_generation` |
//! | `state` | `text` | `in_progress` or `completed` |
//! | `lease_until` | `timestamptz` | the holder's deadline, set exactly when in progress |
//! | `expires_at` | `timestamptz` | end of retention (indexed, for the reaper) |
//! | `protocol`, `status`, `header_names`, `header_values`, `body`, `trailer_names`, `trailer_values` | | the saved response, set exactly when completed |
//!
//! # Statements: one per operation, one round trip each
//!
//! - `claim`: `INSERT … ON CONFLICT (scope, key) DO UPDATE … WHERE` the
//!   record expired, or its lease ended and the fingerprint is the same,
//!   `RETURNING generation`, wrapped with a `SELECT` of the existing row
//!   for when nothing was taken. The conflicting row's lock makes exactly
//!   one of concurrent claimers win; the others read the row to answer
//!   InProgress (with the lease's remaining time), Completed or Mismatch.
//!   Under `READ COMMITTED` the `SELECT` reads the statement's snapshot,
//!   which may predate a concurrent claim that just won; the store then
//!   runs the statement again (at most a few times), so no answer is built
//!   on a row that no longer exists.
//! - `complete`, `renew`: `UPDATE … WHERE scope = $1 AND key = $2 AND
//!   generation = $3 AND state = 'in_progress' AND expires_at > now()`;
//!   `release`: a `DELETE` with the same condition. No row changed means
//!   the token is stale: [`StoreError::StaleToken`].
//! - [`reap_expired`](PostgresStore::reap_expired): deletes expired rows in
//!   batches. Expired rows are already ignored by every statement, so
//!   reaping only returns space; run it from the task that
//!   [`reaper`](PostgresStore::reaper) returns, or from a cron job.
//!
//! # Why the server's `now()`
//!
//! Every lease and expiry is computed and compared by the database with
//! its own `now()`, never from the client's clock: replicas whose clocks
//! drift apart would otherwise disagree on whether a lease ended, and one
//! of them could reclaim a record its holder still runs. The database is
//! one clock for all of them. (`now()` is the statement's start; a claim
//! that waited on a row lock judges with that moment, which only errs
//! toward "still leased".)
//!
//! # Connections
//!
//! A `deadpool-postgres` pool of `tokio-postgres` clients. A single shared
//! client would pipeline queries but fail every operation while it
//! reconnects, and could not be used by a transaction (the migration); a
//! pool recycles broken connections, bounds how many the store opens,
//! and caches each statement per connection, so an operation is one round
//! trip once a connection has prepared it. Any connection or server error
//! is [`StoreError::Unavailable`] with the configured `retry_after`.

mod config;
mod row;
mod sql;

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use deadpool_postgres::{Manager, Pool, Runtime};
use tokio_postgres::NoTls;

pub use config::PostgresStoreConfig;
use sql::Statements;

use super::{Claim, FencingToken, Fingerprint, IdempotencyStore, SavedResponse, StoreError};
use crate::{BoxError, config::ConfigError};

/// How often a claim runs again when its snapshot missed a concurrent
/// change; each run sees the changes committed before it started, so two
/// are nearly always enough.
const CLAIM_ATTEMPTS: usize = 8;

/// Rows the reaper deletes per statement.
const REAP_BATCH: i64 = 1000;

/// An [`IdempotencyStore`] in a PostgreSQL table, shared by every replica
/// that points at it.
///
/// Clones share the pool.
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use orch_resilience::idempotency::{
///     Claim, Fingerprint, IdempotencyStore, PostgresStore, PostgresStoreConfig, ResponseStatus,
///     SavedResponse,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = PostgresStoreConfig::default()
///     .url("postgres://app@127.0.0.1:5432/app")
///     .schema("orders");
/// let store = PostgresStore::new(config)?;
/// store.migrate().await?;
/// tokio::spawn(store.reaper(Duration::from_secs(300)));
///
/// let fp = Fingerprint::from_bytes([1; 32]);
/// if let Claim::Acquired { token } = store.claim("tenant-1", "key-1", fp, Duration::from_secs(30)).await? {
///     let response = SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(b"created"));
///     store.complete(&token, response).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Statements,
    config: PostgresStoreConfig,
}

impl PostgresStore {
    /// A store with a pool of its own, connecting to `config.url` (which
    /// must be set) without TLS. Makes no connection yet: the first
    /// operation does, and fails as unavailable if the server is down.
    pub fn new(config: PostgresStoreConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = config.url.as_deref().ok_or_else(|| {
            ConfigError::field(
                "idempotency.postgres.url",
                "must be set when the store makes its own pool",
            )
        })?;
        let mut pg = config::parse_url(url)?;
        pg.connect_timeout(config.connect_timeout);
        let pool = Pool::builder(Manager::new(pg, NoTls))
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|_| {
                ConfigError::field(
                    "idempotency.postgres.max_connections",
                    "could not build a pool of this size",
                )
            })?;
        Self::with_pool(pool, config)
    }

    /// A store on `pool`, made elsewhere (with TLS, or shared with the
    /// service's own queries); `config.url` and the pool settings are
    /// ignored.
    pub fn with_pool(pool: Pool, config: PostgresStoreConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: Statements::new(&config.schema, &config.table),
                pool,
                config,
            }),
        })
    }

    /// Creates the schema, sequence, table and index if missing, in one
    /// transaction under an advisory lock. Safe to call from every replica
    /// at start-up, and again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute(&self.inner.sql.migrate)
            .await
            .map_err(|err| self.unavailable(err))
    }

    /// Deletes every expired record, in batches of a thousand, and returns
    /// how many. Expired records are already ignored, so this only returns
    /// space.
    pub async fn reap_expired(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.inner.sql.reap)
            .await
            .map_err(|err| self.unavailable(err))?;
        let mut total = 0;
        loop {
            let deleted = client
                .execute(&statement, &[&REAP_BATCH])
                .await
                .map_err(|err| self.unavailable(err))?;
            total += deleted;
            if deleted < REAP_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// A task that calls [`reap_expired`](Self::reap_expired) every
    /// `every`, for the caller to spawn (and abort to stop). A failure is
    /// logged and the next round tries again.
    pub fn reaper(&self, every: Duration) -> impl Future<Output = ()> + Send + 'static {
        let store = self.clone();
        async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.reap_expired().await {
                    Ok(0) => {}
                    Ok(reaped) => tracing::debug!(reaped, "expired idempotency records deleted"),
                    Err(err) => tracing::warn!(error = %err, "idempotency reaper failed"),
                }
            }
        }
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &PostgresStoreConfig {
        &self.inner.config
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.inner.pool.get().await.map_err(|err| self.unavailable(err))
    }

    fn unavailable(&self, err: impl Into<BoxError>) -> StoreError {
        StoreError::unavailable(err).with_retry_after(self.inner.config.unavailable_retry_after)
    }

    /// Runs a fenced statement; no row changed means a stale token.
    async fn fenced(
        &self,
        sql: &str,
        token: &FencingToken,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let generation = i64::try_from(token.generation()).map_err(|_| StoreError::StaleToken)?;
        let (scope, key) = (token.scope(), token.key());
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&scope, &key, &generation];
        params.extend_from_slice(extra);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|err| self.unavailable(err))?;
        match client.execute(&statement, &params).await {
            Ok(0) => {
                tracing::debug!(scope, generation, "stale fencing token refused");
                Err(StoreError::StaleToken)
            }
            Ok(_) => Ok(()),
            Err(err) => Err(self.unavailable(err)),
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Microseconds, as the statements take durations. Leases and retention
/// are at most 366 days, far within `i64`.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        StoreError::check_lease(lease, self.inner.config.retention)?;
        let (lease_us, retention_us) = (micros(lease), micros(self.inner.config.retention));
        let fp: &[u8] = fingerprint.as_bytes();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.inner.sql.claim)
            .await
            .map_err(|err| self.unavailable(err))?;
        for _ in 0..CLAIM_ATTEMPTS {
            let found = client
                .query_one(&statement, &[&scope, &key, &fp, &lease_us, &retention_us])
                .await
                .map_err(|err| self.unavailable(err))?;
            if let Some(claim) =
                row::decide(&found, scope, key, &fingerprint).map_err(|err| self.unavailable(err))?
            {
                return Ok(claim);
            }
        }
        Err(self.unavailable(format!(
            "claim lost {CLAIM_ATTEMPTS} races with concurrent changes of the record"
        )))
    }

    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError> {
        StoreError::check_size(&response, self.inner.config.max_response_bytes)?;
        let retention_us = micros(self.inner.config.retention);
        let saved = row::Columns::from(&response);
        self.fenced(
            &self.inner.sql.complete,
            token,
            &[
                &retention_us,
                &saved.protocol,
                &saved.status,
                &saved.header_names,
                &saved.header_values,
                &saved.body,
                &saved.trailer_names,
                &saved.trailer_values,
            ],
        )
        .await
    }

    async fn release(&self, token: &FencingToken) -> Result<(), StoreError> {
        self.fenced(&self.inner.sql.release, token, &[]).await
    }

    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError> {
        StoreError::check_lease(lease, self.inner.config.retention)?;
        let lease_us = micros(lease);
        self.fenced(&self.inner.sql.renew, token, &[&lease_us]).await
    }
}
