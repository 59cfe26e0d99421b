//! Recording: an outcome into the thread's shard window or the half-open
//! trials, and the verdict it may trigger.
//!
//! A success in a clean count window settles with one load, inlined into
//! the caller; anything else goes out of line. There the outcome is dropped
//! if stale (the breaker changed state since admission), recorded into the
//! shard under its lock, counted in the failure streak, and the summed
//! shards are judged when a rate may have risen: a closed breaker opens, a
//! metrics-only one reports the crossing. A half-open trial's outcome is
//! tallied under the control lock, which decides the half-open state once.

use std::{sync::atomic::Ordering, time::Duration};

use super::Shared;
use crate::{
    breaker::{
        state::{BreakerState, StateWord, TransitionReason},
        ticket::Ticket,
        window::{self, FAILED, SLOW, Totals},
    },
    classify::Outcome,
};

impl Shared {
    #[inline(always)]
    pub(in crate::breaker) fn on_outcome(
        &self,
        ticket: &mut Ticket,
        outcome: Outcome,
        duration: Option<Duration>,
    ) {
        if outcome == Outcome::Success
            && self.settings().fast_success
            && ticket.in_window()
            && self.local_shard().is_clean(ticket.epoch())
            && (self.settings().consecutive_failures.is_none() || self.no_consecutive(ticket.epoch()))
        {
            // The healthy steady state: a full all-success window stays so,
            // and there is no failure streak to end. One load, no write.
            ticket.settle();
            return;
        }
        self.on_outcome_slow(ticket, outcome, duration);
    }

    #[inline(never)]
    fn on_outcome_slow(&self, ticket: &mut Ticket, outcome: Outcome, duration: Option<Duration>) {
        let admitted = *ticket;
        match (ticket.settle(), outcome) {
            (Some(state @ (BreakerState::Closed | BreakerState::MetricsOnly)), outcome)
                if outcome != Outcome::Rejected =>
            {
                self.record_in_window(admitted, state, outcome, duration);
            }
            (Some(BreakerState::HalfOpen), Outcome::Rejected) => self.release_trial(admitted.epoch()),
            (Some(BreakerState::HalfOpen), outcome) => self.record_trial(admitted, outcome, duration),
            _ => {}
        }
    }

    /// Whether the call was slow, and the time it ended (nanoseconds since
    /// the origin) when a clock was read.
    fn slowness(&self, ticket: &Ticket, duration: Option<Duration>) -> (bool, Option<u64>) {
        match self.settings().slow_call_duration {
            None => (false, None),
            Some(threshold) => {
                let now = self.now_nanos();
                let took = duration.unwrap_or_else(|| Duration::from_nanos(now.saturating_sub(ticket.start)));
                (took > threshold, Some(now))
            }
        }
    }

    fn record_in_window(
        &self,
        ticket: Ticket,
        admitted_in: BreakerState,
        outcome: Outcome,
        duration: Option<Duration>,
    ) {
        let failed = outcome.is_failure();
        let (slow, ended) = self.slowness(&ticket, duration);
        if !failed && self.settings().consecutive_failures.is_some() {
            self.clear_consecutive(ticket.epoch());
        }
        if !failed && !slow && !self.settings().time_window && self.local_shard().is_clean(ticket.epoch()) {
            // A success that changes nothing (slow-call detection was on, so
            // the fast path in `on_outcome` did not apply).
            return;
        }
        let mark = if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        self.record_in_window_slow(ticket.epoch(), admitted_in, mark, ended);
    }

    fn record_in_window_slow(&self, epoch: u32, admitted_in: BreakerState, mark: u8, ended: Option<u64>) {
        let now = match ended {
            Some(now) => now,
            None if self.settings().time_window => self.now_nanos(),
            // A count window never reads the time.
            None => 0,
        };
        // The epoch is checked under the shard's lock, so an outcome of a
        // call admitted before a transition never lands in the new window.
        let Some(recorded) = self
            .local_shard()
            .record(epoch, mark, now, || self.load_state().epoch == epoch)
        else {
            return;
        };
        let mut verdict = None;
        let mut totals = None;
        if mark & FAILED != 0
            && let Some(limit) = self.settings().consecutive_failures
            && self.bump_consecutive(epoch) >= limit
        {
            verdict = Some(TransitionReason::ConsecutiveFailures);
        }
        // Judge only when this record may have raised a rate over a threshold
        // (see `Recorded::rates_may_rise`) and this shard holds a failure or
        // a slow call. With one thread (one shard) that is exact: no other
        // record can cross a threshold. With several, a crossing caused by
        // the sum of shards is found by the next such record.
        if verdict.is_none() && recorded.rates_may_rise && recorded.totals.has_bad_calls() {
            let sum = window::aggregate(&self.hot.shards, epoch, now);
            verdict = self.judge(&sum);
            totals = Some(sum);
        }
        let word = StateWord {
            state: admitted_in,
            epoch,
        };
        match (verdict, word.state) {
            (Some(reason), BreakerState::Closed) => {
                self.transition(Some(word), BreakerState::Open, reason, None, totals);
            }
            (Some(reason), _) => self.threshold_exceeded(reason, totals),
            (None, BreakerState::MetricsOnly) => {
                // Judged below the thresholds: the next crossing is reported again.
                if totals.is_some() && self.exceeded.load(Ordering::Relaxed) {
                    self.exceeded.store(false, Ordering::Relaxed);
                }
            }
            (None, _) => {}
        }
    }

