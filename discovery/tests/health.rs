//! Passive health on paused time: ejection and return, growing ejection
//! times, the ejection cap, success-rate outliers, panic threshold, slow
//! start, and concurrent recording.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::{sync::Arc, time::Duration};

use orch_discovery::{
    EndpointId,
    health::{
        EjectionReason, HealthEvent, OutlierConfig, OutlierDetector, PanicThreshold, SlowStart,
        SlowStartConfig, SuccessRateConfig,
    },
};
use proptest::prelude::*;
use tokio::time::{Instant, advance};

fn ids(n: usize) -> Vec<EndpointId> {
    (0..n).map(|i| EndpointId::from(format!("api-{i}"))).collect()
}

fn detector(config: OutlierConfig, n: usize) -> OutlierDetector {
    let mut detector = OutlierDetector::new(config, Instant::now()).unwrap();
    assert!(detector.set_endpoints(ids(n), Instant::now()).is_empty());
    detector
}

fn fail(detector: &OutlierDetector, index: usize, times: usize) {
    for _ in 0..times {
        detector.stats(index).record(false);
    }
}

/// `(index, reason, seconds from now until the return, times)` of an ejection.
fn ejected(event: &HealthEvent) -> Option<(usize, EjectionReason, u64, u32)> {
    match event {
        HealthEvent::Ejected {
            index,
            reason,
            until,
            times,
            ..
        } => Some((
            *index,
            *reason,
            until.duration_since(Instant::now()).as_secs(),
            *times,
        )),
        _ => None,
    }
}

