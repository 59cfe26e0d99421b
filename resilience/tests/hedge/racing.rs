//! Who wins and what is cancelled: a hedge goes out after the delay (at once
//! after a failure, or when its service clone is ready), the first success
//! wins, every other attempt is dropped, and a caller that gives up cancels
//! them all.

use std::{
    future::{Future, poll_fn},
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use orch_resilience::BoxError;
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt};

use super::{Event, Script, Then, fixed, layer, message};
use crate::support::ms;

// ===== who wins =====

#[tokio::test(start_paused = true)]
async fn slow_primary_fast_hedge_the_hedge_wins_and_the_primary_is_cancelled() {
    let script = Script::new(&[(1_000, Then::Ok), (10, Then::Ok)]);
    let mut service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    service.ready().await.unwrap();
    let mut future = Box::pin(service.call(7));
    let reply = poll_fn(|cx| future.as_mut().poll(cx)).await.unwrap();

    assert_eq!(reply, (1, 200));
    assert_eq!(start.elapsed(), ms(110), "delay + hedge latency");
    assert_eq!(script.calls(), 2);
    // The primary was dropped when the hedge won, before the response future
    // itself was dropped and long before the primary would have completed.
    assert_eq!(script.events(), vec![Event::Completed(1), Event::Cancelled(0)]);
    drop(future);
}

#[tokio::test(start_paused = true)]
async fn fast_primary_sends_no_hedge() {
    let script = Script::new(&[(10, Then::Ok)]);
    let service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(10));
    sleep(ms(1_000)).await;
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_primary_sends_the_hedge_at_once() {
    let script = Script::new(&[(5, Then::Fail), (10, Then::Ok)]);
    let service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (1, 200));
    assert_eq!(
        start.elapsed(),
        ms(15),
        "the hedge did not wait for the 100ms delay"
    );
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_sends_every_attempt_at_once() {
    let script = Script::new(&[(50, Then::Ok), (30, Then::Ok), (10, Then::Ok)]);
    let service = layer(fixed(0).max_hedged_attempts(2)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (2, 200));
    assert_eq!(start.elapsed(), ms(10));
    assert_eq!(script.calls(), 3);
    let mut events = script.events();
    events.sort_by_key(|e| match e {
        Event::Completed(i) | Event::Cancelled(i) => *i,
    });
    assert_eq!(
        events,
        vec![Event::Cancelled(0), Event::Cancelled(1), Event::Completed(2)]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_cancels_every_attempt() {
    let script = Script::new(&[(1_000, Then::Ok), (1_000, Then::Ok)]);
    let service = layer(fixed(10)).layer(script.service::<u32>());

    let outcome = tokio::time::timeout(ms(50), service.oneshot(7)).await;

    assert!(outcome.is_err(), "the caller gave up first");
    assert_eq!(script.calls(), 2);
    let mut events = script.events();
    events.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(events, vec![Event::Cancelled(0), Event::Cancelled(1)]);
}

// ===== readiness of hedge clones =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    Open,
    Closed,
    Broken,
}

type Gate = Arc<Mutex<(GateState, Vec<Waker>)>>;

/// Readiness shared by every clone: open, closed (pending) or broken (error).
#[derive(Clone)]
struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S> Gated<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            gate: Arc::new(Mutex::new((GateState::Open, Vec::new()))),
        }
    }
}

fn set_gate(gate: &Gate, state: GateState) {
    let mut gate = gate.lock().unwrap();
    gate.0 = state;
    gate.1.drain(..).for_each(Waker::wake);
}

impl<S: Service<R, Error = BoxError>, R> Service<R> for Gated<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut gate = self.gate.lock().unwrap();
        match gate.0 {
            GateState::Open => self.inner.poll_ready(cx),
            GateState::Closed => {
                gate.1.push(cx.waker().clone());
                Poll::Pending
            }
            GateState::Broken => Poll::Ready(Err("service is broken".into())),
        }
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_waits_for_its_service_clone_to_be_ready() {
    // The clone never gets ready: the primary keeps running and wins.
    let script = Script::new(&[(50, Then::Ok)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Closed);
    assert_eq!(future.await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(script.calls(), 1);

    // The clone gets ready at 20ms: the hedge is sent then, and wins.
    let script = Script::new(&[(100, Then::Ok), (5, Then::Ok)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Closed);
    tokio::spawn(async move {
        sleep(ms(20)).await;
        set_gate(&gate, GateState::Open);
    });
    assert_eq!(future.await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(25));
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_of_a_clone_counts_as_a_failed_attempt() {
    // The hedge's clone fails to get ready at 10ms (attempt 1 fails); the
    // primary fails at 50ms and, finishing last, is the result.
    let script = Script::new(&[(50, Then::Fail)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Broken);
    let error = future.await.unwrap_err();
    assert_eq!(message(&error), "attempt 0 failed");
    assert_eq!(script.calls(), 1);
}
