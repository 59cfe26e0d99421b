//! Admission: whether a call may be made.
//!
//! A closed (or metrics-only) breaker admits with one load of the phase,
//! plus a clock read with slow-call detection. Everything else (the open
//! wait, the half-open trial slots, forced-open and disabled) is in
//! `admit_other`, and turning a rejection into an error (counted, logged,
//! measured) in `reject`. A permit dropped without an outcome comes back
//! here to give its half-open trial slot back.

use std::{sync::atomic::Ordering, time::Duration};

use super::StateMachine;
use crate::{
    breaker::{
        permit::Admission,
        state::{BreakerState, Phase, TransitionReason, pack, unpack},
    },
    error::{CircuitRejection, ResilienceError},
};

impl StateMachine {
    /// Admits one call, or rejects it.
    #[inline]
    pub(in crate::breaker) fn admit(&self) -> Result<Admission, ResilienceError> {
        let phase = self.phase();
        if phase.state.records_in_window() {
            return Ok(Admission {
                phase,
                started: self.call_start(),
            });
        }
        self.admit_other(phase)
    }

    fn admit_other(&self, mut phase: Phase) -> Result<Admission, ResilienceError> {
        // Each turn either returns or follows a transition, made here or by
        // another thread, so the loop ends.
        loop {
            match phase.state {
                BreakerState::Closed | BreakerState::MetricsOnly | BreakerState::Disabled => {
                    return Ok(Admission {
                        phase,
                        started: self.call_start(),
                    });
                }
                BreakerState::ForcedOpen => return Err(self.reject(CircuitRejection::ForcedOpen, None)),
                BreakerState::Open => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Relaxed);
                    if now < until {
                        let remaining = Duration::from_nanos(until - now);
                        return Err(self.reject(CircuitRejection::Open, Some(remaining)));
                    }
                    self.transition(
                        |current| current == phase,
                        BreakerState::HalfOpen,
                        TransitionReason::OpenWaitElapsed,
                        None,
                    );
                }
                BreakerState::HalfOpen => {
                    if let Some(admitted) = self.admit_trial(phase) {
                        return admitted;
                    }
                }
            }
            phase = self.phase();
        }
    }

    /// Takes a trial slot of the half-open `phase` (or is rejected); `None`
    /// when the phase is over.
    fn admit_trial(&self, phase: Phase) -> Option<Result<Admission, ResilienceError>> {
        if self.half_open_expired(phase) {
            return None;
        }
        // The compare-and-swap on (epoch, taken) is what makes "exactly
        // `half_open_permits`" hold under any number of racing callers.
        let permits = self.config.half_open_permits;
        match self.update_trial_slots(phase.epoch, |taken| (taken < permits).then(|| taken + 1)) {
            Ok(_) => Some(Ok(Admission {
                phase,
                started: self.call_start(),
            })),
            // Another thread ended the half-open phase meanwhile.
            Err(word) if unpack(word).0 != phase.epoch => None,
            Err(_) => Some(Err(self.reject(CircuitRejection::HalfOpenFull, None))),
        }
    }

    /// Opens the half-open `phase` again if it has waited
    /// `max_half_open_wait` without a decision; true if the phase is over.
    fn half_open_expired(&self, phase: Phase) -> bool {
        let Some(max) = self.config.max_half_open_wait else {
            return false;
        };
        let now = self.now_nanos();
        let since = self.half_open_since.load(Ordering::Relaxed);
        if Duration::from_nanos(now.saturating_sub(since)) < max {
            return false;
        }
        self.transition(
            |current| current == phase,
            BreakerState::Open,
            TransitionReason::MaxHalfOpenWait,
            None,
        );
        true
    }

    /// Forgets a call that records nothing, giving back its trial slot.
    #[inline]
    pub(in crate::breaker) fn release(&self, admission: Admission) {
        if admission.phase.state == BreakerState::HalfOpen {
            self.give_back_trial(admission.phase.epoch);
        }
    }

    /// Out of line (not generic, not `#[inline]`), so that `release`, which
    /// every permit's drop inlines, stays one comparison (`breaker/orch
    /// permit`: 8.3 ns with the slot update inlined, 2.6 ns without).
    fn give_back_trial(&self, epoch: u32) {
        let _ = self.update_trial_slots(epoch, |taken| taken.checked_sub(1));
    }

    /// Changes the number of trial slots taken in `epoch` with `change`
    /// (`None`: no change); the word as it was, `Err` when unchanged.
    fn update_trial_slots(&self, epoch: u32, change: impl Fn(u32) -> Option<u32>) -> Result<u64, u64> {
        self.trial_slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let (slots_epoch, taken) = unpack(word);
                change(taken)
                    .filter(|_| slots_epoch == epoch)
                    .map(|n| pack(epoch, n))
            })
    }

    /// The error for a rejected call; counts, logs and measures it.
    fn reject(&self, rejection: CircuitRejection, remaining: Option<Duration>) -> ResilienceError {
        self.shards.local().count_rejection();
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
