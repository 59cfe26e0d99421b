//! The operator's controls and what the breaker reports: forced open,
//! disabled, metrics-only and reset, and the metrics counted for every
//! transition and rejection.

use orch_resilience::{CircuitRejection, Outcome, breaker::BreakerState};
use tokio::time::advance;

use super::{SEC, config, record, rejected_with, trip};
use crate::support::Metrics;

// ===== modes =====

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_until_normal() {
    let breaker = config().build().unwrap();
    breaker.force_open();
    assert_eq!(breaker.state(), BreakerState::ForcedOpen);
    assert_eq!(rejected_with(&breaker), (CircuitRejection::ForcedOpen, None));
    advance(3600 * SEC).await;
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::ForcedOpen);
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn disabled_admits_everything_and_records_nothing() {
    let breaker = config().build().unwrap();
    breaker.disable();
    record(&breaker, &[Outcome::Failure; 50]);
    assert_eq!(breaker.state(), BreakerState::Disabled);
    assert_eq!(breaker.metrics().calls, 0);
    breaker.normal();
    record(&breaker, &[Outcome::Failure; 3]);
    assert_eq!(breaker.state(), BreakerState::Closed, "the window starts empty");
}

#[tokio::test(start_paused = true)]
async fn metrics_only_records_and_reports_but_never_rejects() {
    let metrics = Metrics::default();
    let breaker = metrics.during(|| {
        let breaker = config().build().unwrap();
        breaker.metrics_only();
        record(&breaker, &[Outcome::Failure; 20]);
        breaker
    });
    assert_eq!(breaker.state(), BreakerState::MetricsOnly);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (10, 10));
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.counter(
            "orch_breaker_threshold_exceeded_total",
            &[("name", "test"), ("reason", "failure_rate")]
        ),
        1,
        "reported once per crossing: {snapshot:?}"
    );
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_and_forgets_from_any_state() {
    let breaker = config().build().unwrap();
    record(&breaker, &[Outcome::Failure; 3]);
    breaker.reset();
    record(&breaker, &[Outcome::Failure; 3]);
    assert_eq!(breaker.state(), BreakerState::Closed, "the window was emptied");
    record(&breaker, &[Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.force_open();
    breaker.reset();
    assert!(breaker.try_acquire().is_ok());
    // normal() leaves the ordinary states alone.
    trip(&breaker);
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Open);
}

// ===== metrics =====

#[tokio::test(start_paused = true)]
async fn transitions_and_rejections_are_counted() {
    let metrics = Metrics::default();
    let breaker = metrics.during(|| {
        let breaker = config().half_open_permits(1).build().unwrap();
        trip(&breaker);
        for _ in 0..3 {
            breaker.try_acquire().unwrap_err();
        }
        breaker
    });
    advance(10 * SEC).await;
    metrics.during(|| {
        let trial = breaker.try_acquire().unwrap();
        breaker.try_acquire().unwrap_err();
        trial.record(Outcome::Success);
        breaker.force_open();
        breaker.try_acquire().unwrap_err();
    });
    let snapshot = metrics.snapshot();
    type Labels<'a> = &'a [(&'a str, &'a str)];
    let expect: [(&str, Labels, u64); 7] = [
        (
            "orch_breaker_transitions_total",
            &[("from", "closed"), ("name", "test"), ("to", "open")],
            1,
        ),
        (
            "orch_breaker_transitions_total",
            &[("from", "open"), ("name", "test"), ("to", "half_open")],
            1,
        ),
        (
            "orch_breaker_transitions_total",
            &[("from", "half_open"), ("name", "test"), ("to", "closed")],
            1,
        ),
        (
            "orch_breaker_transitions_total",
            &[("from", "closed"), ("name", "test"), ("to", "forced_open")],
            1,
        ),
        (
            "orch_breaker_rejections_total",
            &[("name", "test"), ("reason", "open")],
            3,
        ),
        (
            "orch_breaker_rejections_total",
            &[("name", "test"), ("reason", "half_open_full")],
            1,
        ),
        (
            "orch_breaker_rejections_total",
            &[("name", "test"), ("reason", "forced_open")],
            1,
        ),
    ];
    for (name, labels, value) in expect {
        assert_eq!(
            snapshot.counter(name, labels),
            value,
            "{name}{labels:?} in {snapshot:?}"
        );
    }
    assert_eq!(
        snapshot.gauge("orch_breaker_state", &[("name", "test")]),
        Some(3.0),
        "forced open"
    );
    assert_eq!(breaker.metrics().rejections, 5);
}
