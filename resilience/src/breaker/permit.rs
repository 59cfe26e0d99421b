//! Permits: what a caller holds between admission and the outcome.
//!
//! A permit is a [`Ticket`] and a way back to its breaker: a borrow
//! ([`BreakerPermit`]), a handle to the calling thread's lane
//! ([`OwnedBreakerPermit`], for `'static` futures), or, for the `tower`
//! service's calls, only the breaker's id ([`CallPermit`], found again
//! through the thread-local caches of [`local`]). Recording consumes the
//! permit; dropping it unrecorded records nothing and gives a half-open
//! trial slot back.

use std::{fmt, sync::Arc, time::Duration};

#[cfg(doc)]
use super::CircuitBreaker;
use super::{local, shared::Shared, state::BreakerState, ticket::Ticket};
use crate::{
    classify::Outcome,
    shard::{self, Lane},
};

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
/// must be `'static` (the `tower` service reserves its half-open trials with
/// it). Costs an `Arc` clone, of a handle private to the calling thread's
/// shard, so threads do not contend on one reference count.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedBreakerPermit {
    pub(super) lane: Arc<Lane<Shared>>,
    pub(super) ticket: Ticket,
}

/// The permit a call of the `tower` service holds until it completes: the
/// breaker's id, by which the thread that records the outcome (or gives a
/// half-open trial slot back) finds the breaker in its thread-local cache.
///
/// Plain data whose drop tests one byte: the response future's drop glue
/// stays small enough to be inlined, so the compiler sees that a completed
/// call's future holds nothing and keeps it out of memory.
pub(super) struct CallPermit {
    breaker: u64,
    ticket: Ticket,
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
        self.lane.on_outcome(&mut self.ticket, outcome, None);
    }

    /// Records what the call did with its measured duration; see
    /// [`BreakerPermit::record_with_duration`].
    #[inline(always)]
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.lane.on_outcome(&mut self.ticket, outcome, Some(duration));
    }

    /// The state the call was admitted in; see [`BreakerPermit::admitted_in`].
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.ticket.admitted_in()
    }

    /// The name of the breaker the permit belongs to.
    pub fn breaker_name(&self) -> &str {
        &self.lane.config().name
    }

    /// Measures the call's duration from now (the service takes its permit
    /// in `poll_ready`, but the call starts in `call`).
    #[inline(always)]
    pub(super) fn restart_clock(&mut self) {
        self.ticket.start = self.lane.start_time();
    }

    /// The ticket, for a [`CallPermit`] to carry on; this permit is settled,
    /// so its drop gives nothing back.
    pub(super) fn into_ticket(mut self) -> Ticket {
        let ticket = self.ticket;
        self.ticket.settle();
        ticket
    }
}

impl Drop for OwnedBreakerPermit {
    #[inline(always)]
    fn drop(&mut self) {
        self.lane.release(&mut self.ticket);
    }
}

impl fmt::Debug for OwnedBreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBreakerPermit")
            .field("breaker", &self.lane.config().name)
            .field("admitted_in", &self.ticket.admitted_in())
            .finish()
    }
}

// ===== impl CallPermit =====

impl CallPermit {
    #[inline(always)]
    pub(super) fn new(breaker: u64, ticket: Ticket) -> Self {
        Self { breaker, ticket }
    }

    /// Records what the call did (see [`BreakerPermit::record`]).
    #[inline(always)]
    pub(super) fn record(mut self, outcome: Outcome) {
        if outcome == Outcome::Success && self.ticket.success_needs_no_record(shard::thread_seed()) {
            // A clean ticket is a closed (or metrics-only) call's: dropping
            // it gives nothing back.
            return;
        }
        let ticket = self.ticket;
        // Recorded (or given back) below: nothing is left for the drop.
        self.ticket.settle();
        record_by_id(self.breaker, ticket, outcome);
    }
}

impl Drop for CallPermit {
    #[inline(always)]
    fn drop(&mut self) {
        if self.ticket.admitted_in() == Some(BreakerState::HalfOpen) {
            release_by_id(self.breaker, self.ticket);
        }
    }
}

// Out of line, so that the response future's `poll` and drop, which are
// inlined into their caller, hold only the path of a closed call. Tickets
// are passed by value: a pointer into the future would keep it in memory.
#[inline(never)]
fn record_by_id(breaker: u64, mut ticket: Ticket, outcome: Outcome) {
    local::with_breaker(breaker, |shared| shared.on_outcome(&mut ticket, outcome, None));
}

#[cold]
#[inline(never)]
fn release_by_id(breaker: u64, mut ticket: Ticket) {
    local::with_breaker(breaker, |shared| shared.release(&mut ticket));
}
