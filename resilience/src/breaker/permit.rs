//! Permits: what a caller holds between admission and the outcome.
//!
//! A permit is a [`Ticket`] and a way back to its breaker: a borrow
//! ([`BreakerPermit`]), a handle to the calling thread's lane
//! ([`OwnedBreakerPermit`], for `'static` futures), or, for the `tower`
//! service's calls that have nothing to give back when dropped, only the
//! breaker's id ([`CallPermit::Local`], found again through the
//! thread-local caches of [`local`]). Recording consumes the permit;
//! dropping it unrecorded records nothing and gives a half-open trial slot
//! back.

use std::{fmt, sync::Arc, time::Duration};

#[cfg(doc)]
use super::CircuitBreaker;
use super::{handle::Lane, local, shared::Shared, state::BreakerState, ticket::Ticket, window};
use crate::classify::Outcome;

/// A permission to make one call, borrowed from a [`CircuitBreaker`].
///
/// Report what the call did with [`record`](Self::record). Dropping the permit
/// without recording records nothing; a half-open trial permit dropped that
/// way gives its trial slot back, so a cancelled call neither counts nor uses
/// up a trial.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct BreakerPermit<'a> {
    pub(super) shared: &'a Shared,
    pub(super) ticket: Ticket,
}

/// A [`BreakerPermit`] that owns a handle to its breaker, for futures that
/// must be `'static` (the `tower` service uses it). Costs an `Arc` clone,
/// of a handle private to the calling thread's shard, so threads do not
/// contend on one reference count.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedBreakerPermit {
    pub(super) lane: Arc<Lane>,
    pub(super) ticket: Ticket,
}

/// The permit a call of the `tower` service holds until it completes.
pub(super) enum CallPermit {
    /// A half-open trial, or a permit reserved in `poll_ready`.
    Owned(OwnedBreakerPermit),
    /// Any other call: found again through the thread-local caches. Its
    /// drop has nothing to give back, so it needs no handle.
    Local { breaker: u64, ticket: Ticket },
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
    #[inline(always)]
    pub fn record(mut self, outcome: Outcome) {
        self.shared.on_outcome(&mut self.ticket, outcome, None);
    }

    /// [`record`](Self::record) with the call's duration measured by the
    /// caller, instead of the time since the permit was acquired.
    #[inline(always)]
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.shared.on_outcome(&mut self.ticket, outcome, Some(duration));
    }

    /// The state the call was admitted in: `Closed`, `HalfOpen` for a trial,
    /// or `MetricsOnly`; `None` for a disabled breaker's permit, which
    /// records nothing.
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.ticket.admitted_in()
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.shared.release(&mut self.ticket);
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.shared.config().name)
            .field("admitted_in", &self.ticket.admitted_in())
            .finish()
    }
}

// ===== impl OwnedBreakerPermit =====

impl OwnedBreakerPermit {
    /// Records what the call did; see [`BreakerPermit::record`].
    #[inline(always)]
    pub fn record(mut self, outcome: Outcome) {
        self.lane.shared.on_outcome(&mut self.ticket, outcome, None);
    }

    /// Records what the call did with its measured duration; see
    /// [`BreakerPermit::record_with_duration`].
    #[inline(always)]
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.lane
            .shared
            .on_outcome(&mut self.ticket, outcome, Some(duration));
    }

    /// The state the call was admitted in; see [`BreakerPermit::admitted_in`].
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.ticket.admitted_in()
    }

    /// The name of the breaker the permit belongs to.
    pub fn breaker_name(&self) -> &str {
        &self.lane.shared.config().name
    }

    /// Measures the call's duration from now (the service takes its permit
    /// in `poll_ready`, but the call starts in `call`).
    #[inline(always)]
    pub(super) fn restart_clock(&mut self) {
        self.ticket.start = self.lane.shared.start_time();
    }
}

impl Drop for OwnedBreakerPermit {
    #[inline(always)]
    fn drop(&mut self) {
        self.lane.shared.release(&mut self.ticket);
    }
}

impl fmt::Debug for OwnedBreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBreakerPermit")
            .field("breaker", &self.lane.shared.config().name)
            .field("admitted_in", &self.ticket.admitted_in())
            .finish()
    }
}

// ===== impl CallPermit =====

impl CallPermit {
    #[inline(always)]
    pub(super) fn record(self, outcome: Outcome) {
        match self {
            Self::Owned(permit) => permit.record(outcome),
            Self::Local { breaker, mut ticket } => {
                if outcome == Outcome::Success && ticket.success_needs_no_record(window::thread_seed()) {
                    return;
                }
                local::with_breaker(breaker, |shared| shared.on_outcome(&mut ticket, outcome, None));
            }
        }
    }
}
