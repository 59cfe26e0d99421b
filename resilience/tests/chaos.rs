//! Fault injection: reproducible from a seed, each fault doing what it
//! says, on schedule, in paused time.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::chaos::{
    DropFault, ErrorFault, FaultConfig, FaultLayer, FaultSchedule, InjectError, InjectedFault, LatencyFault,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A service that counts its calls and answers with the request.
fn counted(
    calls: &Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone + use<> {
    let calls = Arc::clone(calls);
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(n) }
    })
}

fn errors(probability: f64, seed: u64) -> FaultLayer<InjectError> {
    FaultConfig {
        seed,
        error: Some(ErrorFault { probability }),
        ..FaultConfig::default()
    }
    .build()
    .unwrap()
}

/// Which of `n` requests failed.
async fn failures(layer: &FaultLayer<InjectError>, n: u32) -> Vec<u32> {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = layer.layer(counted(&calls));
    let mut failed = Vec::new();
    for i in 0..n {
        if service.clone().oneshot(i).await.is_err() {
            failed.push(i);
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst) + failed.len(),
        n as usize,
        "a failed call never reaches the service"
    );
    failed
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_faults() {
    let first = failures(&errors(0.1, 42), 2_000).await;
    assert_eq!(first, failures(&errors(0.1, 42), 2_000).await);
    assert_ne!(first, failures(&errors(0.1, 43), 2_000).await);
    // About a tenth, as asked.
    assert!((150..250).contains(&first.len()), "{}", first.len());
}

#[tokio::test(start_paused = true)]
async fn an_injected_error_is_recognisable_and_a_response_can_be_injected() {
    let service = errors(1.0, 1).layer(counted(&Arc::new(AtomicUsize::new(0))));
    let error = service.oneshot(1).await.unwrap_err();
    assert!(error.downcast_ref::<InjectedFault>().is_some(), "{error}");

    let layer = errors(1.0, 1).respond_with(|| 503_u32);
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(layer.layer(counted(&calls)).oneshot(7).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_call_within_its_bounds() {
    let layer = FaultConfig {
        latency: Some(LatencyFault {
            probability: 1.0,
            min: Duration::from_millis(100),
            max: Duration::from_millis(300),
        }),
        ..FaultConfig::default()
    }
    .build()
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let service = layer.layer(counted(&calls));
    for n in 0..50 {
        let began = Instant::now();
        assert_eq!(service.clone().oneshot(n).await.unwrap(), n);
        let took = began.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took <= Duration::from_millis(300),
            "{took:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_never_reaches_the_service_nor_answers() {
    let layer = FaultConfig {
        drop: Some(DropFault { probability: 1.0 }),
        ..FaultConfig::default()
    }
    .build()
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let call = layer.layer(counted(&calls)).oneshot(1);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), call)
            .await
            .is_err()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn faults_follow_their_schedule() {
    let layer = FaultConfig {
        error: Some(ErrorFault { probability: 1.0 }),
        schedule: FaultSchedule::Window {
            from: Duration::from_secs(10),
            until: Duration::from_secs(20),
        },
        ..FaultConfig::default()
    }
    .build()
    .unwrap();
    let service = layer.layer(counted(&Arc::new(AtomicUsize::new(0))));
    assert!(service.clone().oneshot(1).await.is_ok(), "before the window");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(service.clone().oneshot(1).await.is_err(), "in the window");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(service.clone().oneshot(1).await.is_ok(), "after the window");

    let periodic = FaultSchedule::Periodic {
        every: Duration::from_secs(60),
        active: Duration::from_secs(15),
    };
    assert!(periodic.is_active(Duration::from_secs(61)));
    assert!(!periodic.is_active(Duration::from_secs(80)));
}

#[test]
fn bad_settings_name_their_field() {
    let field = |config: FaultConfig| config.validate().unwrap_err().field_name().to_owned();
    assert_eq!(
        field(FaultConfig {
            error: Some(ErrorFault { probability: 1.5 }),
            ..FaultConfig::default()
        }),
        "error.probability"
    );
    assert_eq!(
        field(FaultConfig {
            latency: Some(LatencyFault {
                probability: 0.5,
                min: Duration::from_secs(2),
                max: Duration::from_secs(1)
            }),
            ..FaultConfig::default()
        }),
        "latency.min"
    );
    assert_eq!(
        field(FaultConfig {
            schedule: FaultSchedule::Window {
                from: Duration::from_secs(5),
                until: Duration::from_secs(5)
            },
            ..FaultConfig::default()
        }),
        "schedule.window.until"
    );
    assert_eq!(
        field(FaultConfig {
            schedule: FaultSchedule::Periodic {
                every: Duration::ZERO,
                active: Duration::ZERO
            },
            ..FaultConfig::default()
        }),
        "schedule.periodic.every"
    );
}
