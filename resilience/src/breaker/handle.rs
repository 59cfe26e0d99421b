//! The shared breaker: state machine, admission, recording, operator controls.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{
    CircuitBreakerLayer,
    config::{CircuitBreakerConfig, SlidingWindow},
    local,
    state::{BreakerState, StateWord, TransitionReason},
    window::{self, FAILED, SLOW, Shard, Totals},
};
use crate::{
    classify::Outcome,
    config::ConfigError,
    error::{CircuitRejection, ResilienceError},
};

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
    shared: Arc<Shared>,
    /// One handle to `shared` per shard, for owned permits (see [`Lane`]).
    lanes: Arc<Lanes>,
}

/// The lanes of one breaker, shared by all its handles: when the last
/// handle goes, the breaker is retired (see [`local`]).
struct Lanes(Box<[Arc<Lane>]>);

impl Drop for Lanes {
    fn drop(&mut self) {
        if let Some(lane) = self.0.first() {
            lane.shared.retired.store(true, Ordering::Relaxed);
        }
    }
}

/// A handle to a breaker's state for the owned permits of one shard's
/// threads. An owned permit must keep the state alive, and cloning one
/// `Arc` per call from every thread would make its reference count the one
/// line all threads write; cloning the calling thread's lane keeps that
/// write on a line of its own.
#[repr(align(128))]
struct Lane {
    shared: Arc<Shared>,
}

/// A permission to make one call, borrowed from a [`CircuitBreaker`].
///
/// Report what the call did with [`record`](Self::record). Dropping the permit
/// without recording records nothing; a half-open trial permit dropped that
/// way gives its trial slot back, so a cancelled call neither counts nor uses
/// up a trial.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct BreakerPermit<'a> {
    shared: &'a Shared,
    ticket: Ticket,
}

/// A [`BreakerPermit`] that owns a handle to its breaker, for futures that
/// must be `'static` (the `tower` service uses it). Costs an `Arc` clone,
/// of a handle private to the calling thread's shard, so threads do not
/// contend on one reference count.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedBreakerPermit {
    lane: Arc<Lane>,
    ticket: Ticket,
}

/// The permit a call of the `tower` service holds until it completes.
pub(crate) enum CallPermit {
    /// A half-open trial, or a permit reserved in `poll_ready`.
    Owned(OwnedBreakerPermit),
    /// Any other call: found again through the thread-local caches. Its
    /// drop has nothing to give back, so it needs no handle.
    Local { breaker: u64, ticket: Ticket },
}

impl CallPermit {
    #[inline(always)]
    pub(crate) fn record(self, outcome: Outcome) {
        match self {
            Self::Owned(permit) => permit.record(outcome),
            Self::Local { breaker, mut ticket } => {
                if outcome == Outcome::Success && ticket.success_needs_no_record(window::thread_seed()) {
                    return;
                }
                local::with_breaker(breaker, |shared| shared.on_outcome(&mut ticket, outcome, None));
            }
        }
    }
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
}

/// What a permit remembers: the state and epoch it was admitted in.
///
/// Two whole words, so that building one on the fast path and reading it
/// back never mixes narrow stores with wide loads (which stalls store
/// forwarding and cost more than the rest of the fast path together).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The [`StateWord`] it was admitted in; the state byte is `SETTLED`
    /// once recorded, and for calls that record nothing (disabled), and
    /// `REJECTED` for a rejection (which never becomes a permit).
    word: u64,
    /// When the call started, in nanoseconds since the breaker's origin;
    /// read only with slow-call detection (0 without).
    start: u64,
}

/// The state byte of a ticket with nothing (more) to record.
const SETTLED: u64 = 0xff;
/// The state byte of a rejection (see [`Ticket::rejection`]).
const REJECTED: u64 = 0xfe;
/// Set on a service call admitted while its thread's window was clean (see
/// [`Ticket::mark_clean`]); the thread's seed is in bits 24..32.
const CLEAN_AT_ADMISSION: u64 = 1 << 16;

