//! Permits: what a caller holds between admission and the outcome.
//!
//! A permit is an [`Admission`] (the phase the call was admitted in and
//! when it started) and a way back to its breaker: a borrow
//! ([`BreakerPermit`]) or a clone of the calling thread's shard handle
//! ([`OwnedBreakerPermit`], for `'static` futures such as the `tower`
//! service's). Recording consumes the admission; a permit dropped with its
//! admission unrecorded records nothing and gives a half-open trial slot back.

use std::{fmt, ops::Deref, sync::Arc, time::Duration};

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
pub struct BreakerPermit<'a>(pub(super) Permit<&'a StateMachine>);

/// A [`BreakerPermit`] that owns a handle to its breaker, for futures that
/// must be `'static`.
///
/// The handle is a clone of the calling thread's shard handle: an `Arc` whose
/// reference count lives on a cache line of that thread's shard, so threads
/// sharing a breaker do not write one reference count.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedBreakerPermit(pub(super) Permit<Arc<ShardHandle<StateMachine>>>);

/// What both permits are: a way back to the breaker (`B` derefs, once or
/// through a shard handle, to its state machine) and the admission, `None`
/// once recorded.
pub(super) struct Permit<B: Machine> {
    pub(super) breaker: B,
    pub(super) admission: Option<Admission>,
}

impl<B: Machine> Permit<B> {
    pub(super) fn new(breaker: B, admission: Admission) -> Self {
        let admission = Some(admission);
        Self { breaker, admission }
    }

    /// Records the outcome unless one was recorded already; `duration` is
    /// the caller's measure, `None` for the time since admission.
    #[inline]
    pub(super) fn record(&mut self, outcome: Outcome, duration: Option<Duration>) {
        if let Some(admission) = self.admission.take() {
            self.breaker.machine().record(admission, outcome, duration);
        }
    }

    fn admitted_in(&self) -> Option<BreakerState> {
        self.admission.and_then(|a| a.admitted_in())
    }

    fn fmt(&self, f: &mut fmt::Formatter<'_>, type_name: &str) -> fmt::Result {
        f.debug_struct(type_name)
            .field("breaker", &self.breaker.machine().config.name)
            .field("admitted_in", &self.admitted_in())
            .finish()
    }
}

impl<B: Machine> Drop for Permit<B> {
    #[inline]
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.breaker.machine().release(admission);
        }
    }
}

/// A permit's way back to its state machine.
pub(super) trait Machine {
    fn machine(&self) -> &StateMachine;
}

impl Machine for &StateMachine {
    #[inline]
    fn machine(&self) -> &StateMachine {
        self
    }
}

impl Machine for Arc<ShardHandle<StateMachine>> {
    #[inline]
    fn machine(&self) -> &StateMachine {
        self.deref()
    }
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
        self.0.record(outcome, None);
    }

    /// [`record`](Self::record) with the call's duration measured by the
    /// caller, instead of the time since the permit was acquired.
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.0.record(outcome, Some(duration));
    }

    /// The state the call was admitted in: `Closed`, `HalfOpen` for a trial,
    /// or `MetricsOnly`; `None` for a disabled breaker's permit, which
    /// records nothing.
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.0.admitted_in()
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f, "BreakerPermit")
    }
}

// ===== impl OwnedBreakerPermit =====

impl OwnedBreakerPermit {
    /// Records what the call did; see [`BreakerPermit::record`].
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.0.record(outcome, None);
    }

    /// Records what the call did with its measured duration; see
    /// [`BreakerPermit::record_with_duration`].
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.0.record(outcome, Some(duration));
    }

    /// The state the call was admitted in; see [`BreakerPermit::admitted_in`].
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.0.admitted_in()
    }

    /// The name of the breaker the permit belongs to.
    pub fn breaker_name(&self) -> &str {
        &self.0.breaker.config.name
    }

    /// Measures the call's duration from now (the service reserves a trial
    /// in `poll_ready`, but the call starts in `call`).
    pub(super) fn restart_clock(&mut self) {
        if let Some(admission) = &mut self.0.admission {
            admission.started = self.0.breaker.call_start();
        }
    }
}

impl fmt::Debug for OwnedBreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f, "OwnedBreakerPermit")
    }
}
