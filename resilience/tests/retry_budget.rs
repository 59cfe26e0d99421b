//! Properties of the retry budget and of gRPC retry throttling, checked
//! against independent models on random sequences.
//!
//! The budget's guarantee (see `RetryBudget`): time is cut into slices of
//! `ttl / 10` from the budget's creation; the window of slice `k` is slices
//! `k-9 ..= k`. A withdrawal in slice `k` succeeds if and only if, counting
//! it, `retries(window) <= floor(min_retries_per_sec * ttl_secs) +
//! percent * credited_requests(window)`, where a request is credited to the
//! slice of the budget's latest clock reading (taken by every withdrawal and
//! every 32nd deposit credited to a slice). Credited requests of a window
//! never exceed the requests actually made in it, so at every granted retry
//! the retries of the last TTL window never exceed the floor plus the
//! percent of that window's requests. Both halves are checked: the exact
//! rule against a model of the crediting, and the bound against the true
//! request counts.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// these files also have helpers and proptest bodies.
#![allow(clippy::unwrap_used)]

use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{
    AlwaysSafe, ResilienceError, RetryBudget, RetryBudgetConfig, RetryConfig, RetryLayer, RetryThrottle,
    RetryThrottleConfig, retry::BackoffConfig,
};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Step {
    advance_ms: u64,
    requests: u32,
    retries: u32,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![3 => 0_u64..200, 1 => 200_u64..3000],
            prop_oneof![3 => 0_u32..6, 1 => 20_u32..80],
            0_u32..6,
        )
            .prop_map(|(advance_ms, requests, retries)| Step {
                advance_ms,
                requests,
                retries,
            }),
        1..80,
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Request,
    Retry,
    Refused,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Integration tests have no lib.rs next to them to keep regressions in.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn budget_never_exceeds_floor_plus_percent_of_the_window(
        ttl_tenths in 10_u64..=60,
        min_retries_per_sec in 0_u32..4,
        percent_milli in 0_u32..=1500,
        steps in steps(),
    ) {
        let ttl = Duration::from_millis(ttl_tenths * 100);
        let percent = f64::from(percent_milli) / 1000.0;
        let config = RetryBudgetConfig::default()
            .ttl(ttl)
            .min_retries_per_sec(min_retries_per_sec)
            .percent_can_retry(percent);

        // Run the budget on paused time, logging (elapsed, event).
        let log = paused_runtime().block_on(async {
            let origin = Instant::now();
            let budget = RetryBudget::new(config).unwrap();
            let mut log = Vec::new();
            for step in &steps {
                tokio::time::advance(Duration::from_millis(step.advance_ms)).await;
                let at = Instant::now() - origin;
                for _ in 0..step.requests {
                    budget.deposit();
                    log.push((at, Event::Request));
                }
                for _ in 0..step.retries {
                    let event = if budget.try_withdraw() { Event::Retry } else { Event::Refused };
                    log.push((at, event));
                }
            }
            log
        });

        let slice_ms = ttl.as_millis() as u64 / 10;
        let slice_of = |at: Duration| at.as_millis() as u64 / slice_ms;
        let in_window = |s: u64, k: u64| s <= k && s + 10 > k;
        let floor = (f64::from(min_retries_per_sec) * ttl.as_secs_f64()).floor() as u64;

        // The crediting model: deposits go to the slice of the latest clock
        // reading; a withdrawal, or the 32nd deposit credited to a slice,
        // reads the clock.
        let mut clock_slice = 0_u64;
        let mut credited: Vec<u64> = Vec::new();
        let mut retried: Vec<u64> = Vec::new();
        let mut true_requests: Vec<u64> = Vec::new();
        for (i, (at, event)) in log.iter().enumerate() {
            let now = slice_of(*at);
            if *event == Event::Request {
                credited.push(clock_slice);
                true_requests.push(now);
                if credited.iter().filter(|s| **s == clock_slice).count() % 32 == 0 {
                    clock_slice = clock_slice.max(now);
                }
                continue;
            }
            clock_slice = clock_slice.max(now);
            let k = now;
            let requests = credited.iter().filter(|s| in_window(**s, k)).count() as u64;
            let retries = retried.iter().filter(|s| in_window(**s, k)).count() as u64;
            // Exact integer arithmetic: percent is in thousandths.
            let model_allows = (retries + 1) * 1000 <= floor * 1000 + u64::from(percent_milli) * requests;
            prop_assert_eq!(
                *event == Event::Retry,
                model_allows,
                "withdrawal {} at {:?}: {} retries, {} credited requests in window", i, at, retries, requests
            );
            if *event == Event::Retry {
                retried.push(k);
                // The stated bound, against the requests actually made in the window.
                let made = true_requests.iter().filter(|s| in_window(**s, k)).count();
                let bound = f64::from(min_retries_per_sec) * ttl.as_secs_f64() + percent * made as f64;
                prop_assert!((retries + 1) as f64 <= bound + 1e-9, "{} retries > {}", retries + 1, bound);
            }
        }
    }

    #[test]
    fn throttle_matches_the_grfc_a6_model(
        max_tokens in 1_u32..=20,
        ratio_milli in 1_u32..=3000,
        ops in prop::collection::vec(0_u8..3, 0..300),
    ) {
        let throttle = RetryThrottle::new(
            RetryThrottleConfig::default()
                .max_tokens(max_tokens)
                .token_ratio(f64::from(ratio_milli) / 1000.0),
        )
        .unwrap();
        let max = i64::from(max_tokens) * 1000;
        let mut tokens = max;
        for op in ops {
            match op {
                0 => {
                    throttle.record_failure();
                    tokens = (tokens - 1000).max(0);
                }
                1 => {
                    throttle.record_success();
                    tokens = (tokens + i64::from(ratio_milli)).min(max);
                }
                _ => {}
            }
            prop_assert_eq!(throttle.tokens(), tokens as f64 / 1000.0);
            prop_assert_eq!(throttle.allows_retry(), 2 * tokens > max);
            // Never a retry at or below half the bucket.
            if 2 * tokens <= max {
                prop_assert!(!throttle.allows_retry());
            }
        }
    }

    #[test]
    fn throttled_layer_retries_exactly_when_the_model_does(
        max_tokens in 1_u32..=8,
        ratio_milli in 1_u32..=2000,
        outcomes in prop::collection::vec(any::<bool>(), 1..200),
    ) {
        let throttle = RetryThrottleConfig::default()
            .max_tokens(max_tokens)
            .token_ratio(f64::from(ratio_milli) / 1000.0);
        let config = RetryConfig::default()
            .max_attempts(3)
            .backoff(BackoffConfig::constant(Duration::ZERO))
            .budget(None)
            .throttle(throttle);
        // Each attempt takes the next outcome (true = success) from the script.
        let script = Arc::new(Mutex::new(outcomes.iter().copied().collect::<VecDeque<bool>>()));
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = {
            let (script, calls) = (script.clone(), calls.clone());
            service_fn(move |_: u32| {
                calls.fetch_add(1, Ordering::SeqCst);
                let ok = script.lock().unwrap().pop_front().unwrap_or(true);
                async move { if ok { Ok(()) } else { Err(io::Error::other("unavailable")) } }
            })
        };
        let retry = RetryLayer::new(config).unwrap().safety(AlwaysSafe).layer(inner);

        // Model of the layer: gRFC A6 tokens, at most 3 attempts per call.
        let max = i64::from(max_tokens) * 1000;
        let mut tokens = max;
        let mut model_script: VecDeque<bool> = outcomes.iter().copied().collect();
        let rt = paused_runtime();
        while !model_script.is_empty() {
            let mut attempts = 0;
            let mut expected_throttled = false;
            loop {
                attempts += 1;
                if model_script.pop_front().unwrap_or(true) {
                    tokens = (tokens + i64::from(ratio_milli)).min(max);
                    break;
                }
                tokens = (tokens - 1000).max(0);
                if attempts == 3 {
                    break;
                }
                if 2 * tokens <= max {
                    expected_throttled = true;
                    break;
                }
            }
            let before = calls.load(Ordering::SeqCst);
            let result = rt.block_on(retry.clone().oneshot(0));
            let made = calls.load(Ordering::SeqCst) - before;
            prop_assert_eq!(made, attempts);
            if expected_throttled {
                let throttled = matches!(result, Err(ResilienceError::BudgetExhausted { .. }));
                prop_assert!(throttled, "{:?}", result);
            }
        }
    }
}
