//! The breaker's state machine, which every handle, shard handle and
//! permit of one breaker shares: admission, recording, transitions and the metrics
//! snapshot.
//!
//! Its layout serves the hot path: what every call reads (the current
//! phase, the config, where the shard windows are) is written only by
//! transitions, so it stays shared in every core's cache; what records and
//! trials write (the failure streak, the trial slots, the metrics-only
//! flag) sits on cache lines of its own. The methods are grouped by the
//! step of a call they serve:
//!
//! - `admission`: whether a call may be made;
//! - `recording`: an outcome into the window or the trials, and the verdict
//!   it may trigger;
//! - here, transitions: moving between states once, and announcing it.
//!
//! A transition takes the control lock and checks the phase it starts from,
//! so racing threads make it once; it writes what the new state needs (the
//! open deadline, the trial slots, the window's epoch) before publishing the
//! new phase, and is announced (`tracing` event, metrics) only after the
//! lock is released; subscribers get it under the lock, in order. The
//! operator's mode switches are transitions too.

use std::sync::{
    Mutex, MutexGuard, PoisonError,
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use tokio::{sync::broadcast, time::Instant};

use super::{
    BreakerMetrics, BreakerTransition,
    config::{CircuitBreakerConfig, SlidingWindow},
    state::{BreakerState, Phase, SUBSCRIBER_BACKLOG, TransitionReason, count_in, pack},
    window::{self, Shard, Totals},
};
use crate::{
    clock,
    shard::{Padded, Sharded},
};

mod admission;
mod recording;

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

// ===== transitions =====

impl StateMachine {
    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Transitions leave `Control` consistent at every step; poison is ignored.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` if `from` accepts the current phase; returns whether it
    /// did. A caller that saw a phase passes `|current| current == seen`,
    /// so each transition happens once however many threads ask for it.
    pub(in crate::breaker) fn transition(
        &self,
        from: impl FnOnce(Phase) -> bool,
        to: BreakerState,
        reason: TransitionReason,
        totals: Option<Totals>,
    ) -> bool {
        let mut control = self.lock_control();
        let current = self.phase();
        if !from(current) {
            return false;
        }
        let now = self.now_nanos();
        let made = self.transition_locked(&mut control, current, to, reason, now, totals);
        drop(control);
        self.announce(&made);
        true
    }

    /// Makes the transition from `current` at `now`; the caller holds the
    /// control lock, and announces the returned transition once it has
    /// released it (so a `tracing` subscriber or metrics recorder that looks
    /// at the breaker cannot deadlock on the lock).
    fn transition_locked(
        &self,
        control: &mut Control,
        current: Phase,
        to: BreakerState,
        reason: TransitionReason,
        now: u64,
        totals: Option<Totals>,
    ) -> BreakerTransition {
        let next = current.next(to);
        let mut open_wait = None;
        match to {
            BreakerState::Open => {
                control.openings = control.openings.saturating_add(1);
                control.reopens = if current.state == BreakerState::HalfOpen {
                    control.reopens.saturating_add(1)
                } else {
                    0
                };
                let wait = self.config.open_wait_after(control.reopens);
                let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.open_until
                    .store(now.saturating_add(wait_nanos), Ordering::Relaxed);
                open_wait = Some(wait);
            }
            BreakerState::HalfOpen => {
                control.trials = Totals::default();
                self.trial_slots.store(pack(next.epoch, 0), Ordering::Relaxed);
                self.half_open_since.store(now, Ordering::Relaxed);
            }
            BreakerState::Closed | BreakerState::MetricsOnly => {
                // Shard windows and the failure streak are tagged with their
                // epoch and empty themselves when next touched.
                if to == BreakerState::Closed {
                    control.reopens = 0;
                }
                self.window_epoch.store(next.epoch, Ordering::Relaxed);
                self.exceeded.store(false, Ordering::Relaxed);
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        // Release: publishes the fields written above with the new phase.
        self.phase.store(next.pack(), Ordering::Release);
        let made = BreakerTransition {
            name: self.config.name.clone(),
            from: current.state,
            to,
            reason,
            open_wait,
            calls: totals.map(|t| t.calls),
            failure_rate: totals.map(|t| t.failure_rate()),
            slow_call_rate: totals.map(|t| t.slow_call_rate()),
        };
        // Under the lock, so that subscribers hear transitions in the
        // order they were made; `send` only queues, it runs no user code.
        if self.transitions.receiver_count() > 0 {
            let _no_receiver_left = self.transitions.send(made.clone());
        }
        made
    }

    /// Emits the event and metrics of a transition.
    fn announce(&self, transition: &BreakerTransition) {
        let BreakerTransition {
            ref name,
            from,
            to,
            reason,
            open_wait,
            calls,
            failure_rate,
            slow_call_rate,
            ..
        } = *transition;
        if to == BreakerState::Open {
            tracing::warn!(
                name = %name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                calls,
                failure_rate,
                slow_call_rate,
                open_wait_ms = open_wait.map(|w| w.as_millis() as u64),
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
        metrics::gauge!("orch_breaker_state", "name" => name.clone()).set(self.phase().state.gauge_value());
    }
}