impl Ticket {
    #[inline(always)]
    fn new(word: StateWord, start: u64) -> Self {
        Self {
            word: word.pack(),
            start,
        }
    }

    /// A rejection, carried in a ticket so that admission returns two words
    /// in registers: the kind in the word's second byte, the remaining open
    /// time in `start` (`u64::MAX` when unknown).
    #[inline(always)]
    fn rejection(kind: CircuitRejection, remaining: Option<Duration>) -> Self {
        let kind = match kind {
            CircuitRejection::Open => 0,
            CircuitRejection::HalfOpenFull => 1,
            _ => 2,
        };
        Self {
            word: (kind << 8) | REJECTED,
            start: remaining.map_or(u64::MAX, |r| u64::try_from(r.as_nanos()).unwrap_or(u64::MAX - 1)),
        }
    }

    #[inline(always)]
    pub(crate) fn is_rejection(&self) -> bool {
        self.word & 0xff == REJECTED
    }

    /// The kind and remaining time of a rejection ticket.
    fn rejected(&self) -> (CircuitRejection, Option<Duration>) {
        let kind = match (self.word >> 8) & 0xff {
            0 => CircuitRejection::Open,
            1 => CircuitRejection::HalfOpenFull,
            _ => CircuitRejection::ForcedOpen,
        };
        let remaining = (self.start != u64::MAX).then(|| Duration::from_nanos(self.start));
        (kind, remaining)
    }

    #[inline(always)]
    fn settled(epoch: u32) -> Self {
        Self {
            word: (u64::from(epoch) << 32) | SETTLED,
            start: 0,
        }
    }

    #[inline(always)]
    fn epoch(&self) -> u32 {
        (self.word >> 32) as u32
    }

    #[inline(always)]
    pub(crate) fn admitted_in(&self) -> Option<BreakerState> {
        match self.word & 0xff {
            SETTLED => None,
            code => Some(BreakerState::from_code(code as u8)),
        }
    }

    /// True for a closed or metrics-only call, recorded in the window.
    #[inline(always)]
    fn in_window(&self) -> bool {
        let code = (self.word & 0xff) as u8;
        code == BreakerState::Closed.code() || code == BreakerState::MetricsOnly.code()
    }

    /// Marks a call admitted while the window of the shard of the thread with
    /// `seed` was clean (full, no failure, no slow call), with no failure
    /// streak counted and no slow-call detection. A success of such a call
    /// completed on a thread with the same seed needs no recording: it would
    /// go into that same window, where it can only push out one of the
    /// successes that made it clean, changing no count. (Only if a whole
    /// window of other outcomes were recorded while the call ran would the
    /// oldest entry be a newer one; the success is then not counted, which
    /// keeps a failure in the window for at most one call longer.)
    #[inline(always)]
    fn mark_clean(&mut self, seed: usize) {
        self.word |= CLEAN_AT_ADMISSION | (((seed as u64) & 0xff) << 24);
    }

    /// Whether a success of this call, completed on the thread with `seed`,
    /// needs no recording (see [`mark_clean`](Self::mark_clean)).
    #[inline(always)]
    pub(crate) fn success_needs_no_record(&self, seed: usize) -> bool {
        self.word & CLEAN_AT_ADMISSION != 0 && ((self.word >> 24) & 0xff) as usize == seed
    }

    /// The state it was admitted in; nothing is left to record afterwards.
    #[inline(always)]
    fn settle(&mut self) -> Option<BreakerState> {
        let admitted_in = self.admitted_in();
        self.word |= SETTLED;
        admitted_in
    }
}

/// Pads a value to its own cache-line pair.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

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
    /// One window per shard; a thread records into `shards[seed & shard_mask]`.
    shards: Box<[Shard]>,
    shard_mask: usize,
}

