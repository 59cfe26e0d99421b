//! The shared breaker: state machine, admission, recording, operator controls.
//!
//! Every handle, lane, permit and thread-local cache of one breaker points at
//! one [`Shared`]. Its layout is the hot path's: what every call reads (the
//! state word, the settings, where the shards are) sits on cache lines of
//! its own that only transitions write; what records and trials write (the
//! failure streak, the trial slots, the metrics-only flag) sits on lines of
//! their own, so that closed admission stays a read of a line every core
//! holds. The methods are
//! grouped by the step of a call they serve, one file each:
//!
//! - `admission`: whether a call may be made, and its ticket;
//! - `recording`: an outcome into the window or the trials, and the verdict
//!   it may trigger;
//! - `transitions`: moving between states once, and announcing it;
//! - `snapshot`: the numbers behind `CircuitBreaker::metrics`.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{
    config::{CircuitBreakerConfig, SlidingWindow},
    local,
    state::{BreakerState, StateWord, TransitionReason},
    window::{Shard, Totals},
};
use crate::{
    clock,
    shard::{Padded, Sharded},
};

mod admission;
mod recording;
mod snapshot;
mod transitions;

/// What every call reads: the state word, the settings and where the shards
/// are. Written only on transitions, so it stays shared in every core's cache.
#[derive(Debug)]
struct Hot {
    /// The [`StateWord`] of the current state.
    state: AtomicU64,
    /// When the current open state ends, in nanoseconds since `origin`.
    /// Written before the state word that publishes it.
    open_until: AtomicU64,
    /// When the current half-open state began, in nanoseconds since `origin`.
    half_open_since: AtomicU64,
    /// The epoch of the window that `metrics()` reports.
    window_epoch: AtomicU32,
    settings: Settings,
    /// One window per shard; a thread records into its own.
    shards: Sharded<Shard>,
}

/// The config, in the shape the hot path wants it.
#[derive(Debug)]
struct Settings {
    /// A count window without slow-call detection: a success in a clean
    /// window is recorded by one load (see `on_outcome`).
    fast_success: bool,
    /// `fast_success` without `consecutive_failures`: the `tower` service's
    /// tickets may be marked clean at admission (see `acquire_ticket`).
    clean_tickets: bool,
    slow_call_duration: Option<Duration>,
    consecutive_failures: Option<u32>,
    time_window: bool,
    failure_rate_threshold: f64,
    slow_call_rate_threshold: f64,
    minimum_calls: u64,
    half_open_permits: u32,
    max_half_open_wait: Option<Duration>,
}

/// A breaker's state, shared by its handles, lanes, permits and the
/// thread-local caches.
pub(super) struct Shared {
    hot: Padded<Hot>,
    /// The breaker's id in the thread-local caches (see [`local`]).
    id: u64,
    /// Every handle to the breaker is gone; only in-flight calls remain.
    retired: AtomicBool,
    /// Failures in a row: `epoch << 32 | count`, tagged with the epoch of the
    /// closed (or metrics-only) state they were counted in. Written by
    /// failures, read by successes.
    consecutive: Padded<AtomicU64>,
    /// Half-open trial slots handed out: `epoch << 32 | taken`. Recorded
    /// trials keep their slot; dropped ones give it back.
    trials: Padded<AtomicU64>,
    /// Metrics-only mode: the thresholds are currently exceeded (so the event
    /// is emitted once per crossing, not once per call). Off the hot line:
    /// it is written by records, which must not disturb admission.
    exceeded: Padded<AtomicBool>,
    /// Serialises transitions and holds what only they and trials touch.
    control: Mutex<Control>,
    config: CircuitBreakerConfig,
    origin: Instant,
}

#[derive(Debug)]
struct Control {
    /// Re-opens since the breaker was last closed (the backoff exponent).
    reopens: u32,
    /// The outcomes of the current half-open state's trials.
    trials: TrialTally,
}

/// A transition made, to be announced once the control lock is released.
#[derive(Debug, Clone, Copy)]
struct Transition {
    from: BreakerState,
    to: BreakerState,
    reason: TransitionReason,
    open_wait: Option<Duration>,
    totals: Option<Totals>,
}

#[derive(Debug, Clone, Copy, Default)]
struct TrialTally {
    epoch: u32,
    totals: Totals,
}

// ===== impl Shared =====

impl Shared {
    /// A closed breaker for `config`, which was validated.
    pub(super) fn new(config: CircuitBreakerConfig) -> Self {
        let shards = Sharded::new(|| Shard::new(&config.window, 0));
        let time_window = matches!(config.window, SlidingWindow::Time { .. });
        let fast_success = !time_window && config.slow_call_duration.is_none();
        let settings = Settings {
            fast_success,
            clean_tickets: fast_success && config.consecutive_failures.is_none(),
            slow_call_duration: config.slow_call_duration,
            consecutive_failures: config.consecutive_failures,
            time_window,
            failure_rate_threshold: config.failure_rate_threshold,
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            minimum_calls: config.effective_minimum_calls(),
            half_open_permits: config.half_open_permits,
            max_half_open_wait: config.max_half_open_wait,
        };
        Self {
            id: local::next_id(),
            retired: AtomicBool::new(false),
            hot: Padded(Hot {
                state: AtomicU64::new(
                    StateWord {
                        state: BreakerState::Closed,
                        epoch: 0,
                    }
                    .pack(),
                ),
                open_until: AtomicU64::new(0),
                half_open_since: AtomicU64::new(0),
                window_epoch: AtomicU32::new(0),
                settings,
                shards,
            }),
            consecutive: Padded(AtomicU64::new(0)),
            trials: Padded(AtomicU64::new(0)),
            exceeded: Padded(AtomicBool::new(false)),
            control: Mutex::new(Control {
                reopens: 0,
                trials: TrialTally::default(),
            }),
            config,
            origin: Instant::now(),
        }
    }

    #[inline(always)]
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    #[inline(always)]
    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the breaker retired: every handle to it is gone.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// The config the breaker was built with.
    pub(super) fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    #[inline(always)]
    pub(super) fn load_state(&self) -> StateWord {
        StateWord::unpack(self.load_packed_state())
    }

    /// The state word as stored, for admission, which tests the state code
    /// in place (unpacking and packing it again costs a few instructions
    /// on every call).
    #[inline(always)]
    pub(super) fn load_packed_state(&self) -> u64 {
        // Acquire: the fields a transition writes before publishing the
        // state word (open deadline, trial slots) are visible after this load.
        self.hot.state.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn settings(&self) -> &Settings {
        &self.hot.settings
    }

    fn now_nanos(&self) -> u64 {
        clock::nanos_since(self.origin)
    }

    #[inline(always)]
    fn local_shard(&self) -> &Shard {
        self.hot.shards.local()
    }

    /// The start of a call: the time with slow-call detection, 0 without
    /// (no clock read).
    #[inline(always)]
    pub(super) fn start_time(&self) -> u64 {
        if self.settings().slow_call_duration.is_some() {
            self.now_nanos()
        } else {
            0
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .field("state", &self.load_state())
            .finish_non_exhaustive()
    }
}
