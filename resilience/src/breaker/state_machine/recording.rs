//! Recording: an outcome into the thread's shard window or the half-open
//! trials, and the verdict it may trigger.
//!
//! A success in a clean count window settles with one load. Anything else
//! is dropped if stale (the breaker changed phase since admission),
//! recorded into the shard under its lock, counted in the failure streak,
//! and the summed shards are judged when a rate may have risen: a closed
//! breaker opens, a metrics-only one reports the crossing. A half-open
//! trial's outcome is tallied under the control lock, which decides the
//! half-open state once.

use std::{sync::atomic::Ordering, time::Duration};

use super::StateMachine;
use crate::{
    breaker::{
        permit::Admission,
        state::{BreakerState, Phase, TransitionReason, count_in, pack},
        window::{self, FAILED, SLOW, Totals},
    },
    classify::Outcome,
};

impl StateMachine {
    /// Records the outcome of an admitted call; `duration` is the caller's
    /// measure, or `None` for the time since admission.
    #[inline]
    pub(in crate::breaker) fn record(
        &self,
        admission: Admission,
        outcome: Outcome,
        duration: Option<Duration>,
    ) {
        let Phase { state, epoch } = admission.phase;
        if outcome == Outcome::Success
            && self.clean_successes_are_free
            && state.records_in_window()
            && self.shards.local().is_clean(epoch)
            && self.no_failure_streak(epoch)
        {
            // The healthy steady state: a full all-success window stays so,
            // and there is no failure streak to end. One load, no write.
            return;
        }
        match (state, outcome) {
            // A local rejection records nothing, as if the permit were dropped.
            (_, Outcome::Rejected) => self.release(admission),
            (BreakerState::Closed | BreakerState::MetricsOnly, _) => {
                self.record_in_window(admission, outcome, duration);
            }
            (BreakerState::HalfOpen, _) => self.record_trial(admission, outcome, duration),
            _ => {}
        }
    }

    /// Whether the call was slow, and the time it ended (nanoseconds since
    /// the origin) when a clock was read.
    fn slowness(&self, admission: &Admission, duration: Option<Duration>) -> (bool, Option<u64>) {
        let Some(threshold) = self.config.slow_call_duration else {
            return (false, None);
        };
        let now = self.now_nanos();
        let took = duration.unwrap_or_else(|| Duration::from_nanos(now.saturating_sub(admission.started)));
        (took > threshold, Some(now))
    }

