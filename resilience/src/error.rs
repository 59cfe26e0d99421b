//! The one error type every layer of this crate returns.
//!
//! Layers nest (retry around a breaker around a timeout), and a stack of
//! per-layer error types (`RetryError<BreakerError<TimeoutError<E>>>`) is
//! unusable. So every layer returns [`ResilienceError`], and when a layer's
//! inner service already returns one, [`ResilienceError::from_inner`] passes it
//! through unchanged instead of wrapping it again. The service's own error is
//! kept as a [`BoxError`], as `tower` does, and can be downcast.

use std::{fmt, sync::Arc, time::Duration};

/// A type-erased error, as used across the `tower` ecosystem.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a resilience layer decided, or the error of the service it protects.
///
/// ```
/// use orch_resilience::{ErrorClass, ResilienceError};
///
/// let err = ResilienceError::from_inner(std::io::Error::other("connection reset"));
/// assert_eq!(err.class(), ErrorClass::Inner);
/// assert!(err.downcast_inner_ref::<std::io::Error>().is_some());
///
/// // An error that already is a `ResilienceError` is not wrapped again.
/// let again = ResilienceError::from_inner(err);
/// assert_eq!(again.class(), ErrorClass::Inner);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResilienceError {
    /// The circuit breaker rejected the call without touching the service.
    #[error("circuit breaker `{name}` rejected the call ({rejection}){}", RetryIn(*.remaining))]
    CircuitOpen {
        /// Name of the breaker.
        name: Arc<str>,
        /// Why the breaker is not admitting calls.
        rejection: CircuitRejection,
        /// How long until the breaker admits trial calls again, when known
        /// (not for a forced-open breaker or a half-open one whose trials are all taken).
        remaining: Option<Duration>,
    },
    /// A deadline passed before the service answered.
    #[error("{kind} timeout after {after:?}")]
    Timeout {
        /// Whether one attempt or the whole call (all attempts) ran out of time.
        kind: TimeoutKind,
        /// The configured limit that was exceeded.
        after: Duration,
    },
    /// The bulkhead had no free slot, and either its wait queue was full or
    /// the call waited in the queue for the maximum wait.
    #[error("bulkhead `{name}` is full ({max_concurrent} calls running; waited {waited:?})")]
    BulkheadFull {
        /// Name of the bulkhead.
        name: Arc<str>,
        /// The configured number of concurrent calls.
        max_concurrent: usize,
        /// How long the call waited for a slot (zero when the queue was full).
        waited: Duration,
    },
    /// The rate limiter has no permit now.
    #[error("rate limiter `{name}` rejected the call; next permit in {wait:?}")]
    RateLimited {
        /// Name of the rate limiter.
        name: Arc<str>,
        /// How long until a permit is available.
        wait: Duration,
    },
    /// The retry budget (or gRPC retry throttling) refused a retry; `last` is
    /// the error of the final attempt.
    #[error("retry budget exhausted after {attempts} attempt(s); last error: {last}")]
    BudgetExhausted {
        /// Attempts made, counting the first.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<ResilienceError>,
    },
    /// The last attempt failed with a retryable error, but the retry layer did
    /// not retry it; `reason` says why.
    #[error("not retried ({reason}) after {attempts} attempt(s); last error: {last}")]
    NotRetried {
        /// Why no further attempt was made.
        reason: NotRetriedReason,
        /// Attempts made, counting the first.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<ResilienceError>,
    },
    /// The protected service's own error.
    #[error(transparent)]
    Inner(BoxError),
}

/// Why an open or half-open breaker rejected a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitRejection {
    /// The breaker tripped and is waiting before it tries again.
    Open,
    /// The breaker is half-open and all its trial calls are in flight or used.
    HalfOpenFull,
    /// An operator forced the breaker open.
    ForcedOpen,
}

/// Which deadline a [`ResilienceError::Timeout`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// One attempt took too long (the retry layer may try again).
    Attempt,
    /// The whole call, across all attempts, took too long.
    Overall,
}

/// Why the retry layer gave up on a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotRetriedReason {
    /// The configured maximum number of attempts was reached.
    MaxAttempts,
    /// The next attempt could not finish before the overall deadline.
    DeadlineTooClose,
    /// The server asked not to retry (a negative or unparseable `grpc-retry-pushback-ms`).
    Pushback,
    /// The request is not safe to repeat (a non-idempotent method without an idempotency key).
    UnsafeRequest,
    /// The request body was larger than the configured buffer, so it was streamed once and
    /// cannot be replayed.
    BodyTooLarge,
}

