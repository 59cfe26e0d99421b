//! Property tests of the circuit breaker.
//!
//! 1. A reference model (the state machine and windows written the plain,
//!    slow way) and the breaker are driven by the same random steps on paused
//!    time, single-threaded; every admission decision, rejection, state and
//!    window count must match step by step.
//! 2. Half-open admits exactly `half_open_permits` trials however many
//!    threads race for them.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::{collections::VecDeque, time::Duration};

use orch_resilience::{
    CircuitRejection, Outcome, ResilienceError,
    breaker::{BreakerState, CircuitBreaker, CircuitBreakerConfig, SlidingWindow},
};
use proptest::prelude::*;

// ===== the reference model =====

#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    Admitted,
    Rejected(CircuitRejection, Option<Duration>),
}

#[derive(Debug, Clone, Copy)]
struct ModelTicket {
    state: BreakerState,
    epoch: u64,
    start: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    calls: u64,
    failures: u64,
    slow: u64,
}

/// The breaker as its docs describe it, one window, no cleverness.
struct Model {
    config: CircuitBreakerConfig,
    now: Duration,
    state: BreakerState,
    epoch: u64,
    open_until: Duration,
    half_open_since: Duration,
    reopens: u32,
    /// Count window: the marks of the last calls. Time window: (bucket, mark).
    calls: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    trials_taken: u32,
    trials: Counts,
    rejections: u64,
}

