//! Idempotency keys on the server: the store that lets a request carrying
//! an `Idempotency-Key` run its handler at most once, every repeat getting
//! the first response.
//!
//! orch's clients send a key with every retried `POST`; this module is
//! where a server remembers what it did with each key. The design follows
//! the IETF draft "The Idempotency-Key HTTP Header Field"
//! (`draft-ietf-httpapi-idempotency-key-header`) and Stripe's
//! implementation (keys scoped per account, kept 24 hours, a request with a
//! reused key and another payload refused), with Brandur Leach's PostgreSQL
//! design for the locked, recoverable record. Two failures of other
//! implementations are ruled out by the contract: a record in progress
//! always has a lease deadline, so none is reclaimed while its handler may
//! still run nor stays stuck forever, and completion is a compare-and-set
//! on a fencing token, so a holder whose lease ran out cannot overwrite the
//! work of the one that took over (AWS Powertools had both bugs).
//!
//! - [`http`]: the layer that puts a store in front of an axum or hyper
//!   service (`IdempotencyLayer`): key parsing, fingerprints, replays,
//!   `application/problem+json` refusals, handlers run detached.
//! - `grpc` (feature `tonic`): the same for tonic services
//!   (`GrpcIdempotencyLayer`), refusals as gRPC statuses.
//! - [`IdempotencyStore`]: the trait the layers call, with its contract;
//!   usable as `Arc<dyn IdempotencyStore>`.
//! - [`MemoryStore`]: the embedded default, sharded and bounded.
//! - `PostgresStore` (feature `postgres`): a table shared by replicas.
//! - `redis` (feature `redis`): one Redis hash per record.
//! - [`SavedResponse`]: a protocol-neutral saved response.
//! - [`FencingToken`], [`Fingerprint`], [`Claim`], [`StoreError`]: the
//!   vocabulary of the trait.
//! - `conformance` (feature `testing`): the suite every backend must pass.

mod error;
#[cfg(feature = "tonic")]
pub mod grpc;
pub mod http;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod response;
mod store;
mod token;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "redis")]
pub mod redis;

pub use error::{Capacity, StoreError};
pub use memory::{MemoryStore, MemoryStoreConfig};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreConfig};
pub use response::{ResponseStatus, SavedResponse};
pub use store::{Claim, IdempotencyStore};
pub use token::{FencingToken, Fingerprint};

use std::time::Duration;

use crate::config::{ConfigError, check};

/// The longest retention a store accepts: a year and a day, far beyond any
/// sensible one, and well within what `Instant` can add.
const MAX_RETENTION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The shape of every check in the stores' and layers' configs: an error
/// naming `field` unless `valid`.
fn ensure(valid: bool, field: &str, reason: &'static str) -> Result<(), ConfigError> {
    if valid {
        Ok(())
    } else {
        Err(ConfigError::field(field, reason))
    }
}

/// A store's retention: above zero and at most [`MAX_RETENTION`].
fn check_retention(field: &str, retention: Duration) -> Result<(), ConfigError> {
    check::non_zero_duration(field, retention)?;
    ensure(retention <= MAX_RETENTION, field, "must be at most 366 days")
}
