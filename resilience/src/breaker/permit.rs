//! Permits: what a caller holds between admission and the outcome.
//!
//! A permit is an [`Admission`] (the phase the call was admitted in and
//! when it started) and a way back to its breaker: a borrow
//! ([`BreakerPermit`]) or a clone of the calling thread's shard handle
//! ([`OwnedBreakerPermit`], for `'static` futures such as the `tower`
//! service's). Recording consumes the admission; a permit dropped with its
//! admission unrecorded records nothing and gives a half-open trial slot back.

use std::{fmt, sync::Arc, time::Duration};

#[cfg(doc)]
use super::CircuitBreaker;
use super::{
    state::{BreakerState, Phase},
    state_machine::StateMachine,
};
use crate::{classify::Outcome, shard::ShardHandle};

/// What admission decided for one call: plain data, copied into the permit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admission {
    /// The state and epoch the call was admitted in.
    pub(super) phase: Phase,
    /// When the call started, in nanoseconds since the breaker's origin;
    /// read only with slow-call detection (0 without, and no clock read).
    pub(super) started: u64,
}

impl Admission {
    /// The state the call's outcome counts in; `None` for a disabled
    /// breaker's call, which records nothing.
    pub(super) fn admitted_in(&self) -> Option<BreakerState> {
        (self.phase.state != BreakerState::Disabled).then_some(self.phase.state)
    }
}

/// A permission to make one call, borrowed from a [`CircuitBreaker`].
///
/// Report what the call did with [`record`](Self::record). Dropping the permit
/// without recording records nothing; a half-open trial permit dropped that
/// way gives its trial slot back, so a cancelled call neither counts nor uses
/// up a trial.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct BreakerPermit<'a> {
    pub(super) breaker: &'a StateMachine,
    /// `None` once recorded.
    pub(super) admission: Option<Admission>,
}

/// A [`BreakerPermit`] that owns a handle to its breaker, for futures that
/// must be `'static`.
///
/// The handle is a clone of the calling thread's shard handle: an `Arc` whose
/// reference count lives on a cache line of that thread's shard, so threads
/// sharing a breaker do not write one reference count.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedBreakerPermit {
    pub(super) breaker: Arc<ShardHandle<StateMachine>>,
    /// `None` once recorded.
    pub(super) admission: Option<Admission>,
}

// ===== impl BreakerPermit =====

impl BreakerPermit<'_> {
    /// Records what the call did: a failure ([`Outcome::is_failure`]) or a
    /// success counts in the window (or the trials); [`Outcome::Rejected`]
    /// records nothing, as if the permit were dropped. With slow-call
    /// detection, the call's duration is the time since the permit was
    /// acquired.
    ///
    /// An outcome is stale, and not counted, when the breaker has changed
    /// state since the permit was acquired.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(admission) = self.admission.take() {
            self.breaker.record(admission, outcome, None);
        }
    }

    /// [`record`](Self::record) with the call's duration measured by the
    /// caller, instead of the time since the permit was acquired.
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        if let Some(admission) = self.admission.take() {
            self.breaker.record(admission, outcome, Some(duration));
        }
    }

    /// The state the call was admitted in: `Closed`, `HalfOpen` for a trial,
    /// or `MetricsOnly`; `None` for a disabled breaker's permit, which
    /// records nothing.
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.admission.and_then(|a| a.admitted_in())
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.breaker.release(admission);
        }
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.breaker.config.name)
            .field("admitted_in", &self.admitted_in())
            .finish()
    }
}

// ===== impl OwnedBreakerPermit =====

impl OwnedBreakerPermit {
    /// Records what the call did; see [`BreakerPermit::record`].
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.record_once(outcome);
    }

    /// Records what the call did with its measured duration; see
    /// [`BreakerPermit::record_with_duration`].
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        if let Some(admission) = self.admission.take() {
            self.breaker.record(admission, outcome, Some(duration));
        }
    }

    /// The state the call was admitted in; see [`BreakerPermit::admitted_in`].
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.admission.and_then(|a| a.admitted_in())
    }

    /// The name of the breaker the permit belongs to.
    pub fn breaker_name(&self) -> &str {
        &self.breaker.config.name
    }

    /// Records the outcome unless one was recorded already: for the `tower`
    /// service's response future, which holds the permit in place.
    #[inline]
    pub(super) fn record_once(&mut self, outcome: Outcome) {
        if let Some(admission) = self.admission.take() {
            self.breaker.record(admission, outcome, None);
        }
    }

    /// Measures the call's duration from now (the service reserves a trial
    /// in `poll_ready`, but the call starts in `call`).
    pub(super) fn restart_clock(&mut self) {
        if let Some(admission) = &mut self.admission {
            admission.started = self.breaker.call_start();
        }
    }
}

impl Drop for OwnedBreakerPermit {
    #[inline]
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.breaker.release(admission);
        }
    }
}

impl fmt::Debug for OwnedBreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBreakerPermit")
            .field("breaker", &self.breaker.config.name)
            .field("admitted_in", &self.admitted_in())
            .finish()
    }
}