impl Model {
    fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            now: Duration::ZERO,
            state: BreakerState::Closed,
            epoch: 0,
            open_until: Duration::ZERO,
            half_open_since: Duration::ZERO,
            reopens: 0,
            calls: VecDeque::new(),
            consecutive: 0,
            trials_taken: 0,
            trials: Counts::default(),
            rejections: 0,
        }
    }

    fn bucket_width(&self) -> Option<u128> {
        match self.config.window {
            SlidingWindow::Count { .. } => None,
            SlidingWindow::Time { length, buckets } => {
                let n = buckets.unwrap_or_else(|| length.as_secs().max(1) as u32);
                Some(length.as_nanos() / u128::from(n))
            }
        }
    }

    fn bucket_count(&self) -> u64 {
        match self.config.window {
            SlidingWindow::Count { .. } => 0,
            SlidingWindow::Time { length, buckets } => {
                u64::from(buckets.unwrap_or_else(|| length.as_secs().max(1) as u32))
            }
        }
    }

    fn window(&self) -> Counts {
        let current = self.bucket_width().map(|w| (self.now.as_nanos() / w) as u64);
        let n = self.bucket_count();
        let mut counts = Counts::default();
        for &(bucket, failed, slow) in &self.calls {
            if let Some(current) = current
                && bucket + n <= current
            {
                continue;
            }
            counts.calls += 1;
            counts.failures += u64::from(failed);
            counts.slow += u64::from(slow);
        }
        counts
    }

    fn open_wait(&self) -> Duration {
        let c = &self.config;
        if self.reopens == 0 || c.open_wait_multiplier <= 1.0 {
            return c.open_wait;
        }
        let max = c.open_wait_max.unwrap();
        let nanos = c.open_wait.as_nanos() as f64 * c.open_wait_multiplier.powi(self.reopens as i32);
        if nanos >= max.as_nanos() as f64 {
            max
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }

    fn enter(&mut self, state: BreakerState) {
        match state {
            BreakerState::Open => {
                self.reopens = if self.state == BreakerState::HalfOpen {
                    self.reopens + 1
                } else {
                    0
                };
                self.open_until = self.now + self.open_wait();
            }
            BreakerState::HalfOpen => {
                self.half_open_since = self.now;
                self.trials_taken = 0;
                self.trials = Counts::default();
            }
            BreakerState::Closed | BreakerState::MetricsOnly => {
                if state == BreakerState::Closed {
                    self.reopens = 0;
                }
                self.calls.clear();
                self.consecutive = 0;
            }
            BreakerState::ForcedOpen | BreakerState::Disabled => {}
        }
        self.state = state;
        self.epoch += 1;
    }

    fn half_open_expired(&self) -> bool {
        self.config
            .max_half_open_wait
            .is_some_and(|max| self.now - self.half_open_since >= max)
    }

    fn acquire(&mut self) -> Result<ModelTicket, Decision> {
        loop {
            let ticket = ModelTicket {
                state: self.state,
                epoch: self.epoch,
                start: self.now,
            };
            match self.state {
                BreakerState::Closed | BreakerState::MetricsOnly | BreakerState::Disabled => {
                    return Ok(ticket);
                }
                BreakerState::ForcedOpen => return Err(self.reject(CircuitRejection::ForcedOpen, None)),
                BreakerState::Open => {
                    if self.now < self.open_until {
                        let remaining = self.open_until - self.now;
                        return Err(self.reject(CircuitRejection::Open, Some(remaining)));
                    }
                    self.enter(BreakerState::HalfOpen);
                }
                BreakerState::HalfOpen => {
                    if self.half_open_expired() {
                        self.enter(BreakerState::Open);
                        continue;
                    }
                    if self.trials_taken >= self.config.half_open_permits {
                        return Err(self.reject(CircuitRejection::HalfOpenFull, None));
                    }
                    self.trials_taken += 1;
                    return Ok(ticket);
                }
            }
        }
    }

    fn reject(&mut self, rejection: CircuitRejection, remaining: Option<Duration>) -> Decision {
        self.rejections += 1;
        Decision::Rejected(rejection, remaining)
    }

    fn release(&mut self, ticket: ModelTicket) {
        if ticket.state == BreakerState::HalfOpen
            && self.state == BreakerState::HalfOpen
            && ticket.epoch == self.epoch
        {
            self.trials_taken -= 1;
        }
    }

    fn record(&mut self, ticket: ModelTicket, outcome: Outcome) {
        if outcome == Outcome::Rejected {
            return self.release(ticket);
        }
        if ticket.epoch != self.epoch {
            return;
        }
        let failed = outcome.is_failure();
        let slow = self
            .config
            .slow_call_duration
            .is_some_and(|limit| self.now - ticket.start > limit);
        match ticket.state {
            BreakerState::Closed | BreakerState::MetricsOnly => self.record_in_window(failed, slow),
            BreakerState::HalfOpen => self.record_trial(failed, slow),
            _ => {}
        }
    }

    fn record_in_window(&mut self, failed: bool, slow: bool) {
        match self.config.window {
            SlidingWindow::Count { size } => {
                if self.calls.len() == size as usize {
                    self.calls.pop_front();
                }
                self.calls.push_back((0, failed, slow));
            }
            SlidingWindow::Time { .. } => {
                let bucket = (self.now.as_nanos() / self.bucket_width().unwrap()) as u64;
                self.calls.push_back((bucket, failed, slow));
            }
        }
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        let c = &self.config;
        let by_consecutive = failed && c.consecutive_failures.is_some_and(|n| self.consecutive >= n);
        let window = self.window();
        let minimum = match c.window {
            SlidingWindow::Count { size } => c.minimum_calls.min(size),
            SlidingWindow::Time { .. } => c.minimum_calls,
        };
        let by_rates = window.calls >= u64::from(minimum)
            && (window.failures as f64 / window.calls as f64 >= c.failure_rate_threshold
                || (c.slow_call_duration.is_some()
                    && window.slow as f64 / window.calls as f64 >= c.slow_call_rate_threshold));
        if (by_consecutive || by_rates) && self.state == BreakerState::Closed {
            self.enter(BreakerState::Open);
        }
    }

    fn record_trial(&mut self, failed: bool, slow: bool) {
        if self.half_open_expired() {
            return self.enter(BreakerState::Open);
        }
        self.trials.calls += 1;
        self.trials.failures += u64::from(failed);
        self.trials.slow += u64::from(slow);
        let c = &self.config;
        let n = f64::from(c.half_open_permits);
        if self.trials.failures as f64 / n >= c.failure_rate_threshold
            || (c.slow_call_duration.is_some() && self.trials.slow as f64 / n >= c.slow_call_rate_threshold)
        {
            self.enter(BreakerState::Open);
        } else if self.trials.calls >= u64::from(c.half_open_permits) {
            self.enter(BreakerState::Closed);
        }
    }

    fn switch(&mut self, to: BreakerState) {
        if self.state != to {
            self.enter(to);
        }
    }

    fn normal(&mut self) {
        if matches!(
            self.state,
            BreakerState::ForcedOpen | BreakerState::Disabled | BreakerState::MetricsOnly
        ) {
            self.enter(BreakerState::Closed);
        }
    }

    fn counts(&self) -> Counts {
        if self.state == BreakerState::HalfOpen {
            self.trials
        } else {
            self.window()
        }
    }
}

// ===== steps =====