    fn record_in_window(&self, admission: Admission, outcome: Outcome, duration: Option<Duration>) {
        let Phase { state, epoch } = admission.phase;
        let failed = outcome.is_failure();
        let (slow, ended) = self.slowness(&admission, duration);
        if !failed && self.config.consecutive_failures.is_some() {
            self.end_failure_streak(epoch);
        }
        let time_window = self.has_time_window();
        if !failed && !slow && !time_window && self.shards.local().is_clean(epoch) {
            // A success that changes nothing (the fast path in `record` did
            // not apply: slow-call detection is on, or a streak just ended).
            return;
        }
        let now = match ended {
            Some(now) => now,
            None if time_window => self.now_nanos(),
            // A count window never reads the time.
            None => 0,
        };
        let mark = if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        // The epoch is checked under the shard's lock, so an outcome of a
        // call admitted before a transition never lands in the new window.
        let Some(recorded) = self
            .shards
            .local()
            .record(epoch, mark, now, || self.phase().epoch == epoch)
        else {
            return;
        };
        let mut verdict = None;
        let mut totals = None;
        if failed
            && let Some(limit) = self.config.consecutive_failures
            && self.extend_failure_streak(epoch) >= limit
        {
            verdict = Some(TransitionReason::ConsecutiveFailures);
        }
        // Judge only when this record may have raised a rate over a threshold
        // (see `Recorded::rates_may_rise`) and this shard holds a failure or
        // a slow call. With one thread (one shard) that is exact: no other
        // record can cross a threshold. With several, a crossing caused by
        // the sum of shards is found by the next such record.
        if verdict.is_none() && recorded.rates_may_rise && recorded.totals.has_bad_calls() {
            let sum = window::aggregate(&self.shards, epoch, now);
            verdict = self.judge(&sum);
            totals = Some(sum);
        }
        match (verdict, state) {
            (Some(reason), BreakerState::Closed) => {
                let admitted = admission.phase;
                self.transition(|current| current == admitted, BreakerState::Open, reason, totals);
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
        if totals.calls < self.config.effective_minimum_calls() {
            return None;
        }
        if totals.failure_rate() >= self.config.failure_rate_threshold {
            Some(TransitionReason::FailureRate)
        } else if self.config.slow_call_duration.is_some()
            && totals.slow_call_rate() >= self.config.slow_call_rate_threshold
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

    /// Counts one more failure in a row in `epoch`; the streak's length.
    fn extend_failure_streak(&self, epoch: u32) -> u32 {
        let streak = |word| count_in(word, epoch).saturating_add(1);
        let previous = self
            .failure_streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                Some(pack(epoch, streak(word)))
            })
            .unwrap_or_else(|word| word);
        streak(previous)
    }

    fn end_failure_streak(&self, epoch: u32) {
        let word = self.failure_streak.load(Ordering::Relaxed);
        // Only write when there is something to clear, so successes in a
        // healthy service only read the line; and never for a stale success,
        // whose state is over.
        if count_in(word, epoch) != 0 && self.phase().epoch == epoch {
            let _ = self.failure_streak.compare_exchange(
                word,
                pack(epoch, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// True when no failure streak of `epoch` is running.
    #[inline]
    fn no_failure_streak(&self, epoch: u32) -> bool {
        self.config.consecutive_failures.is_none()
            || count_in(self.failure_streak.load(Ordering::Relaxed), epoch) == 0
    }

    /// Records the outcome of a half-open trial and decides, once, when the
    /// outcome is certain: the breaker opens again as soon as the failures
    /// (or slow calls) among the trials reach the threshold as a share of
    /// *all* `half_open_permits` trials, since the remaining trials cannot
    /// bring the rate back down; it closes when every trial is recorded
    /// below the thresholds.
    fn record_trial(&self, admission: Admission, outcome: Outcome, duration: Option<Duration>) {
        let (slow, ended) = self.slowness(&admission, duration);
        let mut control = self.lock_control();
        let current = self.phase();
        if current != admission.phase {
            return;
        }
        let now = ended.unwrap_or_else(|| self.now_nanos());
        let since = self.half_open_since.load(Ordering::Relaxed);
        let config = &self.config;
        let decision = if config
            .max_half_open_wait
            .is_some_and(|max| Duration::from_nanos(now.saturating_sub(since)) >= max)
        {
            // Past the deadline the breaker is open; this late trial does not count.
            Some((BreakerState::Open, TransitionReason::MaxHalfOpenWait))
        } else {
            let tally = &mut control.trials;
            tally.calls += 1;
            tally.failures += u64::from(outcome.is_failure());
            tally.slow += u64::from(slow);
            let permits = f64::from(config.half_open_permits);
            if tally.failures as f64 / permits >= config.failure_rate_threshold {
                Some((BreakerState::Open, TransitionReason::TrialsFailed))
            } else if config.slow_call_duration.is_some()
                && tally.slow as f64 / permits >= config.slow_call_rate_threshold
            {
                Some((BreakerState::Open, TransitionReason::TrialsSlow))
            } else if tally.calls >= u64::from(config.half_open_permits) {
                Some((BreakerState::Closed, TransitionReason::TrialsPassed))
            } else {
                None
            }
        };
        if let Some((to, reason)) = decision {
            let totals = control.trials;
            let made = self.transition_locked(&mut control, current, to, reason, now, Some(totals));
            drop(control);
            self.announce(&made);
        }
    }
}
