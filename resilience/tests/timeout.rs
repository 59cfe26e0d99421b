//! Timeout layer: which limit fired, what passes through, when the clock starts.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{ErrorClass, ResilienceError, Timeout, TimeoutConfig, TimeoutKind, TimeoutLayer};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use support::Metrics;

const MS: Duration = Duration::from_millis(1);

/// An inner service that answers `Ok(n)` after `delay`, counting calls.
fn delayed(
    delay: Duration,
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(delay).await;
            Ok(n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_fails_the_call_at_the_limit_with_its_kind() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::attempt(100 * MS))
        .service(delayed(Duration::from_secs(5), calls.clone()));

    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), 100 * MS);
    assert!(matches!(
        err,
        ResilienceError::Timeout { kind: TimeoutKind::Attempt, after } if after == 100 * MS
    ));
    assert_eq!(err.to_string(), "attempt timeout after 100ms");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_overall_timeout_says_overall() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::overall(Duration::from_secs(2)))
        .service(delayed(Duration::from_secs(5), Arc::default()));
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(matches!(
        err,
        ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == Duration::from_secs(2)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_response_in_time_passes_through() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::attempt(100 * MS))
        .service(delayed(99 * MS, Arc::default()));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_response_ready_at_the_deadline_wins() {
    // Both timers fire at the same instant; the inner future is polled first.
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::attempt(100 * MS))
        .service(delayed(100 * MS, Arc::default()));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_zero_limit_still_lets_an_immediately_ready_call_through() {
    let ready = service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) });
    let svc = Timeout::new(ready, TimeoutKind::Attempt, Duration::ZERO);
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);

    let slow = Timeout::new(delayed(MS, Arc::default()), TimeoutKind::Attempt, Duration::ZERO);
    assert!(matches!(
        slow.oneshot(3).await,
        Err(ResilienceError::Timeout { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn inner_errors_are_converted_once_and_own_errors_pass_unchanged() {
    let failing = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("reset")) });
    let err = Timeout::new(failing, TimeoutKind::Attempt, MS * 10)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner);
    assert_eq!(
        err.downcast_inner_ref::<std::io::Error>().unwrap().to_string(),
        "reset"
    );

    let limited = service_fn(|_: ()| async {
        Err::<(), _>(ResilienceError::RateLimited {
            name: "api".into(),
            wait: 5 * MS,
        })
    });
    let err = Timeout::new(limited, TimeoutKind::Attempt, MS * 10)
        .oneshot(())
        .await
        .unwrap_err();
    assert!(matches!(err, ResilienceError::RateLimited { wait, .. } if wait == 5 * MS));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_inside_an_overall_one_keeps_its_kind() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::overall(Duration::from_secs(1)))
        .layer(TimeoutLayer::attempt(100 * MS))
        .service(delayed(Duration::from_secs(5), Arc::default()));
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(matches!(
        err,
        ResilienceError::Timeout {
            kind: TimeoutKind::Attempt,
            ..
        }
    ));

    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::overall(100 * MS))
        .layer(TimeoutLayer::attempt(Duration::from_secs(1)))
        .service(delayed(Duration::from_secs(5), Arc::default()));
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(matches!(
        err,
        ResilienceError::Timeout {
            kind: TimeoutKind::Overall,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn the_clock_starts_at_call_not_at_first_poll() {
    let mut svc = TimeoutLayer::attempt(100 * MS).layer(delayed(Duration::from_secs(5), Arc::default()));
    let future = svc.ready().await.unwrap().call(1);
    tokio::time::advance(150 * MS).await;
    let start = Instant::now();
    assert!(matches!(future.await, Err(ResilienceError::Timeout { .. })));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_first_polled_late_still_times_out_at_call_plus_limit() {
    // Made at t = 0, first polled (and found pending) at t = 60 ms: the
    // limit still ends at 100 ms, not at 160 ms.
    let mut svc = TimeoutLayer::attempt(100 * MS).layer(delayed(Duration::from_secs(5), Arc::default()));
    let start = Instant::now();
    let future = svc.ready().await.unwrap().call(1);
    tokio::time::advance(60 * MS).await;
    assert!(matches!(future.await, Err(ResilienceError::Timeout { .. })));
    assert_eq!(start.elapsed(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_pending_call_answered_before_the_limit_passes_through() {
    let svc = TimeoutLayer::attempt(100 * MS).layer(delayed(99 * MS, Arc::default()));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_limit_too_large_for_the_clock_never_fires() {
    let svc = TimeoutLayer::attempt(Duration::MAX).layer(delayed(Duration::from_secs(3600), Arc::default()));
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_when_the_limit_passes() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let inner = service_fn(move |_: ()| {
        let guard = Flag(flag.clone());
        async move {
            let _guard = guard;
            sleep(Duration::from_secs(5)).await;
            Ok::<_, std::io::Error>(())
        }
    });
    let mut svc = TimeoutLayer::attempt(100 * MS).layer(inner);
    let future = svc.ready().await.unwrap().call(());
    let result = future.await;
    assert!(result.is_err());
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_counted_by_name_and_kind() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::overall(10 * MS).with_name("checkout"))
        .service(delayed(Duration::from_secs(1), Arc::default()));
    for _ in 0..2 {
        assert!(svc.clone().oneshot(1).await.is_err());
    }
    let fast = ServiceBuilder::new()
        .layer(TimeoutLayer::overall(10 * MS).with_name("checkout"))
        .service(delayed(MS, Arc::default()));
    assert!(fast.oneshot(1).await.is_ok());

    assert_eq!(
        metrics
            .snapshot()
            .counter("orch_timeout_total", &[("name", "checkout"), ("kind", "overall")]),
        2
    );
}

#[test]
fn config_rejects_a_zero_duration_naming_the_field() {
    let err = TimeoutConfig::default()
        .duration(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field_name(), "timeout.duration");
    assert_eq!(
        err.to_string(),
        "invalid timeout.duration: must be greater than zero"
    );
}

#[test]
fn config_round_trips_through_json_with_human_durations() {
    let config: TimeoutConfig =
        serde_json::from_str(r#"{ "name": "db", "kind": "attempt", "duration": "250ms" }"#).unwrap();
    assert_eq!(
        config,
        TimeoutConfig::default()
            .name("db")
            .kind(TimeoutKind::Attempt)
            .duration(250 * MS)
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["kind"], "attempt");
    assert_eq!(json["duration"], "250ms");
    let back: TimeoutConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);

    let defaults: TimeoutConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, TimeoutConfig::default());
    assert_eq!(defaults.duration, Duration::from_secs(1));

    assert!(serde_json::from_str::<TimeoutConfig>(r#"{ "kind": "per_try" }"#).is_err());
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{ "timeout": "1s" }"#).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_layer_built_from_config_uses_its_kind_name_and_duration() {
    let layer = TimeoutConfig::default()
        .name("search")
        .kind(TimeoutKind::Overall)
        .duration(50 * MS)
        .build()
        .unwrap();
    let svc = layer.layer(delayed(Duration::from_secs(1), Arc::default()));
    assert_eq!(svc.name(), "search");
    assert_eq!(svc.kind(), TimeoutKind::Overall);
    assert_eq!(svc.duration(), 50 * MS);
    let start = Instant::now();
    assert!(matches!(
        svc.oneshot(1).await,
        Err(ResilienceError::Timeout {
            kind: TimeoutKind::Overall,
            ..
        })
    ));
    assert_eq!(start.elapsed(), 50 * MS);
}
