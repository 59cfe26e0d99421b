//! The retry layer's contract, on paused time: every delay and timeout is
//! observed as the instants at which the inner service is called. One module
//! per part of the contract:
//!
//! - `attempts`: how many attempts a call gets, which outcomes and requests
//!   are retried, and what the caller sees when retries end;
//! - `schedule`: when each attempt starts and how long it may run (backoff,
//!   attempt timeouts, the overall deadline);
//! - `pushback`: what holds retries back beyond the schedule (the server's
//!   pushback, the retry budget, the gRPC throttle);
//! - `bodies`: streaming request bodies, buffered and replayed;
//! - `config`: validation and serialization of `RetryConfig`.
//!
//! This file holds what they share: the call log, the flaky services and
//! the request builders.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// these files also have helpers.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod attempts;
mod bodies;
mod config;
mod pushback;
mod schedule;

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response};
use orch_resilience::{NotRetriedReason, ResilienceError, RetryConfig, retry::BackoffConfig};
use tokio::time::Instant;
use tower::{Service, service_fn};

use crate::support::ms;

/// The instants at which the inner service was called.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Instant>>>);

impl Log {
    /// Records a call; returns its index (0 for the first).
    pub fn record(&self) -> usize {
        let mut calls = self.0.lock().unwrap();
        calls.push(Instant::now());
        calls.len() - 1
    }

    /// Calls made so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// When each call was made, in order.
    pub fn times(&self) -> Vec<Instant> {
        self.0.lock().unwrap().clone()
    }

    /// The time between consecutive calls: the delays the retry layer waited.
    pub fn gaps(&self) -> Vec<Duration> {
        self.times().windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// No budget, constant 10 ms delays: the plain retry loop.
pub fn config() -> RetryConfig {
    RetryConfig::default()
        .name("test")
        .backoff(BackoffConfig::constant(ms(10)))
        .budget(None)
}

/// The error of a flaky service: a connection reset, retryable under the
/// default classifier.
pub fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "reset")
}

/// A service that fails its first `failures` calls with a connection reset.
pub fn flaky(
    log: &Log,
    failures: usize,
) -> impl Service<u32, Response = usize, Error = io::Error, Future: Send> + Clone {
    let log = log.clone();
    service_fn(move |_: u32| {
        let n = log.record();
        async move { if n < failures { Err(reset()) } else { Ok(n) } }
    })
}

/// An empty HTTP response with `status` and `headers`.
pub fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// An HTTP service answering call n with `answers(n)`.
pub fn http_service<B: Send + 'static>(
    log: &Log,
    answers: impl Fn(usize) -> Result<Response<()>, io::Error> + Clone + Send + 'static,
) -> impl Service<Request<B>, Response = Response<()>, Error = io::Error, Future: Send> + Clone {
    let log = log.clone();
    service_fn(move |_: Request<B>| {
        let n = log.record();
        let answer = answers(n);
        async move { answer }
    })
}

/// A safe request: retried by `HttpSafety`.
pub fn get() -> Request<String> {
    Request::get("/items").body(String::new()).unwrap()
}

/// An unsafe request without an idempotency key: not retried by `HttpSafety`.
pub fn post() -> Request<String> {
    Request::post("/orders").body("{}".to_owned()).unwrap()
}

/// The reason and attempt count of a `NotRetried` error; panics on any other.
pub fn not_retried(err: &ResilienceError) -> (NotRetriedReason, u32) {
    match err {
        ResilienceError::NotRetried { reason, attempts, .. } => (*reason, *attempts),
        other => panic!("expected NotRetried, got {other:?}"),
    }
}