/// The config, in the shape the hot path wants it.
#[derive(Debug)]
struct Settings {
    /// A count window without slow-call detection: a success in a clean
    /// window is recorded by one load (see `on_outcome`).
    fast_success: bool,
    slow_call_duration: Option<Duration>,
    consecutive_failures: Option<u32>,
    time_window: bool,
    failure_rate_threshold: f64,
    slow_call_rate_threshold: f64,
    minimum_calls: u64,
    half_open_permits: u32,
    max_half_open_wait: Option<Duration>,
}

pub(crate) struct Shared {
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

// ===== impl CircuitBreaker =====

impl CircuitBreaker {
    /// Validates `config` and builds a closed breaker.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    /// Builds a breaker from a config that was validated.
    pub(crate) fn from_valid(config: CircuitBreakerConfig) -> Self {
        let shards: Box<[Shard]> = (0..window::shard_count())
            .map(|_| Shard::new(&config.window, 0))
            .collect();
        let time_window = matches!(config.window, SlidingWindow::Time { .. });
        let settings = Settings {
            fast_success: !time_window && config.slow_call_duration.is_none(),
            slow_call_duration: config.slow_call_duration,
            consecutive_failures: config.consecutive_failures,
            time_window,
            failure_rate_threshold: config.failure_rate_threshold,
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            minimum_calls: config.effective_minimum_calls(),
            half_open_permits: config.half_open_permits,
            max_half_open_wait: config.max_half_open_wait,
        };
        let shared = Shared {
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
                shard_mask: shards.len() - 1,
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
        };
        metrics::gauge!("orch_breaker_state", "name" => shared.config.name.clone())
            .set(BreakerState::Closed.gauge_value());
        let shared = Arc::new(shared);
        local::register(&shared);
        let lanes = (0..shared.hot.shards.len())
            .map(|_| {
                Arc::new(Lane {
                    shared: shared.clone(),
                })
            })
            .collect();
        Self {
            shared,
            lanes: Arc::new(Lanes(lanes)),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The config the breaker was built with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The current state. Reading it makes no transition (see the type's
    /// docs on time-based transitions).
    #[inline(always)]
    pub fn state(&self) -> BreakerState {
        self.shared.load_state().state
    }

    /// True when the breaker admits every call without a permit to reserve
    /// (closed, metrics-only or disabled), so the decision can wait for the
    /// call itself.
    #[inline(always)]
    pub(crate) fn admits_everyone(&self) -> bool {
        matches!(
            self.shared.load_state().state,
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
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, ResilienceError> {
        let ticket = self.shared.acquire();
        if ticket.is_rejection() {
            return Err(self.shared.reject(ticket));
        }
        Ok(BreakerPermit {
            shared: &self.shared,
            ticket,
        })
    }

    /// [`try_acquire`](Self::try_acquire), returning a permit that owns a
    /// handle to the breaker (for `'static` futures).
    #[inline(always)]
    pub fn try_acquire_owned(&self) -> Result<OwnedBreakerPermit, ResilienceError> {
        let ticket = self.shared.acquire();
        if ticket.is_rejection() {
            return Err(self.shared.reject(ticket));
        }
        let lane = self.lanes.0[window::shard_index(self.shared.hot.shard_mask)].clone();
        Ok(OwnedBreakerPermit { lane, ticket })
    }

    /// Admission for the `tower` service, which builds its own permit from
    /// the ticket (see [`CallPermit`]): two words in registers, so the
    /// service's future is built in place.
    #[inline(always)]
    pub(crate) fn acquire_ticket(&self) -> Ticket {
        let mut ticket = self.shared.acquire();
        let settings = self.shared.settings();
        if ticket.in_window() && settings.fast_success && settings.consecutive_failures.is_none() {
            let seed = window::thread_seed();
            let hot = &self.shared.hot;
            if hot.shards[seed & hot.shard_mask].is_clean(ticket.epoch()) {
                ticket.mark_clean(seed);
            }
        }
        ticket
    }

    /// The error of a rejection ticket from [`acquire_ticket`](Self::acquire_ticket).
    pub(crate) fn rejection_error(&self, ticket: Ticket) -> ResilienceError {
        self.shared.reject(ticket)
    }

    /// An owned permit for an admitted ticket from [`acquire_ticket`](Self::acquire_ticket).
    pub(crate) fn owned_permit(&self, ticket: Ticket) -> OwnedBreakerPermit {
        let lane = self.lanes.0[window::shard_index(self.shared.hot.shard_mask)].clone();
        OwnedBreakerPermit { lane, ticket }
    }

    /// The breaker's id in the thread-local caches (see [`local`]).
    #[inline(always)]
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// A snapshot of the breaker's numbers (see [`BreakerMetrics`]).
    pub fn metrics(&self) -> BreakerMetrics {
        self.shared.metrics()
    }

    /// Forces the breaker open: every call is rejected with
    /// [`CircuitRejection::ForcedOpen`] until [`normal`](Self::normal) or
    /// [`reset`](Self::reset). Nothing is recorded meanwhile.
    pub fn force_open(&self) {
        self.shared
            .switch_mode(BreakerState::ForcedOpen, TransitionReason::ForcedOpen);
    }

    /// Disables the breaker: every call passes and nothing is recorded,
    /// until [`normal`](Self::normal) or [`reset`](Self::reset).
    pub fn disable(&self) {
        self.shared
            .switch_mode(BreakerState::Disabled, TransitionReason::Disabled);
    }

    /// Puts the breaker in metrics-only mode: every call passes and is
    /// recorded in a fresh window; crossing a threshold emits a `tracing`
    /// event and increments `orch_breaker_threshold_exceeded_total` once per
    /// crossing, but never rejects.
    pub fn metrics_only(&self) {
        self.shared
            .switch_mode(BreakerState::MetricsOnly, TransitionReason::MetricsOnly);
    }

    /// Leaves forced-open, disabled or metrics-only mode for a closed
    /// breaker with an empty window. Does nothing when the breaker is
    /// closed, open or half-open.
    pub fn normal(&self) {
        self.shared.normal();
    }

    /// Closes the breaker from any state and forgets everything: the window,
    /// the consecutive failures and the open-wait backoff. Permits handed out
    /// before the reset record nothing.
    pub fn reset(&self) {
        self.shared
            .transition(None, BreakerState::Closed, TransitionReason::Reset, None, None);
    }

    /// A layer whose services share this breaker.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::shared(self.clone())
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.config.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

// ===== impl BreakerPermit =====

impl BreakerPermit<'_> {
    /// Records what the call did: a failure ([`Outcome::is_failure`]) or a
    /// success counts in the window (or the trials); [`Outcome::Rejected`]
    /// records nothing, as if the permit were dropped. With slow-call
    /// detection, the call's duration is the time since the permit was
    /// acquired.
    ///
    /// An outcome is stale, and not counted, when the breaker has changed
    /// state since the permit was acquired.
    #[inline(always)]
    pub fn record(mut self, outcome: Outcome) {
        self.shared.on_outcome(&mut self.ticket, outcome, None);
    }

    /// [`record`](Self::record) with the call's duration measured by the
    /// caller, instead of the time since the permit was acquired.
    #[inline(always)]
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.shared.on_outcome(&mut self.ticket, outcome, Some(duration));
    }

    /// The state the call was admitted in: `Closed`, `HalfOpen` for a trial,
    /// or `MetricsOnly`; `None` for a disabled breaker's permit, which
    /// records nothing.
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.ticket.admitted_in()
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.shared.release(&mut self.ticket);
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.shared.config.name)
            .field("admitted_in", &self.ticket.admitted_in())
            .finish()
    }
}

// ===== impl OwnedBreakerPermit =====

impl OwnedBreakerPermit {
    /// Records what the call did; see [`BreakerPermit::record`].
    #[inline(always)]
    pub fn record(mut self, outcome: Outcome) {
        self.lane.shared.on_outcome(&mut self.ticket, outcome, None);
    }

    /// Records what the call did with its measured duration; see
    /// [`BreakerPermit::record_with_duration`].
    #[inline(always)]
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        self.lane
            .shared
            .on_outcome(&mut self.ticket, outcome, Some(duration));
    }

    /// The state the call was admitted in; see [`BreakerPermit::admitted_in`].
    pub fn admitted_in(&self) -> Option<BreakerState> {
        self.ticket.admitted_in()
    }

    /// The name of the breaker the permit belongs to.
    pub fn breaker_name(&self) -> &str {
        &self.lane.shared.config.name
    }

    /// Measures the call's duration from now (the service takes its permit
    /// in `poll_ready`, but the call starts in `call`).
    #[inline(always)]
    pub(crate) fn restart_clock(&mut self) {
        self.ticket.start = self.lane.shared.start_time();
    }
}

impl Drop for OwnedBreakerPermit {
    #[inline(always)]
    fn drop(&mut self) {
        self.lane.shared.release(&mut self.ticket);
    }
}

impl fmt::Debug for OwnedBreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBreakerPermit")
            .field("breaker", &self.lane.shared.config.name)
            .field("admitted_in", &self.ticket.admitted_in())
            .finish()
    }
}