fn returned(events: &[HealthEvent]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            HealthEvent::Returned { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_and_the_endpoint_returns_by_itself() {
    let mut d = detector(OutlierConfig::default(), 10);
    fail(&d, 4, 4);
    d.stats(4).record(true); // a success breaks the run
    fail(&d, 4, 4);
    assert!(d.poll(Instant::now()).is_empty());
    assert!(!d.is_ejected(4));

    fail(&d, 4, 1); // the fifth in a row
    let events = d.poll(Instant::now());
    assert_eq!(events.len(), 1);
    assert_eq!(
        ejected(&events[0]),
        Some((4, EjectionReason::ConsecutiveFailures, 30, 1))
    );
    assert!(matches!(&events[0], HealthEvent::Ejected { id, .. } if id.as_str() == "api-4"));
    assert!(d.is_ejected(4));
    assert_eq!(d.ejected_count(), 1);
    assert_eq!(d.stats(4).consecutive_failures(), 0, "the run restarts");
    assert_eq!(d.next_deadline(), Instant::now() + Duration::from_secs(10)); // the next interval

    // Late failures of requests sent before the ejection change nothing.
    fail(&d, 4, 5);
    advance(Duration::from_secs(29)).await;
    assert!(returned(&d.poll(Instant::now())).is_empty());
    assert!(d.is_ejected(4));
    assert_eq!(d.next_deadline(), Instant::now() + Duration::from_secs(1));

    advance(Duration::from_secs(1)).await;
    assert_eq!(returned(&d.poll(Instant::now())), [4]);
    assert!(!d.is_ejected(4));
    assert_eq!(d.ejected_count(), 0);
    assert_eq!(
        d.stats(4).consecutive_failures(),
        0,
        "what it recorded while out is forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_up_to_the_max_and_decays() {
    let config = OutlierConfig::default()
        .base_ejection_time(Duration::from_secs(30))
        .max_ejection_time(Duration::from_secs(90))
        .interval(Duration::from_secs(100))
        .without_success_rate();
    let mut d = detector(config, 5);
    let mut seen = Vec::new();
    for _ in 0..4 {
        fail(&d, 0, 5);
        let events = d.poll(Instant::now());
        let (_, _, secs, times) = ejected(&events[0]).unwrap();
        seen.push((secs, times));
        advance(Duration::from_secs(secs)).await;
        assert_eq!(returned(&d.poll(Instant::now())), [0]);
    }
    assert_eq!(seen, [(30, 1), (60, 2), (90, 3), (90, 3)]);

    // Each full interval in the rotation takes one off.
    advance(Duration::from_secs(200)).await;
    d.poll(Instant::now());
    assert_eq!(d.times_ejected(0), 1);
    fail(&d, 0, 5);
    let events = d.poll(Instant::now());
    assert_eq!(ejected(&events[0]).map(|e| (e.2, e.3)), Some((60, 2)));
}

#[tokio::test(start_paused = true)]
async fn at_most_max_ejection_percent_are_ejected() {
    let mut d = detector(OutlierConfig::default().max_ejection_percent(20), 10);
    for index in 0..5 {
        fail(&d, index, 5);
    }
    let events = d.poll(Instant::now());
    let out: Vec<usize> = events.iter().filter_map(ejected).map(|e| e.0).collect();
    let refused: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            HealthEvent::NotEjected { index, reason, .. } => {
                assert_eq!(*reason, EjectionReason::ConsecutiveFailures);
                Some(*index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(out, [0, 1]);
    assert_eq!(refused, [2, 3, 4]);
    assert_eq!(d.ejected_count(), 2);

    // Once one returns, another run of failures can take its place.
    advance(Duration::from_secs(30)).await;
    assert_eq!(returned(&d.poll(Instant::now())), [0, 1]);
    fail(&d, 2, 5);
    assert_eq!(d.poll(Instant::now()).iter().filter_map(ejected).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_may_always_be_ejected_but_never_the_last() {
    // 10 % of 2 is 0.2 endpoints, but one may always go, as in Envoy.
    let mut d = detector(OutlierConfig::default(), 2);
    fail(&d, 0, 5);
    fail(&d, 1, 5);
    let events = d.poll(Instant::now());
    assert_eq!(events.iter().filter_map(ejected).count(), 1);
    assert!(matches!(events[1], HealthEvent::NotEjected { index: 1, .. }));

    // Even at 100 %, the last endpoint in the rotation stays.
    let mut d = detector(OutlierConfig::default().max_ejection_percent(100), 3);
    for index in 0..3 {
        fail(&d, index, 5);
    }
    d.poll(Instant::now());
    assert_eq!(d.ejected_count(), 2);

    let mut d = detector(OutlierConfig::default(), 1);
    fail(&d, 0, 5);
    assert!(matches!(
        d.poll(Instant::now())[..],
        [HealthEvent::NotEjected { index: 0, .. }]
    ));
}

/// Records `requests` outcomes on one endpoint, `failures` of them failed
/// (at most half), alternating with successes so no run trips the
/// consecutive-failure detector.
fn traffic(d: &OutlierDetector, index: usize, requests: u32, failures: u32) {
    assert!(2 * failures <= requests);
    for i in 0..requests {
        d.stats(index).record(i % 2 == 1 || i / 2 >= failures);
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_rate_outlier_among_ten_is_ejected_at_the_interval() {
    let mut d = detector(OutlierConfig::default(), 10);
    for index in 0..10 {
        let failures = if index == 7 { 40 } else { index as u32 % 3 };
        traffic(&d, index, 200, failures);
    }
    assert_eq!(d.stats(7).interval_counts(), (200, 40));
    advance(Duration::from_secs(9)).await;
    assert!(
        d.poll(Instant::now()).is_empty(),
        "judged only when the interval ends"
    );
    advance(Duration::from_secs(1)).await;
    let events = d.poll(Instant::now());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(ejected(&events[0]), Some((7, EjectionReason::SuccessRate, 30, 1)));
    assert_eq!(d.stats(0).interval_counts(), (0, 0), "a new interval starts");

    // Next interval: too little traffic to judge anyone.
    for index in 0..10 {
        traffic(&d, index, 50, if index == 3 { 25 } else { 0 });
    }
    advance(Duration::from_secs(10)).await;
    assert!(d.poll(Instant::now()).iter().filter_map(ejected).next().is_none());
}

#[tokio::test(start_paused = true)]
async fn success_rate_needs_minimum_hosts() {
    let config = OutlierConfig::default().success_rate(SuccessRateConfig::default().minimum_hosts(5));
    let mut d = detector(config, 10);
    for index in 0..4 {
        traffic(&d, index, 200, if index == 0 { 100 } else { 0 });
    }
    advance(Duration::from_secs(10)).await;
    assert!(
        d.poll(Instant::now()).is_empty(),
        "only 4 endpoints had enough requests"
    );
}

#[tokio::test(start_paused = true)]
async fn membership_changes_keep_state_by_id() {
    let mut d = detector(OutlierConfig::default(), 3);
    fail(&d, 1, 5);
    d.poll(Instant::now());
    let until = d.ejected_until(1).unwrap();

    // api-1 moves to slot 0; api-3 is new.
    let events = d.set_endpoints(["api-1", "api-2", "api-3"].map(EndpointId::from), Instant::now());
    assert!(events.is_empty());
    assert_eq!(d.id(0).as_str(), "api-1");
    assert_eq!(d.ejected_until(0), Some(until));
    assert_eq!(d.times_ejected(0), 1);
    assert!(!d.is_ejected(2));
    assert_eq!(d.ejected_count(), 1);

    // If only ejected endpoints remain, the first due back returns at once.
    let events = d.set_endpoints([EndpointId::from("api-1")], Instant::now());
    assert_eq!(returned(&events), [0]);
    assert_eq!(d.ejected_count(), 0);
    assert_eq!(d.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn records_from_many_threads_are_all_counted() {
    let d = detector(OutlierConfig::default().without_consecutive_failures(), 2);
    let stats = Arc::clone(d.stats(1));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let stats = Arc::clone(&stats);
            std::thread::spawn(move || {
                for i in 0..25_000 {
                    stats.record((i + t) % 5 != 0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(d.stats(1).interval_counts(), (200_000, 40_000));
    assert_eq!(d.stats(0).interval_counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_trip_from_another_thread_is_seen_at_the_next_poll() {
    let mut d = detector(OutlierConfig::default(), 4);
    let stats = Arc::clone(d.stats(2));
    std::thread::spawn(move || (0..5).for_each(|_| stats.record(false)))
        .join()
        .unwrap();
    let events = d.poll(Instant::now());
    assert_eq!(ejected(&events[0]).map(|e| e.0), Some(2));
}

#[test]
fn panic_threshold_spreads_when_too_few_are_healthy() {
    let threshold = PanicThreshold::DEFAULT;
    // 10 endpoints, some not ready, some ejected: healthy = neither.
    let healthy = |not_ready: usize, ejected: usize| 10 - not_ready - ejected;
    assert!(!threshold.is_panic(healthy(3, 1), 10));
    assert!(!threshold.is_panic(healthy(4, 1), 10)); // exactly 50 %
    assert!(threshold.is_panic(healthy(5, 1), 10));
    assert_eq!(PanicThreshold::new(50.0).unwrap(), PanicThreshold::default());
    assert!(PanicThreshold::new(-1.0).is_err());
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoint_over_the_window() {
    let ramp = SlowStart::new(
        &SlowStartConfig::new(Duration::from_secs(60))
            .aggression(1.0)
            .min_weight_percent(10.0),
    )
    .unwrap();
    let joined = Instant::now();
    let mut factors = Vec::new();
    for _ in 0..7 {
        factors.push(ramp.factor_at(joined, Instant::now()));
        advance(Duration::from_secs(12)).await;
    }
    assert_eq!(factors, [0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]);
    assert!(!ramp.is_ramping(joined, Instant::now()));
    assert_eq!(ramp.ends_at(joined), joined + Duration::from_secs(60));

    // Aggression above 1 gives more traffic early.
    let eager = SlowStart::new(&SlowStartConfig::new(Duration::from_secs(60)).aggression(2.0)).unwrap();
    assert_eq!(eager.factor(Duration::from_secs(15)), 0.5);

    let bad = SlowStart::new(&SlowStartConfig::new(Duration::ZERO)).unwrap_err();
    assert_eq!(bad.field_name(), "slow_start.window");
}

#[test]
fn a_bad_config_is_refused_with_its_field() {
    let err =
        OutlierDetector::new(OutlierConfig::default().max_ejection_percent(150), Instant::now()).unwrap_err();
    assert_eq!(err.field_name(), "outlier_detection.max_ejection_percent");
}

#[derive(Debug, Clone)]
enum Op {
    /// A run of failures on one endpoint.
    Fail(usize, u8),
    /// 100 requests on every endpoint, with this many failures each (for
    /// success rates).
    Traffic(Vec<u8>),
    /// Time passes (seconds).
    Advance(u16),
}

/// The reasons of the ejections the property saw, in all cases.
static SEEN: std::sync::Mutex<Vec<EjectionReason>> = std::sync::Mutex::new(Vec::new());

fn op(n: usize) -> impl Strategy<Value = Op> {
    // Mostly healthy endpoints, a few bad ones: outliers.
    let failures = prop_oneof![8 => Just(0_u8), 2 => 0_u8..50];
    prop_oneof![
        (0..n, 1_u8..8).prop_map(|(i, k)| Op::Fail(i, k)),
        prop::collection::vec(failures, n).prop_map(Op::Traffic),
        (1_u16..120).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens, never more than the cap (or one) is ejected, never
    /// every endpoint, and every ejection ends by itself.
    #[test]
    fn ejections_stay_within_the_cap(
        (n, percent, ops) in (1_usize..25, 0_u32..=100)
            .prop_flat_map(|(n, p)| (Just(n), Just(p), prop::collection::vec(op(n), 1..150)))
    ) {
        let config = OutlierConfig::default()
            .max_ejection_percent(percent)
            .success_rate(SuccessRateConfig::default().minimum_hosts(3).request_volume(20));
        // Instants are passed in, so the property needs no runtime.
        let mut now = Instant::now();
        let mut d = OutlierDetector::new(config, now).unwrap();
        d.set_endpoints(ids(n), now);
        let cap = (percent as usize * n / 100).max(1);
        let mut seen = Vec::new();
        for op in ops {
            match op {
                Op::Fail(i, k) => (0..k).for_each(|_| d.stats(i).record(false)),
                Op::Traffic(failures) => {
                    for (i, f) in failures.into_iter().enumerate() {
                        (0..100_u8).for_each(|r| d.stats(i).record(r % 2 == 1 || r / 2 >= f));
                    }
                }
                Op::Advance(secs) => now += Duration::from_secs(u64::from(secs)),
            }
            for event in d.poll(now) {
                if let HealthEvent::Ejected { until, reason, .. } = event {
                    seen.push(reason);
                    prop_assert!(until > now && until <= now + Duration::from_secs(300));
                }
            }
            let ejected = (0..n).filter(|&i| d.is_ejected(i)).count();
            prop_assert_eq!(ejected, d.ejected_count());
            prop_assert!(ejected <= cap, "{} ejected of {}, cap {}", ejected, n, cap);
            prop_assert!(ejected < n || n == 0, "every endpoint ejected");
            prop_assert!((0..n).all(|i| d.ejected_until(i).is_none_or(|u| u > now)));
        }
        SEEN.lock().unwrap().extend(seen);
        // Everyone is back by the max ejection time (the same poll may
        // eject afresh on the interval's success rates).
        now += Duration::from_secs(300);
        let fresh = d.poll(now).iter().filter(|e| matches!(e, HealthEvent::Ejected { .. })).count();
        prop_assert_eq!(d.ejected_count(), fresh);
    }
}

/// The property's generated cases do exercise both detectors (it is run
/// again here, so this does not depend on test order).
#[test]
fn ejections_stay_within_the_cap_saw_both_reasons() {
    ejections_stay_within_the_cap();
    let seen = SEEN.lock().unwrap();
    assert!(seen.contains(&EjectionReason::ConsecutiveFailures));
    assert!(seen.contains(&EjectionReason::SuccessRate));
}
