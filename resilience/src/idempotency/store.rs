//! The seam between the idempotency layers and where records live.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::{FencingToken, Fingerprint, SavedResponse, StoreError};

/// What a [`claim`](IdempotencyStore::claim) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No live record had this key (or its holder's lease ran out): the
    /// caller holds it now, runs the request, then
    /// [`complete`](IdempotencyStore::complete)s or
    /// [`release`](IdempotencyStore::release)s it with `token`.
    Acquired {
        /// Proof of this claim for the fenced operations.
        token: FencingToken,
    },
    /// Another holder is running the same request under a live lease. The
    /// layer answers `409 Conflict` with `Retry-After`.
    InProgress {
        /// Time until the holder's lease ends: the latest moment the
        /// record is either completed or claimable again. The holder may
        /// finish much sooner; layers may cap the hint they send.
        retry_after: Duration,
    },
    /// The request ran already: replay this response.
    Completed(SavedResponse),
    /// The key is in use for a request with another fingerprint (running
    /// or finished). The layer answers `422 Unprocessable Content`.
    Mismatch,
}

/// Where idempotency records live: claim a key before running a request,
/// then save its response for every repeat, or release the key so that a
/// retry runs it again.
///
/// A record is named by a scope (a tenant, an API key: whatever keeps keys
/// of different clients apart) and the idempotency key, and remembers the
/// request's [`Fingerprint`].
///
/// # Contract
///
/// Every store, whatever its backend, guarantees the following; the
/// conformance suite (`idempotency::conformance`, feature `testing`) checks
/// each point.
///
/// - **One winner.** Of any number of concurrent claims of a free key
///   exactly one gets [`Claim::Acquired`]; the others get
///   [`Claim::InProgress`] until the holder finishes, then
///   [`Claim::Completed`] with the response it saved.
/// - **Leases.** A claim takes a lease (greater than zero, at most the
///   store's retention, else [`StoreError::InvalidLease`]). Every record in
///   progress has a lease deadline, so no record is ever an orphan that
///   nobody may reclaim. When a lease ends without completion, the next
///   claim with the same fingerprint acquires the record again under a new
///   generation (one winner, as above). [`renew`](Self::renew) moves the
///   deadline for long handlers.
/// - **Fencing.** [`complete`](Self::complete), [`release`](Self::release)
///   and [`renew`](Self::renew) succeed only if the token's generation is
///   the record's current one and the record is still in progress: a
///   holder that lost its record (re-claimed by another after its lease ran
///   out, or expired) gets [`StoreError::StaleToken`] and changes nothing.
///   A holder whose lease ran out but whose record nobody re-claimed may
///   still complete it: the request ran once, and its response is the one
///   to replay. A token is spent by `complete` or `release`.
/// - **Retention.** A completed record is replayed for the store's
///   retention (24 hours by default, as Stripe keeps keys) after its
///   completion, then forgotten: the next claim acquires it afresh. A
///   record in progress lives at least until its lease ends, and at least
///   the retention after its claim.
/// - **Mismatch.** A claim whose fingerprint differs from the record's gets
///   [`Claim::Mismatch`], whether the record is running, orphaned or
///   completed; nothing changes.
/// - **Errors are typed.** A backend failure is
///   [`StoreError::Unavailable`], never a silent success.
///
/// # Example
///
/// The path of a request through a store, as the HTTP layer takes it:
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use orch_resilience::idempotency::{
///     Claim, Fingerprint, IdempotencyStore, MemoryStore, ResponseStatus, SavedResponse,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store: std::sync::Arc<dyn IdempotencyStore> = std::sync::Arc::new(MemoryStore::default());
/// let fingerprint = Fingerprint::from_bytes([1; 32]); // SHA-256 of method, path, body
/// let key = "018f6b2e-7c1a-7000-8000-0000000000aa";
///
/// match store.claim("tenant-1", key, fingerprint, Duration::from_secs(30)).await? {
///     Claim::Acquired { token } => {
///         // Run the handler, then save what it answered.
///         let response = SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(b"created"));
///         store.complete(&token, response).await?;
///     }
///     other => panic!("a fresh key is acquired, got {other:?}"),
/// }
///
/// // The client retries: the handler does not run again.
/// let Claim::Completed(replay) = store.claim("tenant-1", key, fingerprint, Duration::from_secs(30)).await? else {
///     panic!("the retry replays");
/// };
/// assert_eq!(replay.status, ResponseStatus::Http(201));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` in `scope` for a request with `fingerprint`, holding it
    /// for `lease` if acquired. See [`Claim`] for the answers.
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError>;

    /// Saves `response` as the record's outcome, if `token` is the
    /// record's current claim and the record is in progress; the record is
    /// then replayed for the store's retention. Otherwise
    /// [`StoreError::StaleToken`] and nothing changes.
    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError>;

    /// Forgets the record, if `token` is its current claim and it is in
    /// progress, so that the next claim acquires it (the handler failed in
    /// a way the client may retry). Otherwise [`StoreError::StaleToken`].
    async fn release(&self, token: &FencingToken) -> Result<(), StoreError>;

    /// Moves the record's lease deadline to `lease` from now, if `token` is
    /// its current claim and it is in progress. Otherwise
    /// [`StoreError::StaleToken`]; a `lease` of zero or above the retention
    /// is [`StoreError::InvalidLease`].
    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError>;
}

// A layer generic over `S: IdempotencyStore` takes a shared store as it is.
#[async_trait]
impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        (**self).claim(scope, key, fingerprint, lease).await
    }

    async fn complete(&self, token: &FencingToken, response: SavedResponse) -> Result<(), StoreError> {
        (**self).complete(token, response).await
    }

    async fn release(&self, token: &FencingToken) -> Result<(), StoreError> {
        (**self).release(token).await
    }

    async fn renew(&self, token: &FencingToken, lease: Duration) -> Result<(), StoreError> {
        (**self).renew(token, lease).await
    }
}
