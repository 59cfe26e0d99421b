//! Fallback: which classes it answers, async and value fallbacks, composition, config.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{
    BulkheadConfig, CircuitRejection, ErrorClass, ErrorClasses, FallbackConfig, FallbackLayer,
    ResilienceError, TimeoutKind, TimeoutLayer,
};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use support::Metrics;

const MS: Duration = Duration::from_millis(1);

fn circuit_open() -> ResilienceError {
    ResilienceError::CircuitOpen {
        name: "prices".into(),
        rejection: CircuitRejection::Open,
        remaining: Some(Duration::from_secs(3)),
    }
}

/// The error each request number makes the inner service fail with.
fn scripted(n: u32) -> Result<&'static str, ResilienceError> {
    match n {
        0 => Ok("fresh"),
        1 => Err(circuit_open()),
        2 => Err(ResilienceError::Timeout {
            kind: TimeoutKind::Attempt,
            after: 100 * MS,
        }),
        3 => Err(ResilienceError::RateLimited {
            name: "api".into(),
            wait: 5 * MS,
        }),
        _ => Err(ResilienceError::from_inner(std::io::Error::other("reset"))),
    }
}

/// An inner service failing per [`scripted`], counting calls.
fn breaker_like(
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = &'static str, Error = ResilienceError> + Clone {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { scripted(n) }
    })
}

/// A fallback that counts its uses and names the class it answered.
fn counting_fallback(
    uses: Arc<AtomicUsize>,
) -> impl Fn(ResilienceError) -> std::future::Ready<Result<&'static str, ResilienceError>> {
    move |err| {
        uses.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(match err.class() {
            ErrorClass::CircuitOpen => "cached (circuit open)",
            ErrorClass::Timeout => "cached (timeout)",
            _ => "cached (other)",
        }))
    }
}

#[tokio::test]
async fn only_errors_of_the_chosen_classes_are_answered_and_others_pass_unchanged() {
    let (calls, uses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let layer = FallbackLayer::new(counting_fallback(uses.clone())).on(ErrorClasses::from_iter([
        ErrorClass::CircuitOpen,
        ErrorClass::Timeout,
    ]));
    let svc = layer.layer(breaker_like(calls.clone()));

    assert_eq!(svc.clone().oneshot(0).await.unwrap(), "fresh");
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "cached (circuit open)");
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), "cached (timeout)");

    let limited = svc.clone().oneshot(3).await.unwrap_err();
    assert!(matches!(limited, ResilienceError::RateLimited { wait, .. } if wait == 5 * MS));
    let inner = svc.clone().oneshot(4).await.unwrap_err();
    assert_eq!(inner.class(), ErrorClass::Inner);
    assert_eq!(
        inner.downcast_inner_ref::<std::io::Error>().unwrap().to_string(),
        "reset"
    );

    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(uses.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn by_default_every_class_is_answered_including_inner_errors() {
    let uses = Arc::new(AtomicUsize::new(0));
    let svc = FallbackLayer::new(counting_fallback(uses.clone())).layer(breaker_like(Arc::default()));
    for n in 1..=4 {
        assert!(svc.clone().oneshot(n).await.is_ok());
    }
    assert_eq!(uses.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn an_async_fallback_receives_the_error_and_its_result_is_the_answer() {
    let layer = FallbackLayer::new(|err: ResilienceError| async move {
        sleep(50 * MS).await;
        match err {
            ResilienceError::CircuitOpen { name, remaining, .. } => Ok(format!(
                "{name} unavailable, retry in {:?}",
                remaining.unwrap_or_default()
            )),
            other => Err(other),
        }
    })
    .on(ErrorClasses::LOCAL_REJECTIONS);
    let inner = service_fn(|n: u32| async move { scripted(n).map(str::to_owned) });
    let svc = layer.layer(inner);

    let start = Instant::now();
    assert_eq!(
        svc.clone().oneshot(1).await.unwrap(),
        "prices unavailable, retry in 3s"
    );
    assert_eq!(start.elapsed(), 50 * MS);

    // The fallback's own error is returned as it is, not answered again.
    let err = svc.oneshot(3).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimited);
}

#[tokio::test]
async fn a_value_fallback_answers_with_clones_of_the_value() {
    let svc = FallbackLayer::value(vec!["default"])
        .on(ErrorClass::CircuitOpen)
        .layer(service_fn(|n: u32| async move { scripted(n).map(|s| vec![s]) }));
    assert_eq!(svc.clone().oneshot(0).await.unwrap(), ["fresh"]);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), ["default"]);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), ["default"]);
    assert!(svc.oneshot(2).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn composed_over_a_timeout_and_a_bulkhead_it_answers_their_rejections() {
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = {
        let calls = calls.clone();
        service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                sleep(Duration::from_secs(1)).await;
                Ok::<_, std::io::Error>("slow answer")
            }
        })
    };
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::value("degraded").on(ErrorClasses::LOCAL_REJECTIONS.with(ErrorClass::Timeout)))
        .layer(TimeoutLayer::overall(100 * MS))
        .layer(BulkheadConfig::default().max_concurrent(1).build().unwrap())
        .service(slow);

    let first = svc.ready().await.unwrap().call(());
    let second = svc.ready().await.unwrap().call(()); // bulkhead full
    let start = Instant::now();
    assert_eq!(second.await.unwrap(), "degraded");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(first.await.unwrap(), "degraded"); // timed out
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn poll_ready_errors_pass_through() {
    #[derive(Clone)]
    struct Broken;
    impl Service<()> for Broken {
        type Response = &'static str;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<&'static str, std::io::Error>>;
        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err(std::io::Error::other("closed")))
        }
        fn call(&mut self, _: ()) -> Self::Future {
            std::future::ready(Ok("unreachable"))
        }
    }
    let err = FallbackLayer::value("default")
        .layer(Broken)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner);
}