    /// Which threshold the window's totals cross, if any.
    fn judge(&self, totals: &Totals) -> Option<TransitionReason> {
        let settings = self.settings();
        if totals.calls < settings.minimum_calls {
            return None;
        }
        if totals.failure_rate() >= settings.failure_rate_threshold {
            Some(TransitionReason::FailureRate)
        } else if settings.slow_call_duration.is_some()
            && totals.slow_call_rate() >= settings.slow_call_rate_threshold
        {
            Some(TransitionReason::SlowCallRate)
        } else {
            None
        }
    }

    /// Metrics-only mode: report a crossing once, without rejecting anything.
    fn threshold_exceeded(&self, reason: TransitionReason, totals: Option<Totals>) {
        if self.exceeded.load(Ordering::Relaxed) || self.exceeded.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            name = %self.config.name,
            reason = reason.as_str(),
            calls = totals.map(|t| t.calls),
            failure_rate = totals.map(|t| t.failure_rate()),
            slow_call_rate = totals.map(|t| t.slow_call_rate()),
            "circuit breaker threshold exceeded (metrics only, not rejecting)"
        );
        metrics::counter!(
            "orch_breaker_threshold_exceeded_total",
            "name" => self.config.name.clone(),
            "reason" => reason.as_str(),
        )
        .increment(1);
    }

    fn bump_consecutive(&self, epoch: u32) -> u32 {
        let tag = u64::from(epoch) << 32;
        let mut word = self.consecutive.load(Ordering::Relaxed);
        loop {
            let count = if (word >> 32) as u32 == epoch {
                (word as u32).saturating_add(1)
            } else {
                1
            };
            match self.consecutive.compare_exchange_weak(
                word,
                tag | u64::from(count),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return count,
                Err(actual) => word = actual,
            }
        }
    }

    #[inline(always)]
    fn clear_consecutive(&self, epoch: u32) {
        let word = self.consecutive.load(Ordering::Relaxed);
        // Only write when there is something to clear, so successes in a
        // healthy service only read the line; and never for a stale success,
        // whose state is over.
        if word as u32 != 0 && (word >> 32) as u32 == epoch && self.load_state().epoch == epoch {
            let _ = self.consecutive.compare_exchange(
                word,
                u64::from(epoch) << 32,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// True when no failure streak of `epoch` is running.
    #[inline(always)]
    fn no_consecutive(&self, epoch: u32) -> bool {
        let word = self.consecutive.load(Ordering::Relaxed);
        word as u32 == 0 || (word >> 32) as u32 != epoch
    }

    pub(super) fn consecutive_in(&self, epoch: u32) -> u32 {
        let word = self.consecutive.load(Ordering::Relaxed);
        if (word >> 32) as u32 == epoch {
            word as u32
        } else {
            0
        }
    }

    /// Records the outcome of a half-open trial and decides, once, when the
    /// outcome is certain: the breaker opens again as soon as the failures
    /// (or slow calls) among the trials reach the threshold as a share of
    /// *all* `half_open_permits` trials, since the remaining trials cannot
    /// bring the rate back down; it closes when every trial is recorded
    /// below the thresholds.
    fn record_trial(&self, ticket: Ticket, outcome: Outcome, duration: Option<Duration>) {
        let (slow, ended) = self.slowness(&ticket, duration);
        let failed = outcome.is_failure();
        let mut control = self.lock_control();
        let word = self.load_state();
        if word
            != (StateWord {
                state: BreakerState::HalfOpen,
                epoch: ticket.epoch(),
            })
            || control.trials.epoch != ticket.epoch()
        {
            return;
        }
        let now = ended.unwrap_or_else(|| self.now_nanos());
        let since = self.hot.half_open_since.load(Ordering::Relaxed);
        let decision = if self
            .settings()
            .max_half_open_wait
            .is_some_and(|max| Duration::from_nanos(now.saturating_sub(since)) >= max)
        {
            // Past the deadline the breaker is open; this late trial does not count.
            Some((BreakerState::Open, TransitionReason::MaxHalfOpenWait))
        } else {
            let tally = &mut control.trials.totals;
            tally.calls += 1;
            tally.failures += u64::from(failed);
            tally.slow += u64::from(slow);
            let settings = self.settings();
            let permits = f64::from(settings.half_open_permits);
            if tally.failures as f64 / permits >= settings.failure_rate_threshold {
                Some((BreakerState::Open, TransitionReason::TrialsFailed))
            } else if settings.slow_call_duration.is_some()
                && tally.slow as f64 / permits >= settings.slow_call_rate_threshold
            {
                Some((BreakerState::Open, TransitionReason::TrialsSlow))
            } else if tally.calls >= u64::from(settings.half_open_permits) {
                Some((BreakerState::Closed, TransitionReason::TrialsPassed))
            } else {
                None
            }
        };
        if let Some((to, reason)) = decision {
            let totals = control.trials.totals;
            let done = self.transition_locked(&mut control, word, to, reason, now, Some(totals));
            drop(control);
            self.announce(done);
        }
    }
}
