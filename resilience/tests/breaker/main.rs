//! The circuit breaker's contract, on paused time. One module per part:
//!
//! - `tripping`: when a closed breaker opens (rates, minimum calls,
//!   consecutive failures, windows);
//! - `open`: what an open breaker rejects, and how, through its service;
//! - `half_open`: how it recovers (trials, their slots, backoff of the wait);
//! - `modes`: the operator's controls and the metrics it reports;
//! - `sharing`: one breaker behind registries, clones and threads;
//! - `subscribers`: transitions as values, in order, to every subscriber;
//! - `threads`: outcomes recorded wherever a response future completes;
//! - `config`: validation and serialization of `CircuitBreakerConfig`.
//!
//! This file holds what they share: a small breaker and the helpers that
//! drive it through permits.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

#[path = "../support/mod.rs"]
mod support;

mod config;
mod half_open;
mod modes;
mod open;
mod sharing;
mod subscribers;
mod threads;
mod tripping;

use std::time::Duration;

use orch_resilience::{
    CircuitRejection, Outcome, ResilienceError,
    breaker::{BreakerState, CircuitBreaker, CircuitBreakerConfig},
};

/// The unit of the breaker's waits.
pub const SEC: Duration = Duration::from_secs(1);

/// A small breaker: the last 10 calls, judged from 4, open for 10 s, 3 trials.
pub fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .name("test")
        .count_window(10)
        .minimum_calls(4)
        .open_wait(10 * SEC)
        .half_open_permits(3)
}

/// Records `outcomes` through one permit each, as callers would.
pub fn record(breaker: &CircuitBreaker, outcomes: &[Outcome]) {
    for &outcome in outcomes {
        breaker.try_acquire().unwrap().record(outcome);
    }
}

/// The rejection and time left of a `CircuitOpen` error; panics on any other.
pub fn rejection(err: &ResilienceError) -> (CircuitRejection, Option<Duration>) {
    match err {
        ResilienceError::CircuitOpen {
            rejection, remaining, ..
        } => (*rejection, *remaining),
        other => panic!("expected a circuit rejection, got {other:?}"),
    }
}

/// How `breaker` rejects the next call; panics if it admits it.
pub fn rejected_with(breaker: &CircuitBreaker) -> (CircuitRejection, Option<Duration>) {
    rejection(&breaker.try_acquire().unwrap_err())
}

/// Trips `breaker` (built from `config()`) with four failures.
pub fn trip(breaker: &CircuitBreaker) {
    record(breaker, &[Outcome::Failure; 4]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

/// Polls a future that is ready at once (no runtime on a plain thread).
pub fn poll_once<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the future was not ready at once"),
    }
}
