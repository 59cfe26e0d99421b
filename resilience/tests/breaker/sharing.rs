//! One breaker behind many handles: a registry shares one breaker per name,
//! clones of a service share their layer's breaker, the HTTP classifier
//! decides for every handle, and threads recording into one breaker trip it
//! together.

use orch_resilience::{
    CircuitRejection, HttpClassifier, Outcome,
    breaker::{BreakerRegistry, BreakerState, CircuitBreakerConfig, CircuitBreakerLayer},
};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{config, rejection};
use crate::support::{Step, scripted};

// ===== sharing =====

#[tokio::test(start_paused = true)]
async fn registry_shares_one_breaker_per_name() {
    let registry = BreakerRegistry::new(config())
        .unwrap()
        .with_override("payments", config().minimum_calls(2))
        .unwrap();
    let (payments, payment_calls) = scripted::<()>([Step::Fail; 2], Step::Ok(200));
    let mut a = registry.layer("payments").layer(payments.clone());
    let mut b = registry.layer("payments").layer(payments);
    let mut other = registry
        .layer("search")
        .layer(scripted::<()>([], Step::Ok(200)).0);
    a.ready().await.unwrap().call(()).await.unwrap_err();
    b.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(registry.get("payments").unwrap().state(), BreakerState::Open);
    assert!(b.ready().await.unwrap().call(()).await.is_err());
    assert!(a.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(payment_calls.get(), 2);
    assert_eq!(other.ready().await.unwrap().call(()).await.unwrap(), 200);
    assert_eq!(registry.get_or_create("payments").name(), "payments");
    assert!(registry.get("missing").is_none());
    let states: Vec<_> = registry
        .states()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    assert_eq!(
        states,
        [
            ("payments".to_string(), BreakerState::Open),
            ("search".to_string(), BreakerState::Closed)
        ]
    );
    let err = BreakerRegistry::new(config())
        .unwrap()
        .with_override("payments", config().failure_rate_threshold(2.0))
        .unwrap_err();
    assert_eq!(err.field_name(), "breakers.payments.failure_rate_threshold");
}

#[tokio::test(start_paused = true)]
async fn service_clones_share_the_breaker() {
    let (inner, calls) = scripted::<()>([Step::Fail; 4], Step::Ok(200));
    let svc = CircuitBreakerLayer::new(config()).unwrap().layer(inner);
    for _ in 0..4 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
    assert_eq!(svc.breaker().state(), BreakerState::Open);
    assert_eq!(calls.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn http_classifier_counts_server_errors() {
    let breaker = config().build().unwrap();
    let inner = service_fn(|status: u16| async move {
        Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
    });
    let mut svc = breaker.layer().classifier(HttpClassifier::default()).layer(inner);
    for status in [200, 404, 503, 500] {
        let response = svc.ready().await.unwrap().call(status).await.unwrap();
        assert_eq!(response.status(), status);
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 2));
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[test]
fn threads_recording_into_one_breaker_trip_it_together() {
    let breaker = CircuitBreakerConfig::default()
        .count_window(50)
        .minimum_calls(20)
        .build()
        .unwrap();
    let threads = 4;
    let healthy = std::sync::Barrier::new(threads + 1);
    let failing = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..10_000 {
                    breaker.try_acquire().unwrap().record(Outcome::Success);
                }
                healthy.wait();
                failing.wait();
                for _ in 0..200 {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.record(Outcome::Failure);
                    }
                }
            });
        }
        healthy.wait();
        assert_eq!(breaker.state(), BreakerState::Closed, "successes never trip");
        failing.wait();
    });
    // Every shard the threads use ends full of failures.
    assert_eq!(breaker.state(), BreakerState::Open);
}
