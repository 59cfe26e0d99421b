//! Transitions as values, for code that reacts to them.
//!
//! Every transition is already a `tracing` event and a metric; a service
//! that must act on one (page someone, shed a feature, mark a dependency
//! down on its own health endpoint) wants it as a value it can `await`,
//! like Resilience4j's `onStateTransition` or Polly's `OnOpened`. The
//! breaker keeps a `tokio` broadcast channel that it only writes to while
//! someone subscribes.

use std::{sync::Arc, time::Duration};

use super::{BreakerState, TransitionReason};

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
