//! Passive health through the balancer, on paused tokio time: outlier
//! ejection and automatic return, the ejection cap, success-rate outliers,
//! the panic threshold, slow start, and their metrics.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

mod support;

use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use orch_discovery::{
    EndpointChange,
    balance::{Algorithm, Balancer},
    health::{HealthConfig, OutlierConfig, SlowStartConfig},
};
use support::{Answer, Fleet, Snapshot, changes, config, count, endpoint, fixed, ids, tally};
use tokio::time::advance;
use tower::Service;

const MS: Duration = Duration::from_millis(1);

/// Requests (round robin) until `balancer` has `ejected` endpoints ejected;
/// at most `limit` of them.
async fn until_ejected<S>(
    balancer: &mut Balancer<
        S,
        impl Service<orch_discovery::Endpoint, Response = support::Node, Error = std::convert::Infallible>,
    >,
    ejected: usize,
    limit: usize,
) where
    S: futures_util::Stream<Item = EndpointChange> + Unpin,
{
    for _ in 0..limit {
        if balancer.ejected_len() == ejected {
            return;
        }
        tally(balancer, 1, |_| ()).await;
    }
    panic!(
        "{} ejected after {limit} requests, expected {ejected}",
        balancer.ejected_len()
    );
}

#[tokio::test(start_paused = true)]
async fn five_consecutive_failures_eject_and_the_endpoint_returns_by_itself_for_longer_each_time() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let fleet = Fleet::default();
    fleet.answer("e0", Answer::Fail);
    // Intervals of 7 s, so no interval ends when an ejection does: the
    // return is the balancer's own deadline, not a side effect of a sweep.
    let outlier = OutlierConfig::default().interval(Duration::from_secs(7));
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().outlier_detection(outlier));
    let mut balancer = Balancer::with_config(&config, fixed(&ids(4)), fleet.connector()).unwrap();

    // Round robin sends every fourth request to e0: its fifth failure in a
    // row trips the detector, and the next `poll_ready` ejects it.
    let counts = tally(&mut balancer, 20, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 5, "{counts:?}");
    let counts = tally(&mut balancer, 999, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 0, "{counts:?}");
    assert_eq!(counts.len(), 3);
    assert_eq!(balancer.ejected_len(), 1);
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.ejections("consecutive_failures"), Some(1));
    assert_eq!(snapshot.ejections("success_rate"), Some(0));
    assert_eq!(snapshot.ejected(), Some(1));
    assert_eq!(snapshot.panic(), Some(0));

    // No discovery change: it comes back after base_ejection_time (30 s),
    // not a moment before, by the balancer's own timer.
    advance(Duration::from_secs(30) - MS).await;
    let counts = tally(&mut balancer, 100, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 0, "{counts:?}");
    advance(MS).await;
    let counts = tally(&mut balancer, 100, |_| ()).await;
    // Still failing: five more failures, and it is out again...
    assert_eq!(count(&counts, "e0"), 5, "{counts:?}");
    assert_eq!(balancer.ejected_len(), 1);
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.ejections("consecutive_failures"), Some(1));
    assert_eq!(snapshot.ejected(), Some(1));

    // ...for twice as long (base × times ejected), now that it answers.
    fleet.answer("e0", Answer::Ok);
    advance(Duration::from_secs(60) - MS).await;
    let counts = tally(&mut balancer, 100, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 0, "{counts:?}");
    advance(MS).await;
    let counts = tally(&mut balancer, 400, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 100, "{counts:?}");
    assert_eq!(balancer.ejected_len(), 0);
    assert_eq!(Snapshot::take(&snapshotter).ejected(), Some(0));
}

