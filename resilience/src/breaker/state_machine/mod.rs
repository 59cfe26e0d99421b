//! The breaker's state machine, which every handle, shard handle and
//! permit of one breaker shares: admission, recording, transitions and the metrics
//! snapshot.
//!
//! Its layout serves the hot path: what every call reads (the current
//! phase, the config, where the shard windows are) is written only by
//! transitions, so it stays shared in every core's cache; what records and
//! trials write (the failure streak, the trial slots, the metrics-only
//! flag) sits on cache lines of its own. The methods are grouped by the
//! step of a call they serve, one file each:
//!
//! - `admission`: whether a call may be made;
//! - `recording`: an outcome into the window or the trials, and the verdict
//!   it may trigger;
//! - `transitions`: moving between states once, and announcing it.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use tokio::{sync::broadcast, time::Instant};

use super::{
    BreakerMetrics, BreakerTransition,
    config::{CircuitBreakerConfig, SlidingWindow},
    state::{BreakerState, Phase, SUBSCRIBER_BACKLOG, count_in},
    window::{self, Shard, Totals},
};
use crate::{
    clock,
    shard::{Padded, Sharded},
};

mod admission;
mod recording;
mod transitions;

/// A breaker's state, shared by its handles, shard handles and permits.
pub(super) struct StateMachine {
    /// The current [`Phase`], packed. Acquire/release: a transition writes
    /// what the new state needs (open deadline, trial slots) before it.
    phase: AtomicU64,
    /// When the current open state ends, in nanoseconds since `origin`.
    open_until: AtomicU64,
    /// When the current half-open state began, in nanoseconds since `origin`.
    half_open_since: AtomicU64,
    /// The epoch of the window that `metrics()` reports.
    window_epoch: AtomicU32,
    /// One window per shard; a thread records into its own.
    shards: Sharded<Shard>,
    /// A count window without slow-call detection: a success in a clean
    /// window changes nothing and is settled by one load (see `record`).
    clean_successes_are_free: bool,
    pub(in crate::breaker) config: CircuitBreakerConfig,
    /// Time zero of every nanosecond timestamp above.
    origin: Instant,
    /// Failures in a row, counted in the epoch of the closed (or
    /// metrics-only) state they happened in. Written by failures, read by
    /// successes.
    failure_streak: Padded<AtomicU64>,
    /// Half-open trial slots handed out in an epoch. Recorded trials keep
    /// their slot; dropped ones give it back.
    trial_slots: Padded<AtomicU64>,
    /// Metrics-only mode: the thresholds are currently exceeded (so the event
    /// is emitted once per crossing, not once per call). Off the read line:
    /// it is written by records, which must not disturb admission.
    exceeded: Padded<AtomicBool>,
    /// Serialises transitions and holds what only they and trials touch.
    control: Mutex<Control>,
    /// Transitions for [`CircuitBreaker::subscribe`](super::CircuitBreaker::subscribe),
    /// sent under the control lock so that subscribers hear them in order.
    pub(in crate::breaker) transitions: broadcast::Sender<BreakerTransition>,
}

#[derive(Debug)]
struct Control {
    /// Re-opens since the breaker was last closed (the backoff exponent).
    reopens: u32,
    /// The outcomes of the current (or last) half-open state's trials.
    /// Consistent with the phase read under the control lock.
    trials: Totals,
    /// Times the breaker opened (forced opens aside) since it was built.
    openings: u64,
}

// ===== impl StateMachine =====

impl StateMachine {
    /// A closed breaker for `config`, which was validated.
    pub(super) fn new(config: CircuitBreakerConfig) -> Self {
        let count_window = matches!(config.window, SlidingWindow::Count { .. });
        Self {
            phase: AtomicU64::new(
                Phase {
                    state: BreakerState::Closed,
                    epoch: 0,
                }
                .pack(),
            ),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            window_epoch: AtomicU32::new(0),
            shards: Sharded::new(|| Shard::new(&config.window, 0)),
            clean_successes_are_free: count_window && config.slow_call_duration.is_none(),
            failure_streak: Padded(AtomicU64::new(0)),
            trial_slots: Padded(AtomicU64::new(0)),
            exceeded: Padded(AtomicBool::new(false)),
            control: Mutex::new(Control {
                reopens: 0,
                trials: Totals::default(),
                openings: 0,
            }),
            transitions: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            config,
            origin: Instant::now(),
        }
    }

    /// The current phase.
    #[inline]
    pub(super) fn phase(&self) -> Phase {
        Phase::unpack(self.phase.load(Ordering::Acquire))
    }

    fn has_time_window(&self) -> bool {
        matches!(self.config.window, SlidingWindow::Time { .. })
    }

    fn now_nanos(&self) -> u64 {
        clock::nanos_since(self.origin)
    }

    /// The start of a call: the time with slow-call detection, 0 without
    /// (no clock read).
    #[inline]
    pub(super) fn call_start(&self) -> u64 {
        if self.config.slow_call_duration.is_some() {
            self.now_nanos()
        } else {
            0
        }
    }

    /// A snapshot of the numbers of the window that decides the current
    /// state. Off the hot path: it sums every shard's window, and takes the
    /// control lock to read the openings and, while half-open, the trials.
    pub(super) fn metrics(&self) -> BreakerMetrics {
        let (phase, openings, trials) = {
            // Transitions change the phase under this lock: a half-open
            // phase read here is the one whose trials `Control` holds.
            let control = self.lock_control();
            (self.phase(), control.openings, control.trials)
        };
        let window_epoch = self.window_epoch.load(Ordering::Relaxed);
        let totals = if phase.state == BreakerState::HalfOpen {
            trials
        } else {
            let now = if self.has_time_window() {
                self.now_nanos()
            } else {
                0
            };
            window::aggregate(&self.shards, window_epoch, now)
        };
        BreakerMetrics {
            state: phase.state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            consecutive_failures: count_in(self.failure_streak.load(Ordering::Relaxed), window_epoch),
            rejections: self.shards.iter().map(Shard::rejections).sum(),
            openings,
        }
    }
}
