//! The public handle to a breaker: [`CircuitBreaker`], what it is built
//! from and what it hands out.
//!
//! The handle is two `Arc`s: one to the [`StateMachine`] every clone
//! shares, and one to its shard handles (one `Arc` of that state machine
//! per shard of threads) that owned permits clone, so that threads calling one breaker
//! do not all write one reference count. The handle's methods are thin:
//! admission, recording and transitions are the state machine's.

use std::{fmt, sync::Arc};

use super::{
    BreakerTransition, CircuitBreakerLayer,
    config::CircuitBreakerConfig,
    permit::{Admission, BreakerPermit, OwnedBreakerPermit},
    state::{BreakerState, TransitionReason},
    state_machine::StateMachine,
};
#[cfg(doc)]
use crate::error::CircuitRejection;
use crate::{config::ConfigError, error::ResilienceError, shard::ShardHandles};

/// A circuit breaker, shared by every clone of this handle.
///
/// Cloning is cheap (two `Arc`s), and all clones, layers and services made from
/// them share one state and one window. Use it through
/// [`layer`](Self::layer) as `tower` middleware, or directly: ask
/// [`try_acquire`](Self::try_acquire) before a call and
/// [`record`](BreakerPermit::record) its outcome on the permit.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{Outcome, breaker::{BreakerState, CircuitBreakerConfig}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let breaker = CircuitBreakerConfig::default()
///     .name("inventory")
///     .count_window(10)
///     .minimum_calls(4)
///     .build()
///     .unwrap();
///
/// for _ in 0..4 {
///     let permit = breaker.try_acquire().unwrap();
///     permit.record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(60)));
/// # }
/// ```
///
/// Time-based transitions (open → half-open after the open wait, half-open →
/// open after `max_half_open_wait`) have no timer task: they are made by the
/// first call or outcome that arrives after the deadline, so
/// [`state`](Self::state) keeps reporting `Open` until a call is attempted
/// (Resilience4j's default, without `automaticTransitionFromOpenToHalfOpen`).
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(super) machine: Arc<StateMachine>,
    /// One handle to `machine` per shard, for owned permits (see [`ShardHandles`]).
    shard_handles: Arc<ShardHandles<StateMachine>>,
}

/// A snapshot of a breaker's numbers, from [`CircuitBreaker::metrics`].
///
/// The window described is the one that decides the current state: the
/// sliding window while closed or metrics-only, the window that tripped
/// the breaker while open (or forced open or disabled), and the trial calls
/// while half-open.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state at the time of the snapshot.
    pub state: BreakerState,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u64,
    /// `failures / calls`; 0 when the window is empty.
    pub failure_rate: f64,
    /// `slow_calls / calls`; 0 when the window is empty.
    pub slow_call_rate: f64,
    /// Failures in a row so far, in the window's state (counted only with
    /// `consecutive_failures` configured, and only while closed or metrics-only).
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was built.
    pub rejections: u64,
    /// Times the breaker opened since it was built: from closed (a
    /// threshold crossed) or again from half-open (trials failed). Forced
    /// opens are not counted. A count rather than the state, so that a
    /// dashboard or a report sampling now and then misses no opening.
    pub openings: u64,
}

// ===== impl CircuitBreaker =====

impl CircuitBreaker {
    /// Validates `config` and builds a closed breaker.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    /// Builds a breaker from a config that was validated.
    pub(super) fn from_valid(config: CircuitBreakerConfig) -> Self {
        metrics::gauge!("orch_breaker_state", "name" => config.name.clone())
            .set(BreakerState::Closed.gauge_value());
        let machine = Arc::new(StateMachine::new(config));
        Self {
            shard_handles: Arc::new(ShardHandles::new(&machine)),
            machine,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.machine.config.name
    }

    /// The config the breaker was built with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.machine.config
    }

    /// The current state. Reading it makes no transition (see the type's
    /// docs on time-based transitions).
    pub fn state(&self) -> BreakerState {
        self.machine.phase().state
    }

    /// True when the breaker admits every call without reserving anything
    /// (closed, metrics-only, disabled): the `tower` service then takes its
    /// permit in `call`.
    #[inline]
    pub(super) fn admits_everyone(&self) -> bool {
        matches!(
            self.machine.phase().state,
            BreakerState::Closed | BreakerState::MetricsOnly | BreakerState::Disabled
        )
    }