/// `batches` batches of `size` requests in flight at once (sent, then
/// awaited together); how many each endpoint handled.
async fn concurrent<S>(
    balancer: &mut S,
    batches: usize,
    size: usize,
) -> std::collections::HashMap<String, usize>
where
    S: Service<(), Response = String, Error = orch_discovery::balance::BalanceError>,
{
    let mut counts = std::collections::HashMap::new();
    for _ in 0..batches {
        let mut in_flight = Vec::with_capacity(size);
        for _ in 0..size {
            futures_util::future::poll_fn(|cx| balancer.poll_ready(cx))
                .await
                .unwrap();
            in_flight.push(balancer.call(()));
        }
        for response in in_flight {
            *counts.entry(support::handler(&response.await)).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn ejection_works_under_p2c_too() {
    // P2C's failure-aware load starves a failing endpoint while the others
    // are idle; with requests in flight it still gets some, fails five in a
    // row, and is ejected.
    let fleet = Fleet::default();
    fleet.answer("e1", Answer::Fail);
    let mut balancer = Balancer::with_config(
        &config(Algorithm::pending_requests()),
        fixed(&ids(3)),
        fleet.connector(),
    )
    .unwrap();
    let counts = concurrent(&mut balancer, 100, 12).await;
    assert!(count(&counts, "e1") >= 5, "{counts:?}");
    assert_eq!(balancer.ejected_len(), 1);
    let counts = concurrent(&mut balancer, 100, 12).await;
    assert_eq!(count(&counts, "e1"), 0, "{counts:?}");

    fleet.answer("e1", Answer::Ok);
    advance(Duration::from_secs(30)).await;
    let counts = concurrent(&mut balancer, 100, 12).await;
    assert!(count(&counts, "e1") > 100, "back in the rotation: {counts:?}");
    assert_eq!(balancer.ejected_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_ejection_percent_are_ejected() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let fleet = Fleet::default();
    let failing = ["e0", "e1", "e2", "e3"];
    for id in failing {
        fleet.answer(id, Answer::Fail);
    }
    let outlier = OutlierConfig::default().max_ejection_percent(20);
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().outlier_detection(outlier));
    let mut balancer = Balancer::with_config(&config, fixed(&ids(10)), fleet.connector()).unwrap();

    // Every failing endpoint trips again and again; two of ten is the cap.
    tally(&mut balancer, 1_000, |_| ()).await;
    assert_eq!(balancer.ejected_len(), 2);
    let counts = tally(&mut balancer, 800, |_| ()).await;
    let out = failing.iter().filter(|id| count(&counts, id) == 0).count();
    assert_eq!(out, 2, "{counts:?}");
    assert_eq!(
        counts.len(),
        8,
        "the other failing ones still get traffic: {counts:?}"
    );
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.ejections("consecutive_failures"), Some(2));
    assert_eq!(snapshot.ejected(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_success_rate_outlier_among_ten_is_ejected_at_the_end_of_the_interval() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let fleet = Fleet::default();
    fleet.answer("e3", Answer::FailEveryOther);
    // Success rate alone: half of e3's requests fail, never five in a row anyway.
    let outlier = OutlierConfig::default().without_consecutive_failures();
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().outlier_detection(outlier));
    let mut balancer = Balancer::with_config(&config, fixed(&ids(10)), fleet.connector()).unwrap();

    // 200 requests each (request_volume 100, minimum_hosts 5): e3's 50 %
    // is below mean − 1.9 × stdev (95 − 1.9 × 15).
    let counts = tally(&mut balancer, 2_000, |_| ()).await;
    assert_eq!(count(&counts, "e3"), 200);
    assert_eq!(balancer.ejected_len(), 0, "judged only when the interval ends");

    advance(Duration::from_secs(10)).await;
    let counts = tally(&mut balancer, 900, |_| ()).await;
    assert_eq!(count(&counts, "e3"), 0, "{counts:?}");
    assert_eq!(counts.len(), 9);
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.ejections("success_rate"), Some(1));
    assert_eq!(snapshot.ejections("consecutive_failures"), Some(0));
    assert_eq!(snapshot.ejected(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn below_half_healthy_the_balancer_panics_and_spreads_over_all() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let fleet = Fleet::default();
    let outlier = OutlierConfig::default()
        .max_ejection_percent(100)
        .without_success_rate();
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().outlier_detection(outlier));
    let mut balancer = Balancer::with_config(&config, fixed(&ids(4)), fleet.connector()).unwrap();

    // One, then two of four ejected: half are healthy, which is not below 50 %.
    for (ejected, id) in [(1, "e0"), (2, "e1")] {
        fleet.answer(id, Answer::Fail);
        until_ejected(&mut balancer, ejected, 100).await;
        assert!(!balancer.in_panic());
        let counts = tally(&mut balancer, 400, |_| ()).await;
        assert_eq!(counts.len(), 4 - ejected, "{counts:?}");
    }
    assert_eq!(Snapshot::take(&snapshotter).panic(), Some(0));

    // Three of four: one healthy is below half, so all four share the traffic.
    fleet.answer("e2", Answer::Fail);
    until_ejected(&mut balancer, 3, 100).await;
    assert!(balancer.in_panic());
    let counts = tally(&mut balancer, 400, |_| ()).await;
    for id in ids(4) {
        assert_eq!(count(&counts, &id), 100, "{counts:?}");
    }
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.panic(), Some(1));
    assert_eq!(snapshot.ejected(), Some(3));

    // They come back (answering again): panic is over.
    for id in ["e0", "e1", "e2"] {
        fleet.answer(id, Answer::Ok);
    }
    advance(Duration::from_secs(30)).await;
    let counts = tally(&mut balancer, 400, |_| ()).await;
    assert_eq!(counts.len(), 4);
    assert!(!balancer.in_panic());
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.panic(), Some(0));
    assert_eq!(snapshot.ejected(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_panic_threshold_of_zero_never_panics() {
    let fleet = Fleet::default();
    let outlier = OutlierConfig::default()
        .max_ejection_percent(100)
        .without_success_rate();
    let health = HealthConfig::default()
        .outlier_detection(outlier)
        .healthy_panic_threshold(0.0);
    let config = config(Algorithm::pending_requests()).health(health);
    let mut balancer = Balancer::with_config(&config, fixed(&ids(4)), fleet.connector()).unwrap();
    for id in ["e0", "e1", "e2"] {
        fleet.answer(id, Answer::Fail);
    }
    until_ejected(&mut balancer, 3, 100_000).await;
    assert!(!balancer.in_panic());
    let counts = tally(&mut balancer, 1_000, |_| ()).await;
    assert_eq!(count(&counts, "e3"), 1_000, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn without_outlier_detection_nothing_is_ejected() {
    let fleet = Fleet::default();
    fleet.answer("e0", Answer::Fail);
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().without_outlier_detection());
    let mut balancer = Balancer::with_config(&config, fixed(&ids(2)), fleet.connector()).unwrap();
    let counts = tally(&mut balancer, 1_000, |_| ()).await;
    assert_eq!(count(&counts, "e0"), 500);
    assert_eq!(balancer.ejected_len(), 0);
}

/// The new endpoint's share of `n` picks.
async fn share_of_new<S>(balancer: &mut S, n: usize) -> f64
where
    S: Service<(), Response = String, Error = orch_discovery::balance::BalanceError>,
{
    let counts = tally(balancer, n, |_| ()).await;
    count(&counts, "new") as f64 / n as f64
}

async fn slow_start_ramps_a_new_endpoint(algorithm: Algorithm, tolerance: f64) {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    for id in ids(4) {
        tx.send(EndpointChange::Insert(endpoint(&id, 1))).unwrap();
    }
    let slow_start = SlowStartConfig::new(Duration::from_secs(10));
    let config = config(algorithm).health(HealthConfig::default().slow_start(slow_start));
    let mut balancer = Balancer::with_config(&config, changes, fleet.connector()).unwrap();
    // The first membership takes its full share at once.
    let counts = tally(&mut balancer, 4_000, |_| ()).await;
    for id in ids(4) {
        let share = count(&counts, &id) as f64 / 4_000.0;
        assert!((share - 0.25).abs() < tolerance, "{counts:?}");
    }

    // A scale-up: 10 % of its weight at first, half after half the window,
    // all of it after the window.
    tx.send(EndpointChange::Insert(endpoint("new", 1))).unwrap();
    let expected = [(0, 0.1 / 4.1), (5, 0.5 / 4.5), (5, 1.0 / 5.0), (60, 1.0 / 5.0)];
    for (wait, expected) in expected {
        advance(Duration::from_secs(wait)).await;
        let share = share_of_new(&mut balancer, 20_000).await;
        assert!(
            (share - expected).abs() < tolerance,
            "after {wait} s more: share {share:.4}, expected {expected:.4}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoints_share_under_round_robin() {
    slow_start_ramps_a_new_endpoint(Algorithm::RoundRobin, 0.002).await;
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoints_share_under_p2c() {
    slow_start_ramps_a_new_endpoint(Algorithm::pending_requests().into(), 0.01).await;
}

#[tokio::test]
async fn a_bad_health_config_builds_no_balancer() {
    let fleet = Fleet::default();
    let outlier = OutlierConfig::default().interval(Duration::ZERO);
    let config = config(Algorithm::RoundRobin).health(HealthConfig::default().outlier_detection(outlier));
    let err = Balancer::with_config(&config, fixed(&ids(1)), fleet.connector()).unwrap_err();
    assert_eq!(err.field_name(), "balancer.health.outlier_detection.interval");
}
