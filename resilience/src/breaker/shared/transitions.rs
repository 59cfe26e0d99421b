//! Transitions: moving the breaker between states, each once.
//!
//! A transition takes the control lock and checks the state it starts from,
//! so racing threads make it once; it writes what the new state needs (the
//! open deadline, the trial slots, the window's epoch) before publishing the
//! state word, and is announced (`tracing` event, metrics) only after the
//! lock is released. The operator's mode switches are transitions too.

use std::sync::{MutexGuard, PoisonError, atomic::Ordering};

use super::{Control, Shared, Transition, TrialTally};
use crate::breaker::{
    state::{BreakerState, StateWord, TransitionReason},
    window::Totals,
};

impl Shared {
    pub(super) fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Transitions leave `Control` consistent at every step; poison is ignored.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves from `expected` (any state when `None`) to `to`; does nothing
    /// and returns false when the state is no longer `expected`, so each
    /// transition happens once however many threads ask for it.
    pub(in crate::breaker) fn transition(
        &self,
        expected: Option<StateWord>,
        to: BreakerState,
        reason: TransitionReason,
        now: Option<u64>,
        totals: Option<Totals>,
    ) -> bool {
        let mut control = self.lock_control();
        let current = self.load_state();
        if expected.is_some_and(|expected| expected != current) {
            return false;
        }
        let now = now.unwrap_or_else(|| self.now_nanos());
        let done = self.transition_locked(&mut control, current, to, reason, now, totals);
        drop(control);
        self.announce(done);
        true
    }

    /// Makes the transition; the caller holds the control lock, and
    /// announces the returned transition once it has released it (so a
    /// `tracing` subscriber or metrics recorder that looks at the breaker
    /// cannot deadlock on the lock).
    pub(super) fn transition_locked(
        &self,
        control: &mut Control,
        current: StateWord,
        to: BreakerState,
        reason: TransitionReason,
        now: u64,
        totals: Option<Totals>,
    ) -> Transition {
        let next = current.next(to);
        let mut open_wait = None;
        match to {
            BreakerState::Open => {
                control.reopens = if current.state == BreakerState::HalfOpen {
                    control.reopens.saturating_add(1)
                } else {
                    0
                };
                let wait = self.config.open_wait_after(control.reopens);
                let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.hot
                    .open_until
                    .store(now.saturating_add(wait_nanos), Ordering::Relaxed);
                open_wait = Some(wait);
            }
            BreakerState::HalfOpen => {
                control.trials = TrialTally {
                    epoch: next.epoch,
                    totals: Totals::default(),
                };
                self.trials.store(u64::from(next.epoch) << 32, Ordering::Relaxed);
                self.hot.half_open_since.store(now, Ordering::Relaxed);
            }
            BreakerState::Closed | BreakerState::MetricsOnly => {
                // Shard windows and the consecutive count are tagged with the
                // epoch and empty themselves when next touched.
                if to == BreakerState::Closed {
                    control.reopens = 0;
                }
                self.hot.window_epoch.store(next.epoch, Ordering::Relaxed);
                self.exceeded.store(false, Ordering::Relaxed);
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        // Release: publishes the fields written above with the new state.
        self.hot.state.store(next.pack(), Ordering::Release);
        Transition {
            from: current.state,
            to,
            reason,
            open_wait,
            totals,
        }
    }

    /// Emits the event and metrics of a transition.
    pub(super) fn announce(&self, transition: Transition) {
        let Transition {
            from,
            to,
            reason,
            open_wait,
            totals,
        } = transition;
        let name = &self.config.name;
        let open_wait_ms = open_wait.map(|w| w.as_millis() as u64);
        let calls = totals.map(|t| t.calls);
        let failure_rate = totals.map(|t| t.failure_rate());
        let slow_call_rate = totals.map(|t| t.slow_call_rate());
        if to == BreakerState::Open {
            tracing::warn!(
                name = %name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                calls,
                failure_rate,
                slow_call_rate,
                open_wait_ms,
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
        metrics::gauge!("orch_breaker_state", "name" => name.clone())
            .set(self.load_state().state.gauge_value());
    }

    pub(in crate::breaker) fn switch_mode(&self, to: BreakerState, reason: TransitionReason) {
        let mut control = self.lock_control();
        let current = self.load_state();
        if current.state != to {
            let now = self.now_nanos();
            let done = self.transition_locked(&mut control, current, to, reason, now, None);
            drop(control);
            self.announce(done);
        }
    }

    pub(in crate::breaker) fn normal(&self) {
        let mut control = self.lock_control();
        let current = self.load_state();
        if matches!(
            current.state,
            BreakerState::ForcedOpen | BreakerState::Disabled | BreakerState::MetricsOnly
        ) {
            let now = self.now_nanos();
            let done = self.transition_locked(
                &mut control,
                current,
                BreakerState::Closed,
                TransitionReason::Normal,
                now,
                None,
            );
            drop(control);
            self.announce(done);
        }
    }
}