    /// Asks to make one call.
    ///
    /// Closed, metrics-only and disabled breakers admit every call (one
    /// atomic load, plus a clock read when slow-call detection is on). An
    /// open breaker rejects with [`CircuitRejection::Open`] and the remaining
    /// open time, until the open wait has passed: then this call makes it
    /// half-open and is its first trial. A half-open breaker admits exactly
    /// `half_open_permits` trials per half-open period, also under
    /// concurrency, and rejects the rest with [`CircuitRejection::HalfOpenFull`].
    /// A forced-open breaker rejects with [`CircuitRejection::ForcedOpen`].
    #[inline]
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, ResilienceError> {
        Ok(BreakerPermit {
            breaker: &self.machine,
            admission: Some(self.machine.admit()?),
        })
    }

    /// [`try_acquire`](Self::try_acquire), returning a permit that owns a
    /// handle to the breaker (for `'static` futures).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedBreakerPermit, ResilienceError> {
        Ok(self.owned_permit(self.machine.admit()?))
    }

    /// The owned permit of an admitted call: a clone of the calling thread's shard handle.
    #[inline]
    pub(super) fn owned_permit(&self, admission: Admission) -> OwnedBreakerPermit {
        OwnedBreakerPermit {
            breaker: self.shard_handles.for_thread(),
            admission: Some(admission),
        }
    }

    /// Every state change from now on, as a [`BreakerTransition`], in the
    /// order the breaker made them.
    ///
    /// A `tokio` broadcast receiver: each subscriber gets every transition,
    /// and one that falls more than 64 behind hears
    /// `RecvError::Lagged(missed)` and goes on from the oldest it still
    /// has (read [`state`](Self::state) for the state now). Transitions
    /// that happen on their own (open to half-open when the wait is over)
    /// are made, and so sent, by the next call that asks, as the type's
    /// docs explain. A breaker with no subscriber sends nothing.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BreakerTransition> {
        self.machine.transitions.subscribe()
    }

    /// A snapshot of the breaker's numbers (see [`BreakerMetrics`]).
    pub fn metrics(&self) -> BreakerMetrics {
        self.machine.metrics()
    }

    /// Forces the breaker open: every call is rejected with
    /// [`CircuitRejection::ForcedOpen`] until [`normal`](Self::normal) or
    /// [`reset`](Self::reset). Nothing is recorded meanwhile.
    pub fn force_open(&self) {
        self.switch_mode(BreakerState::ForcedOpen, TransitionReason::ForcedOpen);
    }

    /// Disables the breaker: every call passes and nothing is recorded,
    /// until [`normal`](Self::normal) or [`reset`](Self::reset).
    pub fn disable(&self) {
        self.switch_mode(BreakerState::Disabled, TransitionReason::Disabled);
    }

    /// Puts the breaker in metrics-only mode: every call passes and is
    /// recorded in a fresh window; crossing a threshold emits a `tracing`
    /// event and increments `orch_breaker_threshold_exceeded_total` once per
    /// crossing, but never rejects.
    pub fn metrics_only(&self) {
        self.switch_mode(BreakerState::MetricsOnly, TransitionReason::MetricsOnly);
    }

    fn switch_mode(&self, to: BreakerState, reason: TransitionReason) {
        self.machine
            .transition(|current| current.state != to, to, reason, None);
    }

    /// Leaves forced-open, disabled or metrics-only mode for a closed
    /// breaker with an empty window. Does nothing when the breaker is
    /// closed, open or half-open.
    pub fn normal(&self) {
        let in_a_mode = |current: super::state::Phase| {
            matches!(
                current.state,
                BreakerState::ForcedOpen | BreakerState::Disabled | BreakerState::MetricsOnly
            )
        };
        self.machine
            .transition(in_a_mode, BreakerState::Closed, TransitionReason::Normal, None);
    }

    /// Closes the breaker from any state and forgets everything: the window,
    /// the consecutive failures and the open-wait backoff. Permits handed out
    /// before the reset record nothing.
    pub fn reset(&self) {
        self.machine
            .transition(|_| true, BreakerState::Closed, TransitionReason::Reset, None);
    }

    /// A layer whose services share this breaker.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::shared(self.clone())
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
