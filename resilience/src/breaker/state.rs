//! The breaker's states, the [`Phase`] a call is admitted in, why the
//! breaker moves between states, and the [`BreakerTransition`] it announces.
//!
//! Every transition starts a new phase: the state entered and an epoch one
//! higher than the last. A permit remembers the phase it was admitted in,
//! so an outcome that arrives after the breaker moved on (a slow call
//! admitted while closed that finishes while half-open) is recognised as
//! stale and not counted in the new state.
//!
//! Every transition is already a `tracing` event and a metric; a service
//! that must act on one (page someone, shed a feature, mark a dependency
//! down on its own health endpoint) wants it as a value it can `await`,
//! like Resilience4j's `onStateTransition` or Polly's `OnOpened`. The
//! breaker keeps a `tokio` broadcast channel that it only writes to while
//! someone subscribes.

use std::{fmt, sync::Arc, time::Duration};

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
        pack(self.epoch, self.state as u32)
    }

    #[inline]
    pub(crate) fn unpack(word: u64) -> Self {
        let (epoch, state) = unpack(word);
        // The low half is always one of `ALL`'s indices; anything else
        // would be a bug, read as the last state rather than a panic.
        let state = BreakerState::ALL[(state as usize).min(5)];
        Self { state, epoch }
    }

    /// The phase that follows this one, in `state`.
    pub(crate) fn next(self, state: BreakerState) -> Self {
        Self {
            state,
            epoch: self.epoch.wrapping_add(1),
        }
    }
}

/// An epoch and a value of it (a state, a count) in one atomic word, so that
/// both change in one store or compare-and-swap: the phase, the failure
/// streak and the trial slots, whose counts must never be taken for another
/// state's.
#[inline]
pub(crate) fn pack(epoch: u32, value: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(value)
}

/// The epoch and the value of a [`pack`]ed word.
#[inline]
pub(crate) fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// The count of a [`pack`]ed word in `epoch`: 0 if it was counted in another.
#[inline]
pub(crate) fn count_in(word: u64, epoch: u32) -> u32 {
    let (counted_in, count) = unpack(word);
    if counted_in == epoch { count } else { 0 }
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

/// Transitions a subscriber may fall behind by before it misses some (it
/// then hears `RecvError::Lagged` with how many).
pub(super) const SUBSCRIBER_BACKLOG: usize = 64;

/// One change of a breaker's state, as sent to
/// the subscribers of [`CircuitBreaker::subscribe`](super::CircuitBreaker::subscribe).
///
/// ```
/// use orch_resilience::{BreakerState, CircuitBreakerConfig};
/// use orch_resilience::breaker::TransitionReason;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreakerConfig::default().name("inventory").build()?;
/// let mut transitions = breaker.subscribe();
/// breaker.force_open();
/// let change = transitions.recv().await?;
/// assert_eq!((change.from, change.to), (BreakerState::Closed, BreakerState::ForcedOpen));
/// assert_eq!(change.reason, TransitionReason::ForcedOpen);
/// assert_eq!(&*change.name, "inventory");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerTransition {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state it left.
    pub from: BreakerState,
    /// The state it entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// On opening: how long it stays open before it lets trials through.
    pub open_wait: Option<Duration>,
    /// When a verdict decided it: the calls of the window (or the trials)
    /// that decided it.
    pub calls: Option<u64>,
    /// When a verdict decided it: their failure rate, in `[0, 1]`.
    pub failure_rate: Option<f64>,
    /// When a verdict decided it: their slow-call rate, in `[0, 1]`.
    pub slow_call_rate: Option<f64>,
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
