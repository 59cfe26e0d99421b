//! The breaker's state word: which state it is in and the epoch of that state.
//!
//! Admission is one atomic load of this word. The epoch grows by one on
//! every transition, so a permit remembers the state it was handed out in,
//! and an outcome that arrives after the breaker moved on (a slow call
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
        f64::from(self.code())
    }

    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
            Self::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::Disabled,
            _ => Self::MetricsOnly,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state and its epoch, packed in one `u64`: the state code in the low
/// byte, the epoch in the high 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateWord {
    pub(crate) state: BreakerState,
    pub(crate) epoch: u32,
}

impl StateWord {
    #[inline]
    pub(crate) const fn pack(self) -> u64 {
        ((self.epoch as u64) << 32) | self.state.code() as u64
    }

    #[inline]
    pub(crate) const fn unpack(word: u64) -> Self {
        Self {
            state: BreakerState::from_code((word & 0xff) as u8),
            epoch: (word >> 32) as u32,
        }
    }

    /// The word of the next state: the epoch moves on (wrapping; epochs are
    /// only compared for equality, and 2^32 transitions while one call is
    /// in flight do not happen).
    pub(crate) const fn next(self, state: BreakerState) -> Self {
        Self {
            state,
            epoch: self.epoch.wrapping_add(1),
        }
    }
}

/// Why the breaker changed state; the `reason` field of transition events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransitionReason {
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
    pub(crate) fn as_str(self) -> &'static str {
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
    fn words_round_trip() {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::ForcedOpen,
            BreakerState::Disabled,
            BreakerState::MetricsOnly,
        ] {
            let word = StateWord {
                state,
                epoch: u32::MAX,
            };
            assert_eq!(StateWord::unpack(word.pack()), word);
            assert_eq!(word.next(BreakerState::Closed).epoch, 0);
        }
    }
}
