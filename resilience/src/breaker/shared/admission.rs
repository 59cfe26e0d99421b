//! Admission: whether a call may be made, and the ticket it is made on.
//!
//! A closed (or metrics-only) breaker admits with one load of the state
//! word, plus a clock read with slow-call detection; that part is inlined
//! into the caller. Everything else (the open wait, the half-open trial
//! slots, forced-open and disabled) is out of line, so the inlined part
//! stays small, and turning a rejection into an error (counted, logged,
//! measured) is cold. A permit dropped without an outcome comes back here to
//! give its half-open trial slot back.

use std::{sync::atomic::Ordering, time::Duration};

use super::Shared;
use crate::{
    breaker::{
        state::{BreakerState, StateWord, TransitionReason},
        ticket::Ticket,
    },
    error::{CircuitRejection, ResilienceError},
    shard,
};

impl Shared {
    /// A ticket for one call, or a rejection encoded as a ticket (see
    /// [`Ticket::rejection`]): two words returned in registers, so the
    /// admitted path never goes through memory.
    #[inline(always)]
    pub(in crate::breaker) fn acquire(&self) -> Ticket {
        let word = self.load_packed_state();
        if Ticket::records_in_window(word) {
            return Ticket::from_packed(word, self.start_time());
        }
        self.acquire_slow(StateWord::unpack(word))
    }

    /// [`acquire`](Self::acquire) for the `tower` service's calls, whose
    /// ticket is marked when the calling thread's window is clean, so that a
    /// success completed on the same thread is settled without recording
    /// (see [`Ticket::mark_clean`]).
    #[inline(always)]
    pub(in crate::breaker) fn acquire_ticket(&self) -> Ticket {
        let word = self.load_packed_state();
        if !Ticket::records_in_window(word) {
            return self.acquire_slow(StateWord::unpack(word));
        }
        if !self.settings().clean_tickets {
            return Ticket::from_packed(word, self.start_time());
        }
        // No slow-call detection, so no start time.
        let mut ticket = Ticket::from_packed(word, 0);
        let seed = shard::thread_seed();
        if self.hot.shards.at(seed).is_clean(ticket.epoch()) {
            ticket.mark_clean(seed);
        }
        ticket
    }

    #[inline(never)]
    fn acquire_slow(&self, mut word: StateWord) -> Ticket {
        // Each turn either returns or follows a transition, made here or by
        // another thread, so the loop ends.
        loop {
            match word.state {
                BreakerState::Closed | BreakerState::MetricsOnly => {
                    return Ticket::new(word, self.start_time());
                }
                BreakerState::Disabled => {
                    return Ticket::settled(word.epoch);
                }
                BreakerState::ForcedOpen => return Ticket::rejection(CircuitRejection::ForcedOpen, None),
                BreakerState::Open => {
                    let now = self.now_nanos();
                    let until = self.hot.open_until.load(Ordering::Relaxed);
                    if now < until {
                        let remaining = Duration::from_nanos(until - now);
                        return Ticket::rejection(CircuitRejection::Open, Some(remaining));
                    }
                    self.transition(
                        Some(word),
                        BreakerState::HalfOpen,
                        TransitionReason::OpenWaitElapsed,
                        Some(now),
                        None,
                    );
                }
                BreakerState::HalfOpen => {
                    if let Some(ticket) = self.acquire_trial(word) {
                        return ticket;
                    }
                }
            }
            word = self.load_state();
        }
    }

    /// Takes a trial slot of the half-open state `word` (or is rejected);
    /// `None` when the state changed meanwhile.
    fn acquire_trial(&self, word: StateWord) -> Option<Ticket> {
        if self.half_open_expired(word) {
            return None;
        }
        let permits = self.settings().half_open_permits;
        let mut trials = self.trials.load(Ordering::Acquire);
        loop {
            if (trials >> 32) as u32 != word.epoch {
                return None;
            }
            if trials as u32 >= permits {
                return Some(Ticket::rejection(CircuitRejection::HalfOpenFull, None));
            }
            // The compare-and-swap on (epoch, taken) is what makes "exactly
            // `half_open_permits`" hold under any number of racing callers.
            match self
                .trials
                .compare_exchange_weak(trials, trials + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Ticket::new(word, self.start_time())),
                Err(actual) => trials = actual,
            }
        }
    }

    /// Opens the half-open breaker `word` again if it has waited
    /// `max_half_open_wait` without a decision; true if the state is no longer `word`.
    fn half_open_expired(&self, word: StateWord) -> bool {
        let Some(max) = self.settings().max_half_open_wait else {
            return false;
        };
        let now = self.now_nanos();
        let since = self.hot.half_open_since.load(Ordering::Relaxed);
        if Duration::from_nanos(now.saturating_sub(since)) < max {
            return false;
        }
        self.transition(
            Some(word),
            BreakerState::Open,
            TransitionReason::MaxHalfOpenWait,
            Some(now),
            None,
        );
        true
    }

    /// Gives back the trial slot of a permit that records nothing.
    #[inline(always)]
    pub(in crate::breaker) fn release(&self, ticket: &mut Ticket) {
        if ticket.settle() == Some(BreakerState::HalfOpen) {
            self.release_trial(ticket.epoch());
        }
    }

    #[inline(never)]
    pub(super) fn release_trial(&self, epoch: u32) {
        let mut trials = self.trials.load(Ordering::Acquire);
        while (trials >> 32) as u32 == epoch && trials as u32 > 0 {
            match self
                .trials
                .compare_exchange_weak(trials, trials - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => trials = actual,
            }
        }
    }

    /// The error for a rejection ticket; counts, logs and measures it.
    #[cold]
    #[inline(never)]
    pub(in crate::breaker) fn reject(&self, ticket: Ticket) -> ResilienceError {
        let (rejection, remaining) = ticket.rejected();
        self.local_shard().count_rejection();
        let reason = match rejection {
            CircuitRejection::Open => "open",
            CircuitRejection::HalfOpenFull => "half_open_full",
            _ => "forced_open",
        };
        tracing::debug!(
            name = %self.config.name,
            reason,
            remaining_ms = remaining.map(|r| r.as_millis() as u64),
            "circuit breaker rejected a call"
        );
        metrics::counter!(
            "orch_breaker_rejections_total",
            "name" => self.config.name.clone(),
            "reason" => reason,
        )
        .increment(1);
        ResilienceError::CircuitOpen {
            name: self.config.name.clone(),
            rejection,
            remaining,
        }
    }
}