// ===== impl Shared =====

impl Shared {
    #[inline(always)]
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    #[inline(always)]
    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn load_state(&self) -> StateWord {
        // Acquire: the fields a transition writes before publishing the
        // state word (open deadline, trial slots) are visible after this load.
        StateWord::unpack(self.hot.state.load(Ordering::Acquire))
    }

    #[inline(always)]
    fn settings(&self) -> &Settings {
        &self.hot.settings
    }

    fn now_nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    fn nanos_at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline(always)]
    fn local_shard(&self) -> &Shard {
        &self.hot.shards[window::shard_index(self.hot.shard_mask)]
    }

    /// The start of a call: the time with slow-call detection, 0 without
    /// (no clock read).
    #[inline(always)]
    fn start_time(&self) -> u64 {
        if self.settings().slow_call_duration.is_some() {
            self.now_nanos()
        } else {
            0
        }
    }

    // ----- admission -----

    /// A ticket for one call, or a rejection encoded as a ticket (see
    /// [`Ticket::rejection`]): two words returned in registers, so the
    /// admitted path never goes through memory.
    #[inline(always)]
    fn acquire(&self) -> Ticket {
        let word = self.load_state();
        if word.state.records_in_window() {
            return Ticket::new(word, self.start_time());
        }
        self.acquire_slow(word)
    }

    #[inline(never)]
    fn acquire_slow(&self, mut word: StateWord) -> Ticket {
        // Each turn either returns or follows a transition, made here or by
        // another thread, so the loop ends.
        loop {
            match word.state {
                BreakerState::Closed | BreakerState::MetricsOnly => {
                    return Ticket::new(word, self.start_time());
                }
                BreakerState::Disabled => {
                    return Ticket::settled(word.epoch);
                }
                BreakerState::ForcedOpen => return Ticket::rejection(CircuitRejection::ForcedOpen, None),
                BreakerState::Open => {
                    let now = self.now_nanos();
                    let until = self.hot.open_until.load(Ordering::Relaxed);
                    if now < until {
                        let remaining = Duration::from_nanos(until - now);
                        return Ticket::rejection(CircuitRejection::Open, Some(remaining));
                    }
                    self.transition(
                        Some(word),
                        BreakerState::HalfOpen,
                        TransitionReason::OpenWaitElapsed,
                        Some(now),
                        None,
                    );
                }
                BreakerState::HalfOpen => {
                    if let Some(ticket) = self.acquire_trial(word) {
                        return ticket;
                    }
                }
            }
            word = self.load_state();
        }
    }

    /// Takes a trial slot of the half-open state `word` (or is rejected);
    /// `None` when the state changed meanwhile.
    fn acquire_trial(&self, word: StateWord) -> Option<Ticket> {
        if self.half_open_expired(word) {
            return None;
        }
        let permits = self.settings().half_open_permits;
        let mut trials = self.trials.load(Ordering::Acquire);
        loop {
            if (trials >> 32) as u32 != word.epoch {
                return None;
            }
            if trials as u32 >= permits {
                return Some(Ticket::rejection(CircuitRejection::HalfOpenFull, None));
            }
            // The compare-and-swap on (epoch, taken) is what makes "exactly
            // `half_open_permits`" hold under any number of racing callers.
            match self
                .trials
                .compare_exchange_weak(trials, trials + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Ticket::new(word, self.start_time())),
                Err(actual) => trials = actual,
            }
        }
    }

    /// Opens the half-open breaker `word` again if it has waited
    /// `max_half_open_wait` without a decision; true if the state is no longer `word`.
    fn half_open_expired(&self, word: StateWord) -> bool {
        let Some(max) = self.settings().max_half_open_wait else {
            return false;
        };
        let now = self.now_nanos();
        let since = self.hot.half_open_since.load(Ordering::Relaxed);
        if Duration::from_nanos(now.saturating_sub(since)) < max {
            return false;
        }
        self.transition(
            Some(word),
            BreakerState::Open,
            TransitionReason::MaxHalfOpenWait,
            Some(now),
            None,
        );
        true
    }

    /// Gives back the trial slot of a permit that records nothing.
    #[inline(always)]
    fn release(&self, ticket: &mut Ticket) {
        if ticket.settle() == Some(BreakerState::HalfOpen) {
            self.release_trial(ticket.epoch());
        }
    }

    #[inline(never)]
    fn release_trial(&self, epoch: u32) {
        let mut trials = self.trials.load(Ordering::Acquire);
        while (trials >> 32) as u32 == epoch && trials as u32 > 0 {
            match self
                .trials
                .compare_exchange_weak(trials, trials - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => trials = actual,
            }
        }
    }

    /// The error for a rejection ticket; counts, logs and measures it.
    #[cold]
    #[inline(never)]
    fn reject(&self, ticket: Ticket) -> ResilienceError {
        let (rejection, remaining) = ticket.rejected();
        self.local_shard().count_rejection();
        let reason = match rejection {
            CircuitRejection::Open => "open",
            CircuitRejection::HalfOpenFull => "half_open_full",
            _ => "forced_open",
        };
        tracing::debug!(
            name = %self.config.name,
            reason,
            remaining_ms = remaining.map(|r| r.as_millis() as u64),
            "circuit breaker rejected a call"
        );
        metrics::counter!(
            "orch_breaker_rejections_total",
            "name" => self.config.name.clone(),
            "reason" => reason,
        )
        .increment(1);
        ResilienceError::CircuitOpen {
            name: self.config.name.clone(),
            rejection,
            remaining,
        }
    }

    // ----- recording -----

    #[inline(always)]
    fn on_outcome(&self, ticket: &mut Ticket, outcome: Outcome, duration: Option<Duration>) {
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

    fn consecutive_in(&self, epoch: u32) -> u32 {
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

    // ----- transitions -----

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Transitions leave `Control` consistent at every step; poison is ignored.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves from `expected` (any state when `None`) to `to`; does nothing
    /// and returns false when the state is no longer `expected`, so each
    /// transition happens once however many threads ask for it.
    fn transition(
        &self,
        expected: Option<StateWord>,
        to: BreakerState,
        reason: TransitionReason,
        now: Option<u64>,
        totals: Option<Totals>,
    ) -> bool {
        let mut control = self.lock_control();
        let current = self.load_state();
        if expected.is_some_and(|expected| expected != current) {
            return false;
        }
        let now = now.unwrap_or_else(|| self.now_nanos());
        let done = self.transition_locked(&mut control, current, to, reason, now, totals);
        drop(control);
        self.announce(done);
        true
    }

    /// Makes the transition; the caller holds the control lock, and
    /// announces the returned transition once it has released it (so a
    /// `tracing` subscriber or metrics recorder that looks at the breaker
    /// cannot deadlock on the lock).
    fn transition_locked(
        &self,
        control: &mut Control,
        current: StateWord,
        to: BreakerState,
        reason: TransitionReason,
        now: u64,
        totals: Option<Totals>,
    ) -> Transition {
        let next = current.next(to);
        let mut open_wait = None;
        match to {
            BreakerState::Open => {
                control.reopens = if current.state == BreakerState::HalfOpen {
                    control.reopens.saturating_add(1)
                } else {
                    0
                };
                let wait = self.config.open_wait_after(control.reopens);
                let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.hot
                    .open_until
                    .store(now.saturating_add(wait_nanos), Ordering::Relaxed);
                open_wait = Some(wait);
            }
            BreakerState::HalfOpen => {
                control.trials = TrialTally {
                    epoch: next.epoch,
                    totals: Totals::default(),
                };
                self.trials.store(u64::from(next.epoch) << 32, Ordering::Relaxed);
                self.hot.half_open_since.store(now, Ordering::Relaxed);
            }
            BreakerState::Closed | BreakerState::MetricsOnly => {
                // Shard windows and the consecutive count are tagged with the
                // epoch and empty themselves when next touched.
                if to == BreakerState::Closed {
                    control.reopens = 0;
                }
                self.hot.window_epoch.store(next.epoch, Ordering::Relaxed);
                self.exceeded.store(false, Ordering::Relaxed);
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        // Release: publishes the fields written above with the new state.
        self.hot.state.store(next.pack(), Ordering::Release);
        Transition {
            from: current.state,
            to,
            reason,
            open_wait,
            totals,
        }
    }

    /// Emits the event and metrics of a transition.
    fn announce(&self, transition: Transition) {
        let Transition {
            from,
            to,
            reason,
            open_wait,
            totals,
        } = transition;
        let name = &self.config.name;
        let open_wait_ms = open_wait.map(|w| w.as_millis() as u64);
        let calls = totals.map(|t| t.calls);
        let failure_rate = totals.map(|t| t.failure_rate());
        let slow_call_rate = totals.map(|t| t.slow_call_rate());
        if to == BreakerState::Open {
            tracing::warn!(
                name = %name,
                from = from.as_str(),
                to = to.as_str(),
                reason = reason.as_str(),
                calls,
                failure_rate,
                slow_call_rate,
                open_wait_ms,
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
        metrics::gauge!("orch_breaker_state", "name" => name.clone())
            .set(self.load_state().state.gauge_value());
    }

    fn switch_mode(&self, to: BreakerState, reason: TransitionReason) {
        let mut control = self.lock_control();
        let current = self.load_state();
        if current.state != to {
            let now = self.now_nanos();
            let done = self.transition_locked(&mut control, current, to, reason, now, None);
            drop(control);
            self.announce(done);
        }
    }

    fn normal(&self) {
        let mut control = self.lock_control();
        let current = self.load_state();
        if matches!(
            current.state,
            BreakerState::ForcedOpen | BreakerState::Disabled | BreakerState::MetricsOnly
        ) {
            let now = self.now_nanos();
            let done = self.transition_locked(
                &mut control,
                current,
                BreakerState::Closed,
                TransitionReason::Normal,
                now,
                None,
            );
            drop(control);
            self.announce(done);
        }
    }

    // ----- snapshot -----

    fn metrics(&self) -> BreakerMetrics {
        let word = self.load_state();
        let window_epoch = self.hot.window_epoch.load(Ordering::Relaxed);
        let totals = if word.state == BreakerState::HalfOpen {
            let control = self.lock_control();
            if control.trials.epoch == word.epoch {
                control.trials.totals
            } else {
                Totals::default()
            }
        } else {
            let now = if self.settings().time_window {
                self.now_nanos()
            } else {
                0
            };
            window::aggregate(&self.hot.shards, window_epoch, now)
        };
        BreakerMetrics {
            state: word.state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            consecutive_failures: self.consecutive_in(window_epoch),
            rejections: self.hot.shards.iter().map(Shard::rejections).sum(),
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