/// The kind of a [`ResilienceError`], for matching without fields
/// (for example to choose when a fallback applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// [`ResilienceError::CircuitOpen`].
    CircuitOpen,
    /// [`ResilienceError::Timeout`] of either kind.
    Timeout,
    /// [`ResilienceError::BulkheadFull`].
    BulkheadFull,
    /// [`ResilienceError::RateLimited`].
    RateLimited,
    /// [`ResilienceError::BudgetExhausted`].
    BudgetExhausted,
    /// [`ResilienceError::NotRetried`].
    NotRetried,
    /// [`ResilienceError::Inner`].
    Inner,
}

impl ResilienceError {
    /// Converts an inner service's error. A `ResilienceError` (boxed or not) is
    /// returned as it is, so nested layers never wrap each other's errors.
    pub fn from_inner(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<ResilienceError>() {
            Ok(own) => *own,
            Err(other) => Self::Inner(other),
        }
    }

    /// The kind of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::CircuitOpen { .. } => ErrorClass::CircuitOpen,
            Self::Timeout { .. } => ErrorClass::Timeout,
            Self::BulkheadFull { .. } => ErrorClass::BulkheadFull,
            Self::RateLimited { .. } => ErrorClass::RateLimited,
            Self::BudgetExhausted { .. } => ErrorClass::BudgetExhausted,
            Self::NotRetried { .. } => ErrorClass::NotRetried,
            Self::Inner(_) => ErrorClass::Inner,
        }
    }

    /// True when a layer rejected the call locally, before it reached the
    /// service (open circuit, full bulkhead, rate limit).
    pub fn is_local_rejection(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen { .. } | Self::BulkheadFull { .. } | Self::RateLimited { .. }
        )
    }

    /// The error of the last attempt: for [`BudgetExhausted`](Self::BudgetExhausted)
    /// and [`NotRetried`](Self::NotRetried) the error they carry, otherwise `self`.
    pub fn last_attempt(&self) -> &ResilienceError {
        match self {
            Self::BudgetExhausted { last, .. } | Self::NotRetried { last, .. } => last.last_attempt(),
            other => other,
        }
    }

    /// The service's own error, looking through retry wrappers.
    pub fn inner(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self.last_attempt() {
            Self::Inner(inner) => Some(inner.as_ref()),
            _ => None,
        }
    }

    /// The service's own error as `T`, looking through retry wrappers.
    pub fn downcast_inner_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner()?.downcast_ref::<T>()
    }

    /// How long a caller should wait before trying again, when a layer knows:
    /// the remaining open time of a breaker or the wait for a rate-limit permit.
    /// Suits a `Retry-After` header on a 503 or 429.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.last_attempt() {
            Self::CircuitOpen { remaining, .. } => *remaining,
            Self::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

impl fmt::Display for CircuitRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::HalfOpenFull => "half-open, all trial calls taken",
            Self::ForcedOpen => "forced open",
        })
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Attempt => "attempt",
            Self::Overall => "overall",
        })
    }
}

impl fmt::Display for NotRetriedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MaxAttempts => "maximum attempts reached",
            Self::DeadlineTooClose => "next attempt would pass the overall deadline",
            Self::Pushback => "server pushback",
            Self::UnsafeRequest => "request is not safe to repeat",
            Self::BodyTooLarge => "request body too large to buffer for a replay",
        })
    }
}

/// Formats `; retry in 1.5s` when the remaining time is known.
struct RetryIn(Option<Duration>);

impl fmt::Display for RetryIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(remaining) => write!(f, "; retry in {remaining:?}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_resilience_errors_are_not_wrapped_twice() {
        let open = ResilienceError::RateLimited {
            name: "api".into(),
            wait: Duration::from_millis(5),
        };
        let boxed: BoxError = Box::new(open);
        let back = ResilienceError::from_inner(boxed);
        assert_eq!(back.class(), ErrorClass::RateLimited);
        assert_eq!(back.retry_after(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn last_attempt_looks_through_retry_wrappers() {
        let err = ResilienceError::NotRetried {
            reason: NotRetriedReason::MaxAttempts,
            attempts: 3,
            last: Box::new(ResilienceError::from_inner(std::io::Error::other("reset"))),
        };
        assert_eq!(err.last_attempt().class(), ErrorClass::Inner);
        assert!(err.downcast_inner_ref::<std::io::Error>().is_some());
        assert_eq!(
            err.to_string(),
            "not retried (maximum attempts reached) after 3 attempt(s); last error: reset"
        );
    }

    #[test]
    fn circuit_open_message_names_breaker_and_remaining_time() {
        let err = ResilienceError::CircuitOpen {
            name: "payments".into(),
            rejection: CircuitRejection::Open,
            remaining: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            err.to_string(),
            "circuit breaker `payments` rejected the call (open); retry in 2s"
        );
    }
}
