//! Transitions: moving the breaker between states, each once.
//!
//! A transition takes the control lock and checks the phase it starts from,
//! so racing threads make it once; it writes what the new state needs (the
//! open deadline, the trial slots, the window's epoch) before publishing the
//! new phase, and is announced (`tracing` event, metrics) only after the
//! lock is released; subscribers get it under the lock, in order. The
//! operator's mode switches are transitions too.

use std::sync::{MutexGuard, PoisonError, atomic::Ordering};

use super::{Control, StateMachine};
use crate::breaker::{
    BreakerTransition,
    state::{BreakerState, Phase, TransitionReason, pack},
    window::Totals,
};

impl StateMachine {
    pub(super) fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Transitions leave `Control` consistent at every step; poison is ignored.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` if `from` accepts the current phase; returns whether it
    /// did. A caller that saw a phase passes `|current| current == seen`,
    /// so each transition happens once however many threads ask for it.
    pub(in crate::breaker) fn transition(
        &self,
        from: impl FnOnce(Phase) -> bool,
        to: BreakerState,
        reason: TransitionReason,
        totals: Option<Totals>,
    ) -> bool {
        let mut control = self.lock_control();
        let current = self.phase();
        if !from(current) {
            return false;
        }
        let now = self.now_nanos();
        let made = self.transition_locked(&mut control, current, to, reason, now, totals);
        drop(control);
        self.announce(&made);
        true
    }

    /// Makes the transition from `current` at `now`; the caller holds the
    /// control lock, and announces the returned transition once it has
    /// released it (so a `tracing` subscriber or metrics recorder that looks
    /// at the breaker cannot deadlock on the lock).
    pub(super) fn transition_locked(
        &self,
        control: &mut Control,
        current: Phase,
        to: BreakerState,
        reason: TransitionReason,
        now: u64,
        totals: Option<Totals>,
    ) -> BreakerTransition {
        let next = current.next(to);
        let mut open_wait = None;
        match to {
            BreakerState::Open => {
                control.openings = control.openings.saturating_add(1);
                control.reopens = if current.state == BreakerState::HalfOpen {
                    control.reopens.saturating_add(1)
                } else {
                    0
                };
                let wait = self.config.open_wait_after(control.reopens);
                let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.open_until
                    .store(now.saturating_add(wait_nanos), Ordering::Relaxed);
                open_wait = Some(wait);
            }
            BreakerState::HalfOpen => {
                control.trials = Totals::default();
                self.trial_slots.store(pack(next.epoch, 0), Ordering::Relaxed);
                self.half_open_since.store(now, Ordering::Relaxed);
            }
            BreakerState::Closed | BreakerState::MetricsOnly => {
                // Shard windows and the failure streak are tagged with their
                // epoch and empty themselves when next touched.
                if to == BreakerState::Closed {
                    control.reopens = 0;
                }
                self.window_epoch.store(next.epoch, Ordering::Relaxed);
                self.exceeded.store(false, Ordering::Relaxed);
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        // Release: publishes the fields written above with the new phase.
        self.phase.store(next.pack(), Ordering::Release);
        let made = BreakerTransition {
            name: self.config.name.clone(),
            from: current.state,
            to,
            reason,
            open_wait,
            calls: totals.map(|t| t.calls),
            failure_rate: totals.map(|t| t.failure_rate()),
            slow_call_rate: totals.map(|t| t.slow_call_rate()),
        };
        // Under the lock, so that subscribers hear transitions in the
        // order they were made; `send` only queues, it runs no user code.
        if self.transitions.receiver_count() > 0 {
            let _no_receiver_left = self.transitions.send(made.clone());
        }
        made
    }

    /// Emits the event and metrics of a transition.
    pub(super) fn announce(&self, transition: &BreakerTransition) {
        let BreakerTransition {
            ref name,
            from,
            to,
            reason,
            open_wait,
            calls,
            failure_rate,
            slow_call_rate,
            ..
        } = *transition;
        if to == BreakerState::Open {
            tracing::warn!(
                name = %name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                calls,
                failure_rate,
                slow_call_rate,
                open_wait_ms = open_wait.map(|w| w.as_millis() as u64),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                name = %name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                calls,
                failure_rate,
                slow_call_rate,
                "circuit breaker changed state"
            );
        }
        metrics::counter!(
            "orch_breaker_transitions_total",
            "name" => name.clone(),
            "from" => from.as_str(),
            "to" => to.as_str(),
        )
        .increment(1);
        // The state now, not `to`: announcements of racing transitions may
        // arrive out of order, and the last one must leave the current state.
        metrics::gauge!("orch_breaker_state", "name" => name.clone()).set(self.phase().state.gauge_value());
    }
}
