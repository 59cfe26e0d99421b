//! The hedging layer's contract, on paused tokio time: the inner service
//! sleeps a scripted latency per attempt. One module per part:
//!
//! - `racing`: who wins, what is cancelled, when hedges are sent;
//! - `failures`: what is returned when attempts fail, and what stops
//!   further hedges (rejections, pushback, unsafe requests);
//! - `delay`: how the percentile delay moves;
//! - `config`: validation, defaults and serialization of `HedgeConfig`;
//! - `reporting`: the metrics the layer counts.
//!
//! This file holds what they share: the scripted inner service, which logs
//! every attempt's completion or cancellation, and the layer builders.
// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod config;
mod delay;
mod failures;
mod racing;
mod reporting;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{
    AlwaysSafe, BoxError, DefaultClassifier, HedgeConfig, HedgeDelay, HedgeLayer, IDEMPOTENCY_KEY,
    ResilienceError, TimeoutKind,
};
use tokio::time::sleep;
use tower::{Service, service_fn};

use crate::support::ms;

// ===== scripted inner service =====

/// What one attempt of the inner service does once its latency has passed.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// `Ok((attempt, 200))`.
    Ok,
    /// `Ok((attempt, status))`, for classifiers that read the status.
    Status(u16),
    /// An `io::Error` "attempt N failed".
    Fail,
    /// A local rejection from a layer below (`RateLimited`).
    Reject,
    /// An attempt timeout from a layer below.
    Timeout,
}

/// The inner service's response: which attempt answered, and a status.
type Reply = (usize, u16);

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Completed(usize),
    /// The attempt's future was dropped before its latency had passed.
    Cancelled(usize),
}

/// Attempt `i` (in call order across the whole test) follows `steps[i]`.
#[derive(Clone)]
struct Script {
    steps: Arc<Vec<(Duration, Then)>>,
    calls: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<Event>>>,
    tags: Arc<Mutex<Vec<Option<String>>>>,
}

/// Something the script can note about each request it receives.
trait Probe: Send + 'static {
    fn tag(&self) -> Option<String> {
        None
    }
}

impl Probe for u32 {}

impl Probe for http::Request<()> {
    fn tag(&self) -> Option<String> {
        self.headers()
            .get(IDEMPOTENCY_KEY)
            .map(|key| key.to_str().unwrap().to_owned())
    }
}

/// Logs its attempt as completed or cancelled when the attempt's future is
/// dropped, whichever happened.
struct Guard {
    index: usize,
    done: bool,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let event = if self.done {
            Event::Completed(self.index)
        } else {
            Event::Cancelled(self.index)
        };
        self.events.lock().unwrap().push(event);
    }
}

impl Script {
    fn new(steps: &[(u64, Then)]) -> Self {
        Self {
            steps: Arc::new(
                steps
                    .iter()
                    .map(|&(ms, then)| (Duration::from_millis(ms), then))
                    .collect(),
            ),
            calls: Arc::default(),
            events: Arc::default(),
            tags: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn tags(&self) -> Vec<Option<String>> {
        self.tags.lock().unwrap().clone()
    }

    fn service<R: Probe>(
        &self,
    ) -> impl Service<R, Response = Reply, Error = BoxError, Future: Send> + Clone + Send + 'static {
        let script = self.clone();
        service_fn(move |request: R| {
            let index = script.calls.fetch_add(1, Ordering::SeqCst);
            script.tags.lock().unwrap().push(request.tag());
            let (after, then) = *script
                .steps
                .get(index)
                .unwrap_or_else(|| panic!("unexpected attempt {index}"));
            let mut guard = Guard {
                index,
                done: false,
                events: Arc::clone(&script.events),
            };
            async move {
                sleep(after).await;
                guard.done = true;
                drop(guard);
                match then {
                    Then::Ok => Ok((index, 200)),
                    Then::Status(status) => Ok((index, status)),
                    Then::Fail => Err(std::io::Error::other(format!("attempt {index} failed")).into()),
                    Then::Reject => Err(Box::new(ResilienceError::RateLimited {
                        name: "below".into(),
                        wait: Duration::from_millis(1),
                    }) as BoxError),
                    Then::Timeout => Err(Box::new(ResilienceError::Timeout {
                        kind: TimeoutKind::Attempt,
                        after: Duration::from_secs(1),
                    }) as BoxError),
                }
            }
        })
    }
}

/// Hedges after a fixed `delay_ms`, so attempt instants are exact.
fn fixed(delay_ms: u64) -> HedgeConfig {
    HedgeConfig::default().delay(HedgeDelay::fixed(ms(delay_ms)))
}

/// A hedge layer that treats every request as safe to send twice.
fn layer(config: HedgeConfig) -> HedgeLayer<DefaultClassifier, AlwaysSafe> {
    HedgeLayer::new(config).unwrap().safety(AlwaysSafe)
}

/// The message of the inner `io::Error` an attempt failed with.
fn message(error: &ResilienceError) -> String {
    error.downcast_inner_ref::<std::io::Error>().unwrap().to_string()
}
