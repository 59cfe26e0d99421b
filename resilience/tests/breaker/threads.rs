//! The breaker's `tower` service records through the permit its response
//! future owns (a clone of the admitting thread's lane): outcomes must land
//! wherever the future completes, and a future that outlives every handle
//! to its breaker must do no harm.

use std::task::{Context, Waker};

use orch_resilience::breaker::{BreakerState, CircuitBreakerConfig, CircuitBreakerLayer};
use tower::{Layer, Service};

use super::poll_once;
use crate::support::{Reply, Step, scripted};

/// An inner service that fails every call at once.
fn failing() -> impl Service<u32, Response = u32, Error = std::io::Error, Future = Reply> + Clone {
    scripted::<u32>([], Step::Fail).0
}

#[test]
fn outcomes_of_futures_completed_on_other_threads_are_recorded() {
    let breaker = CircuitBreakerConfig::default()
        .name("threads")
        .count_window(10)
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut service = CircuitBreakerLayer::shared(breaker.clone()).layer(failing());
    let mut cx = Context::from_waker(Waker::noop());
    // Four calls admitted here, completed on four fresh threads: each
    // outcome goes into the shard of the thread that completes the call.
    for _ in 0..4 {
        assert!(service.poll_ready(&mut cx).is_ready());
        let future = service.call(1);
        std::thread::spawn(move || assert!(poll_once(future).is_err()))
            .join()
            .unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.metrics().failures, 4);
}

#[test]
fn a_future_that_outlives_its_breaker_records_nothing_and_completes() {
    let breaker = CircuitBreakerConfig::default().name("gone").build().unwrap();
    let mut service = CircuitBreakerLayer::shared(breaker).layer(failing());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let future = service.call(1);
    drop(service);
    // The last handle is gone: completing the call must still give its result.
    assert!(poll_once(future).is_err());
    // And on a thread that never saw the breaker.
    let breaker = CircuitBreakerConfig::default().name("gone-2").build().unwrap();
    let mut service = CircuitBreakerLayer::shared(breaker).layer(failing());
    assert!(service.poll_ready(&mut cx).is_ready());
    let future = service.call(1);
    drop(service);
    std::thread::spawn(move || assert!(poll_once(future).is_err()))
        .join()
        .unwrap();
}

#[test]
fn many_breakers_on_one_thread_keep_their_own_counts() {
    let breakers: Vec<_> = (0..20)
        .map(|i| {
            CircuitBreakerConfig::default()
                .name(format!("many-{i}"))
                .count_window(10)
                .minimum_calls(100)
                .build()
                .unwrap()
        })
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    for (i, breaker) in breakers.iter().enumerate() {
        let mut service = CircuitBreakerLayer::shared(breaker.clone()).layer(failing());
        for _ in 0..(i % 5) {
            assert!(service.poll_ready(&mut cx).is_ready());
            assert!(poll_once(service.call(1)).is_err());
        }
    }
    for (i, breaker) in breakers.iter().enumerate() {
        assert_eq!(breaker.metrics().failures, (i % 5) as u64, "breaker {i}");
    }
}