#[derive(Debug, Clone)]
enum Step {
    Advance(Duration),
    /// Acquire, let `took` pass, record `outcome`.
    Call {
        outcome: Outcome,
        took: Duration,
    },
    /// Acquire and keep the permit.
    Hold,
    /// Record the held permit `index % held`.
    Finish {
        index: usize,
        outcome: Outcome,
    },
    /// Drop the held permit `index % held` without an outcome.
    Drop {
        index: usize,
    },
    ForceOpen,
    Disable,
    MetricsOnly,
    Normal,
    Reset,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Retryable),
        1 => Just(Outcome::Rejected),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..12).prop_map(|q| Step::Advance(Duration::from_millis(q * 250))),
        12 => (outcome(), prop::sample::select(vec![0u64, 50, 100, 150, 400]))
            .prop_map(|(outcome, ms)| Step::Call { outcome, took: Duration::from_millis(ms) }),
        2 => Just(Step::Hold),
        2 => (any::<usize>(), outcome()).prop_map(|(index, outcome)| Step::Finish { index, outcome }),
        1 => any::<usize>().prop_map(|index| Step::Drop { index }),
        1 => prop_oneof![
            Just(Step::ForceOpen),
            Just(Step::Disable),
            Just(Step::MetricsOnly),
            Just(Step::Normal),
            Just(Step::Reset),
        ],
    ]
}

fn rate() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.2, 0.25, 0.3, 0.5, 0.75, 1.0])
}

fn config() -> impl Strategy<Value = CircuitBreakerConfig> {
    let window = prop_oneof![
        (1u32..8).prop_map(|size| SlidingWindow::Count { size }),
        (1u64..5, prop::option::of(1u32..6)).prop_map(|(secs, buckets)| SlidingWindow::Time {
            length: Duration::from_secs(secs),
            buckets,
        }),
    ];
    (
        window,
        (rate(), rate()),
        prop::option::of(prop::sample::select(vec![50u64, 100])),
        prop::option::of(1u32..4),
        1u32..6,
        (1u64..4, prop::bool::ANY),
        1u32..4,
        prop::option::of(1u64..4),
    )
        .prop_map(
            |(
                window,
                (failure, slow_rate),
                slow,
                consecutive,
                minimum,
                (open, backoff),
                permits,
                max_half,
            )| {
                let mut c = CircuitBreakerConfig::default()
                    .name("model")
                    .window(window)
                    .failure_rate_threshold(failure)
                    .slow_call_rate_threshold(slow_rate)
                    .minimum_calls(minimum)
                    .open_wait(Duration::from_secs(open))
                    .half_open_permits(permits);
                if let Some(ms) = slow {
                    c = c.slow_call_duration(Duration::from_millis(ms));
                }
                if let Some(n) = consecutive {
                    c = c.consecutive_failures(n);
                }
                if backoff {
                    c = c.open_wait_backoff(1.5, Duration::from_secs(open * 3));
                }
                if let Some(secs) = max_half {
                    c = c.max_half_open_wait(Duration::from_secs(secs));
                }
                c
            },
        )
}

