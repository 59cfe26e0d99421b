//! Where the autoscaler's numbers come from.
//!
//! A source answers with a [`Reading`]: a value with the instant it was
//! measured, or that it has none. Missing is a state the policies know how
//! to treat (hold, never scale down on it), not an error that stops the
//! autoscaler; a value older than the autoscaler's `max_sample_age` is
//! treated the same way.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

/// What a [`MetricSource`] can tell right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A value, measured at `at` (tokio's clock, so paused-time tests see
    /// samples age with simulated time).
    Sample {
        /// The measured value.
        value: f64,
        /// When it was measured.
        at: Instant,
    },
    /// No value now; `reason` goes into the decision record.
    Missing {
        /// Why there is no value (a broker unreachable, nothing measured yet).
        reason: String,
    },
}

impl Reading {
    /// A value measured now.
    pub fn now(value: f64) -> Self {
        Self::Sample {
            value,
            at: Instant::now(),
        }
    }

    /// No value, for `reason`.
    pub fn missing(reason: impl Into<String>) -> Self {
        Self::Missing {
            reason: reason.into(),
        }
    }
}

/// A signal the autoscaler samples once per evaluation: a queue's depth,
/// requests in flight per replica, a broker's pending count.
///
/// Implementations should answer quickly (the autoscaler samples its
/// sources concurrently, each evaluation waits for all of them) and turn
/// their own failures into [`Reading::Missing`] with a reason.
///
/// ```
/// use orch_core::autoscale::{MetricSource, Reading};
///
/// struct Constant(f64);
///
/// #[async_trait::async_trait]
/// impl MetricSource for Constant {
///     async fn sample(&self) -> Reading {
///         Reading::now(self.0)
///     }
/// }
/// ```
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// The current value, or why there is none.
    async fn sample(&self) -> Reading;
}

#[async_trait]
impl<S: MetricSource + ?Sized> MetricSource for Arc<S> {
    async fn sample(&self) -> Reading {
        (**self).sample().await
    }
}

/// A [`MetricSource`] made of a closure that returns the value now, or
/// `None` when there is none: a gauge kept in an atomic, a length read
/// under a lock.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// use orch_core::autoscale::source_fn;
///
/// let pending = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&pending);
/// let source = source_fn(move || Some(seen.load(Ordering::Relaxed) as f64));
/// # let _ = source;
/// ```
pub fn source_fn<F>(read: F) -> FnSource<F>
where
    F: Fn() -> Option<f64> + Send + Sync,
{
    FnSource { read }
}

/// The [`MetricSource`] returned by [`source_fn`].
#[derive(Clone)]
pub struct FnSource<F> {
    read: F,
}

impl<F> std::fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSource").finish_non_exhaustive()
    }
}

#[async_trait]
impl<F> MetricSource for FnSource<F>
where
    F: Fn() -> Option<f64> + Send + Sync,
{
    async fn sample(&self) -> Reading {
        match (self.read)() {
            Some(value) => Reading::now(value),
            None => Reading::missing("the closure had no value"),
        }
    }
}
