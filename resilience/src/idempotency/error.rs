//! Why a store operation did not do what was asked.
//!
//! A store error must never lose a request silently: the HTTP layer turns
//! [`StoreError::Unavailable`] and [`StoreError::Full`] into `503` with
//! `Retry-After` (or, by configuration, lets the request through
//! unprotected), and treats [`StoreError::StaleToken`] as "this holder lost
//! the record".

use std::time::Duration;

use crate::BoxError;

/// The limit a full store ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capacity {
    /// The number of records.
    Records,
    /// The bytes that records and saved responses hold.
    Bytes,
}

/// An idempotency store operation that failed.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::idempotency::StoreError;
///
/// let err = StoreError::unavailable("connection refused").with_retry_after(Duration::from_secs(1));
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// assert!(err.to_string().contains("connection refused"));
/// assert!(StoreError::StaleToken.is_stale());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or failed (connection refused, a
    /// timeout, a server error). Nothing is known to have changed. The
    /// layer answers `503` with `Retry-After`.
    #[error("idempotency store unavailable: {source}")]
    Unavailable {
        /// When trying again makes sense, if the backend said so.
        retry_after: Option<Duration>,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The store holds as much as it may and nothing it holds may be
    /// evicted yet (records in progress, saved responses within their
    /// retention). The layer answers `503` with `Retry-After`.
    #[error("idempotency store full: {capacity:?} limit {limit} reached")]
    Full {
        /// Which limit was reached.
        capacity: Capacity,
        /// The limit's value (of the part of the store that was full).
        limit: usize,
        /// When the next record the store could free expires, if known.
        retry_after: Option<Duration>,
    },
    /// The token's claim is no longer the record's current one: its lease
    /// ran out and another claim took the record, the record was completed
    /// or released with it already, or the record expired. Nothing was
    /// changed.
    #[error("fencing token is stale: the record was re-claimed, finished or expired")]
    StaleToken,
    /// A lease of zero, or longer than the store's retention (a record
    /// must not outlive its retention by its lease alone).
    #[error("invalid lease {lease:?}: must be greater than zero and at most {max:?}")]
    InvalidLease {
        /// The lease asked for.
        lease: Duration,
        /// The longest lease the store grants.
        max: Duration,
    },
    /// A response larger than the store saves. The record stays in
    /// progress; the holder should release it.
    #[error("response of {size} bytes is larger than the {max} bytes the store saves")]
    ResponseTooLarge {
        /// The response's [`size`](super::SavedResponse::size).
        size: usize,
        /// The largest response the store saves.
        max: usize,
    },
}

impl StoreError {
    /// An [`Unavailable`](Self::Unavailable) error caused by `source`.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            retry_after: None,
            source: source.into(),
        }
    }

    /// Sets the retry hint of an [`Unavailable`](Self::Unavailable) or
    /// [`Full`](Self::Full) error; other errors are returned unchanged.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        if let Self::Unavailable { retry_after, .. } | Self::Full { retry_after, .. } = &mut self {
            *retry_after = Some(after);
        }
        self
    }

    /// When trying again makes sense, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::Full { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the error is [`StaleToken`](Self::StaleToken).
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::StaleToken)
    }

    /// [`InvalidLease`](Self::InvalidLease) unless `lease` is above zero
    /// and at most `max`: the check every store makes before a claim or a
    /// renewal.
    pub(super) fn check_lease(lease: Duration, max: Duration) -> Result<(), Self> {
        if lease.is_zero() || lease > max {
            return Err(Self::InvalidLease { lease, max });
        }
        Ok(())
    }

    /// [`ResponseTooLarge`](Self::ResponseTooLarge) if `response` is larger
    /// than `max` bytes: the check every store makes before a completion.
    pub(super) fn check_size(response: &super::SavedResponse, max: usize) -> Result<(), Self> {
        let size = response.size();
        if size > max {
            return Err(Self::ResponseTooLarge { size, max });
        }
        Ok(())
    }
}