#[tokio::test]
async fn uses_are_counted_by_name_and_class() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let svc = FallbackLayer::value("cached")
        .with_name("prices")
        .on(ErrorClasses::LOCAL_REJECTIONS)
        .layer(breaker_like(Arc::default()));
    for n in [0, 1, 1, 3, 2] {
        let _ = svc.clone().oneshot(n).await;
    }
    // By class, sorted.
    let counts: Vec<(String, u64)> = metrics
        .snapshot()
        .counters_by("orch_fallback_total", &[("name", "prices")], "class")
        .into_iter()
        .collect();
    assert_eq!(
        counts,
        [("circuit_open".to_owned(), 2), ("rate_limited".to_owned(), 1)]
    );
}

#[tokio::test]
async fn a_layer_from_config_answers_the_configured_classes() {
    let config: FallbackConfig = serde_json::from_str(r#"{ "name": "prices", "on": ["timeout"] }"#).unwrap();
    let layer = FallbackLayer::from_config(config, counting_fallback(Arc::default())).unwrap();
    assert_eq!(layer.name(), "prices");
    let svc = layer.layer(breaker_like(Arc::default()));
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), "cached (timeout)");
    assert_eq!(svc.oneshot(1).await.unwrap_err().class(), ErrorClass::CircuitOpen);
}

#[test]
fn config_rejects_an_empty_class_set_naming_the_field() {
    let err = FallbackConfig::default()
        .on(ErrorClasses::NONE)
        .validate()
        .unwrap_err();
    assert_eq!(err.field_name(), "fallback.on");
    let from_json: FallbackConfig = serde_json::from_str(r#"{ "on": [] }"#).unwrap();
    assert!(
        FallbackLayer::from_config(from_json, |e: ResilienceError| async move { Err::<(), _>(e) }).is_err()
    );
}

#[test]
fn config_round_trips_through_json() {
    let config: FallbackConfig =
        serde_json::from_str(r#"{ "name": "prices", "on": ["circuit_open", "timeout"] }"#).unwrap();
    assert_eq!(
        config,
        FallbackConfig::default().name("prices").on(ErrorClasses::NONE
            .with(ErrorClass::Timeout)
            .with(ErrorClass::CircuitOpen))
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["on"], serde_json::json!(["circuit_open", "timeout"]));
    assert_eq!(serde_json::from_value::<FallbackConfig>(json).unwrap(), config);

    let defaults: FallbackConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults.on, ErrorClasses::ANY);
    assert_eq!(serde_json::to_value(&defaults).unwrap()["on"], "any");

    let every: ErrorClasses = serde_json::from_str(
        r#"["circuit_open", "timeout", "bulkhead_full", "rate_limited", "budget_exhausted", "not_retried", "inner"]"#,
    )
    .unwrap();
    assert_eq!(every.iter().count(), 7);
    let err = serde_json::from_str::<FallbackConfig>(r#"{ "on": ["open"] }"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant `open`"), "{err}");
    assert!(serde_json::from_str::<FallbackConfig>(r#"{ "on": "some" }"#).is_err());
    assert!(serde_json::from_str::<FallbackConfig>(r#"{ "classes": "any" }"#).is_err());
}