fn decision(result: &Result<(), ResilienceError>) -> Decision {
    match result {
        Ok(()) => Decision::Admitted,
        Err(ResilienceError::CircuitOpen {
            rejection, remaining, ..
        }) => Decision::Rejected(*rejection, *remaining),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fn model_decision(result: &Result<ModelTicket, Decision>) -> Decision {
    match result {
        Ok(_) => Decision::Admitted,
        Err(decision) => *decision,
    }
}

/// Runs `steps` on a breaker and the model, on paused time, comparing as it goes.
fn run(config: CircuitBreakerConfig, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let breaker = CircuitBreaker::new(config.clone()).unwrap();
        let mut model = Model::new(config);
        let mut held = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            match step.clone() {
                Step::Advance(d) => {
                    tokio::time::advance(d).await;
                    model.now += d;
                }
                Step::Call { outcome, took } => {
                    let real = breaker.try_acquire_owned();
                    let expected = model.acquire();
                    prop_assert_eq!(
                        decision(&real.as_ref().map(|_| ()).map_err(clone_err)),
                        model_decision(&expected),
                        "step {} {:?}",
                        i,
                        step
                    );
                    tokio::time::advance(took).await;
                    model.now += took;
                    if let (Ok(permit), Ok(ticket)) = (real, expected) {
                        permit.record(outcome);
                        model.record(ticket, outcome);
                    }
                }
                Step::Hold => {
                    let real = breaker.try_acquire_owned();
                    let expected = model.acquire();
                    prop_assert_eq!(
                        decision(&real.as_ref().map(|_| ()).map_err(clone_err)),
                        model_decision(&expected),
                        "step {} {:?}",
                        i,
                        step
                    );
                    if let (Ok(permit), Ok(ticket)) = (real, expected) {
                        held.push((permit, ticket));
                    }
                }
                Step::Finish { index, outcome } if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(index % held.len());
                    permit.record(outcome);
                    model.record(ticket, outcome);
                }
                Step::Drop { index } if !held.is_empty() => {
                    let (permit, ticket) = held.swap_remove(index % held.len());
                    drop(permit);
                    model.release(ticket);
                }
                Step::Finish { .. } | Step::Drop { .. } => {}
                Step::ForceOpen => {
                    breaker.force_open();
                    model.switch(BreakerState::ForcedOpen);
                }
                Step::Disable => {
                    breaker.disable();
                    model.switch(BreakerState::Disabled);
                }
                Step::MetricsOnly => {
                    breaker.metrics_only();
                    model.switch(BreakerState::MetricsOnly);
                }
                Step::Normal => {
                    breaker.normal();
                    model.normal();
                }
                Step::Reset => {
                    breaker.reset();
                    model.enter(BreakerState::Closed);
                }
            }
            prop_assert_eq!(breaker.state(), model.state, "state after step {} {:?}", i, step);
            let m = breaker.metrics();
            let expected = model.counts();
            prop_assert_eq!(
                (m.calls, m.failures, m.slow_calls),
                (expected.calls, expected.failures, expected.slow),
                "window after step {} {:?}",
                i,
                step
            );
            prop_assert_eq!(m.rejections, model.rejections);
            if model.config.consecutive_failures.is_some() {
                prop_assert_eq!(m.consecutive_failures, model.consecutive);
            }
        }
        Ok(())
    })
}

fn clone_err(err: &ResilienceError) -> ResilienceError {
    match err {
        ResilienceError::CircuitOpen {
            name,
            rejection,
            remaining,
        } => ResilienceError::CircuitOpen {
            name: name.clone(),
            rejection: *rejection,
            remaining: *remaining,
        },
        other => panic!("unexpected error {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Single-threaded, the breaker is exactly the model.
    #[test]
    fn breaker_matches_the_reference_model(config in config(), steps in prop::collection::vec(step(), 1..120)) {
        run(config, steps)?;
    }
}

// ===== half-open under concurrency =====

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Threads racing for trial permits get exactly `half_open_permits` of
    /// them, including the race to make the breaker half-open; once every
    /// trial reports success concurrently, the breaker is closed.
    #[test]
    fn half_open_admits_exactly_the_configured_trials(
        permits in 1u32..24,
        threads in 2usize..8,
        attempts in 1usize..16,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let breaker = runtime.block_on(async {
            let breaker = CircuitBreakerConfig::default()
                .count_window(1)
                .minimum_calls(1)
                .open_wait(Duration::from_secs(5))
                .half_open_permits(permits)
                .build()
                .unwrap();
            breaker.try_acquire().unwrap().record(Outcome::Failure);
            tokio::time::advance(Duration::from_secs(5)).await;
            breaker
        });
        prop_assert_eq!(breaker.state(), BreakerState::Open);
        let handle = runtime.handle();
        let barrier = std::sync::Barrier::new(threads);
        let admitted: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        // The paused clock of the test runtime, on this thread too.
                        let _clock = handle.enter();
                        barrier.wait();
                        (0..attempts).filter_map(|_| breaker.try_acquire_owned().ok()).collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        let expected = (permits as usize).min(threads * attempts);
        prop_assert_eq!(admitted.len(), expected);
        prop_assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let _clock = handle.enter();
        let rejected_as = breaker.try_acquire().map(|_| ()).map_err(|e| decision(&Err(e)));
        if expected == permits as usize {
            prop_assert_eq!(rejected_as, Err(Decision::Rejected(CircuitRejection::HalfOpenFull, None)));
        }
        drop(_clock);
        if expected == permits as usize {
            std::thread::scope(|scope| {
                let mut chunks: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
                for (i, permit) in admitted.into_iter().enumerate() {
                    chunks[i % threads].push(permit);
                }
                for chunk in chunks {
                    scope.spawn(move || {
                        let _clock = handle.enter();
                        chunk.into_iter().for_each(|p| p.record(Outcome::Success));
                    });
                }
            });
            prop_assert_eq!(breaker.state(), BreakerState::Closed);
        }
    }
}
