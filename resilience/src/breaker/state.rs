//! The breaker's states, the [`Phase`] a call is admitted in, and why the
//! breaker moves between states.
//!
//! Every transition starts a new phase: the state entered and an epoch one
//! higher than the last. A permit remembers the phase it was admitted in,
//! so an outcome that arrives after the breaker moved on (a slow call
//! admitted while closed that finishes while half-open) is recognised as
//! stale and not counted in the new state.

use std::fmt;

/// The state of a [`CircuitBreaker`](super::CircuitBreaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass and are recorded in the sliding window; the breaker trips
    /// (opens) when the window's rates or the consecutive failures cross
    /// their thresholds.
    Closed,
    /// Calls are rejected with [`CircuitRejection::Open`](crate::CircuitRejection::Open)
    /// until the open wait has passed; then the next call makes the breaker half-open.
    Open,
    /// A fixed number of trial calls pass; their outcomes close the breaker
    /// or open it again. Other calls are rejected with
    /// [`CircuitRejection::HalfOpenFull`](crate::CircuitRejection::HalfOpenFull).
    HalfOpen,
    /// An operator forced the breaker open: every call is rejected with
    /// [`CircuitRejection::ForcedOpen`](crate::CircuitRejection::ForcedOpen) until
    /// [`normal`](super::CircuitBreaker::normal) or [`reset`](super::CircuitBreaker::reset).
    ForcedOpen,
    /// Every call passes and nothing is recorded.
    Disabled,
    /// Every call passes and is recorded; crossing a threshold emits an
    /// event and a metric but never rejects.
    MetricsOnly,
}

impl BreakerState {
    /// Every state, in the order of their gauge values.
    const ALL: [Self; 6] = [
        Self::Closed,
        Self::Open,
        Self::HalfOpen,
        Self::ForcedOpen,
        Self::Disabled,
        Self::MetricsOnly,
    ];

    /// The state's name as used in metric labels and tracing fields
    /// (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `orch_breaker_state` gauge for this state: 0 closed,
    /// 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics only.
    pub fn gauge_value(self) -> f64 {
        f64::from(self as u8)
    }

    /// True for the states whose calls are recorded in the sliding window.
    #[inline]
    pub(crate) fn records_in_window(self) -> bool {
        matches!(self, Self::Closed | Self::MetricsOnly)
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stay of the breaker in a state: the state and its epoch, the number
/// of transitions made before it (wrapping; epochs are only compared for
/// equality, and 2^32 transitions while one call is in flight do not happen).
///
/// The breaker keeps its current phase in one atomic word
/// ([`pack`](Self::pack)), so that admission reads state and epoch together
/// in one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase {
    pub(crate) state: BreakerState,
    pub(crate) epoch: u32,
}

impl Phase {
    /// The word stored in the breaker's atomic: the epoch in the high half,
    /// the state's gauge value in the low one.
    #[inline]
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.epoch) << 32) | self.state as u64
    }

    #[inline]
    pub(crate) fn unpack(word: u64) -> Self {
        Self {
            // The low half is always one of `ALL`'s indices; anything else
            // would be a bug, read as the last state rather than a panic.
            state: BreakerState::ALL[(word as u32 as usize).min(5)],
            epoch: (word >> 32) as u32,
        }
    }

    /// The phase that follows this one, in `state`.
    pub(crate) fn next(self, state: BreakerState) -> Self {
        Self {
            state,
            epoch: self.epoch.wrapping_add(1),
        }
    }
}

/// Why the breaker changed state: the `reason` of a
/// [`BreakerTransition`](super::BreakerTransition) and of the `tracing`
/// event of each transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The window's failure rate reached the threshold.
    FailureRate,
    /// The window's slow-call rate reached the threshold.
    SlowCallRate,
    /// The configured number of failures in a row.
    ConsecutiveFailures,
    /// The open wait passed and a call arrived.
    OpenWaitElapsed,
    /// Every trial call was recorded below the thresholds.
    TrialsPassed,
    /// The trials' failure rate reached the threshold.
    TrialsFailed,
    /// The trials' slow-call rate reached the threshold.
    TrialsSlow,
    /// The half-open breaker waited `max_half_open_wait` without a decision.
    MaxHalfOpenWait,
    /// [`CircuitBreaker::force_open`](super::CircuitBreaker::force_open).
    ForcedOpen,
    /// [`CircuitBreaker::disable`](super::CircuitBreaker::disable).
    Disabled,
    /// [`CircuitBreaker::metrics_only`](super::CircuitBreaker::metrics_only).
    MetricsOnly,
    /// [`CircuitBreaker::normal`](super::CircuitBreaker::normal).
    Normal,
    /// [`CircuitBreaker::reset`](super::CircuitBreaker::reset).
    Reset,
}

impl TransitionReason {
    /// The reason as it appears in `tracing` events (`"failure_rate"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::OpenWaitElapsed => "open_wait_elapsed",
            Self::TrialsPassed => "trials_passed",
            Self::TrialsFailed => "trials_failed",
            Self::TrialsSlow => "trials_slow",
            Self::MaxHalfOpenWait => "max_half_open_wait",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
            Self::Normal => "normal",
            Self::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip() {
        for state in BreakerState::ALL {
            let phase = Phase {
                state,
                epoch: u32::MAX,
            };
            assert_eq!(Phase::unpack(phase.pack()), phase);
            assert_eq!(phase.next(BreakerState::Closed).epoch, 0);
        }
    }

    #[test]
    fn gauge_values_follow_the_documented_order() {
        let values: Vec<f64> = BreakerState::ALL.iter().map(|s| s.gauge_value()).collect();
        assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
