//! GCRA rate limiter: burst, refill, sharing, waiting, the window bound, config.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{ClockSource, RateLimitConfig, RateLimitLayer, RateLimiter, ResilienceError};
use proptest::prelude::*;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

use support::Metrics;

const MS: Duration = Duration::from_millis(1);

/// An inner service that counts calls and answers at once.
fn counting(
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(n) }
    })
}

/// 100 permits per second (one every 10 ms), bursts of 10.
fn hundred_per_second() -> RateLimitConfig {
    RateLimitConfig::new(100, Duration::from_secs(1))
        .name("api")
        .burst(10)
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_admitted_then_calls_are_rejected_with_the_wait_for_the_next_permit() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = hundred_per_second()
        .build()
        .unwrap()
        .layer(counting(calls.clone()));

    for n in 0..10 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    let err = svc.ready().await.unwrap().call(10).await.unwrap_err();
    match &err {
        ResilienceError::RateLimited { name, wait } => assert_eq!((&**name, *wait), ("api", 10 * MS)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_local_rejection());
    assert_eq!(err.retry_after(), Some(10 * MS));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "the rejected call never reached the service"
    );

    // Part of the way to the next permit, the wait shrinks accordingly.
    advance(4 * MS).await;
    let err = svc.ready().await.unwrap().call(11).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(6 * MS));
}

#[tokio::test(start_paused = true)]
async fn permits_refill_at_the_configured_rate() {
    let limiter = hundred_per_second().limiter().unwrap();
    while limiter.try_acquire().is_ok() {}

    advance(10 * MS).await;
    assert!(limiter.try_acquire().is_ok());
    assert!(limiter.try_acquire().is_err());

    advance(50 * MS).await;
    let admitted = std::iter::from_fn(|| limiter.try_acquire().ok()).count();
    assert_eq!(admitted, 5);

    // After a quiet second the bucket holds a full burst again, not more.
    advance(Duration::from_secs(1)).await;
    let admitted = std::iter::from_fn(|| limiter.try_acquire().ok()).count();
    assert_eq!(admitted, 10);

    // Calling every millisecond for a second admits exactly the sustained rate.
    let mut admitted = 0;
    for _ in 0..1000 {
        advance(MS).await;
        admitted += usize::from(limiter.try_acquire().is_ok());
    }
    assert_eq!(admitted, 100);
}

#[tokio::test(start_paused = true)]
async fn after_the_reported_wait_a_call_is_admitted() {
    let limiter = RateLimitConfig::new(3, Duration::from_secs(1))
        .burst(1)
        .limiter()
        .unwrap();
    assert!(limiter.try_acquire().is_ok());
    let wait = limiter.try_acquire().unwrap_err();
    // 1 s / 3 rounded up to the nanosecond, so the rate never exceeds 3/s.
    assert_eq!(wait, Duration::from_nanos(333_333_334));
    assert_eq!(limiter.interval(), wait);
    advance(wait - Duration::from_nanos(1)).await;
    assert!(limiter.try_acquire().is_err());
    advance(Duration::from_nanos(1)).await;
    assert!(limiter.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = hundred_per_second().build().unwrap();
    let mut a = layer.layer(counting(calls.clone()));
    let mut b = a.clone();
    let mut c = layer.layer(counting(calls.clone()));
    let direct = layer.limiter().clone();

    let mut admitted = 0;
    for n in 0..30 {
        let svc = match n % 3 {
            0 => &mut a,
            1 => &mut b,
            _ => &mut c,
        };
        admitted += usize::from(svc.ready().await.unwrap().call(n).await.is_ok());
    }
    assert_eq!(admitted, 10, "three services together get exactly one burst");
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert!(
        direct.try_acquire().is_err(),
        "the standalone handle shares the budget too"
    );

    let shared = RateLimitLayer::from_limiter(direct.clone());
    advance(10 * MS).await;
    assert!(direct.try_acquire().is_ok());
    let mut d = shared.layer(counting(calls.clone()));
    assert!(d.ready().await.unwrap().call(0).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn calls_within_max_wait_wait_for_their_permit_in_order_and_later_ones_are_rejected() {
    let log: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let inner = {
        let log = log.clone();
        service_fn(move |n: u32| {
            log.lock().unwrap().push((n, Instant::now()));
            async move { Ok::<_, std::io::Error>(n) }
        })
    };
    // One permit every 100 ms, no burst beyond one, wait up to 250 ms.
    let config = RateLimitConfig::new(10, Duration::from_secs(1))
        .burst(1)
        .max_wait(250 * MS);
    let mut svc = config.build().unwrap().layer(inner);
    let start = Instant::now();

    let mut futures = Vec::new();
    for n in 1..=3 {
        futures.push(svc.ready().await.unwrap().call(n));
    }
    let err = svc.ready().await.unwrap().call(4).await.unwrap_err();
    assert!(
        matches!(err, ResilienceError::RateLimited { wait, .. } if wait == 300 * MS),
        "the fourth permit is 300 ms away, beyond max_wait: {err:?}"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "waiting calls do not reach the service early"
    );

    // Spawned in reverse: the reservation made at call time decides the order.
    let handles: Vec<_> = futures.into_iter().rev().map(tokio::spawn).collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let log = log.lock().unwrap().clone();
    let seen: Vec<(u32, Duration)> = log.iter().map(|(n, at)| (*n, *at - start)).collect();
    assert_eq!(seen, [(1, Duration::ZERO), (2, 100 * MS), (3, 200 * MS)]);
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_until_a_permit_is_due() {
    let limiter = RateLimitConfig::new(10, Duration::from_secs(1))
        .burst(1)
        .limiter()
        .unwrap();
    let start = Instant::now();
    limiter.acquire().await;
    limiter.acquire().await;
    limiter.acquire().await;
    assert_eq!(start.elapsed(), 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn rejections_are_counted_by_name() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = hundred_per_second()
        .burst(2)
        .build()
        .unwrap()
        .layer(counting(calls));
    for n in 0..5 {
        let _ = svc.ready().await.unwrap().call(n).await;
    }
    let rejections = metrics
        .snapshot()
        .counter("orch_rate_limit_rejections_total", &[("name", "api")]);
    assert_eq!(rejections, 3);
}

#[test]
fn config_rejects_zero_permits_period_or_burst_naming_the_field() {
    let field = |config: RateLimitConfig| config.validate().unwrap_err().field_name().to_owned();
    assert_eq!(field(hundred_per_second().permits(0)), "rate_limit.permits");
    assert_eq!(field(hundred_per_second().per(Duration::ZERO)), "rate_limit.per");
    assert_eq!(field(hundred_per_second().burst(0)), "rate_limit.burst");
    assert_eq!(
        field(RateLimitConfig::new(2_000, Duration::from_micros(1))),
        "rate_limit.permits",
        "more than one permit per nanosecond"
    );
    assert!(
        RateLimitConfig::new(1_000, Duration::from_micros(1))
            .validate()
            .is_ok()
    );
    // A burst that takes centuries to refill would overflow the schedule.
    let year = Duration::from_secs(365 * 86_400);
    assert_eq!(
        field(RateLimitConfig::new(1, year).burst(1_000)),
        "rate_limit.burst"
    );
    assert_eq!(field(RateLimitConfig::new(1_000, 1_000 * year)), "rate_limit.per");
    assert!(RateLimitConfig::new(1, year).burst(100).validate().is_ok());
    assert!(RateLimiter::new(hundred_per_second().permits(0)).is_err());
    assert!(hundred_per_second().per(Duration::ZERO).build().is_err());
}

#[test]
fn config_round_trips_through_json_with_human_durations() {
    let config: RateLimitConfig = serde_json::from_str(
        r#"{ "name": "api", "permits": 100, "per": "1s", "burst": 10, "max_wait": "250ms" }"#,
    )
    .unwrap();
    assert_eq!(config, hundred_per_second().max_wait(250 * MS));
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!((&json["per"], &json["max_wait"]), (&"1s".into(), &"250ms".into()));
    assert_eq!(serde_json::from_value::<RateLimitConfig>(json).unwrap(), config);

    let defaults: RateLimitConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, RateLimitConfig::default());
    assert_eq!(
        (
            defaults.permits,
            defaults.per,
            defaults.effective_burst(),
            defaults.max_wait
        ),
        (50, Duration::from_secs(1), 50, Duration::ZERO)
    );
    assert!(serde_json::from_str::<RateLimitConfig>(r#"{ "rate": 5 }"#).is_err());

    assert_eq!(
        defaults.clock,
        ClockSource::Tokio,
        "follows paused time unless told"
    );
    let tsc: RateLimitConfig = serde_json::from_str(r#"{ "clock": "tsc" }"#).unwrap();
    assert_eq!(tsc, RateLimitConfig::default().clock(ClockSource::Tsc));
    assert_eq!(serde_json::to_value(&tsc).unwrap()["clock"], "tsc");
    assert!(serde_json::from_str::<RateLimitConfig>(r#"{ "clock": "wall" }"#).is_err());
}

#[tokio::test]
async fn a_limiter_on_the_tsc_admits_its_burst_then_names_the_wait() {
    // One permit an hour: whatever the clock reads between these calls, the
    // burst is all there is, and the next permit is up to an hour away.
    let config = RateLimitConfig::new(1, Duration::from_secs(3600))
        .burst(3)
        .clock(ClockSource::Tsc);
    let limiter = config.clone().limiter().unwrap();
    assert_eq!(std::iter::from_fn(|| limiter.try_acquire().ok()).count(), 3);
    let wait = limiter.try_acquire().unwrap_err();
    assert!(!wait.is_zero() && wait <= Duration::from_secs(3600), "{wait:?}");

    let mut svc = RateLimitLayer::new(config)
        .unwrap()
        .layer(counting(Arc::default()));
    for n in 0..3 {
        svc.ready().await.unwrap().call(n).await.unwrap();
    }
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(matches!(err, ResilienceError::RateLimited { .. }), "{err}");
}

/// Runs `calls` (gaps between calls, in units of `T / 4`) against a limiter
/// of `permits` per `per_ms` with `burst`. Returns the instants of the
/// admitted calls in nanoseconds, the interval `T` in nanoseconds, and the
/// waits the rejected calls were told.
fn admitted_times(permits: u32, per_ms: u64, burst: u32, gaps: &[u32]) -> (Vec<u64>, u64, Vec<Duration>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let limiter = RateLimitConfig::new(permits, Duration::from_millis(per_ms))
            .burst(burst)
            .limiter()
            .expect("valid config");
        let interval = u64::try_from(limiter.interval().as_nanos()).expect("interval fits u64");
        let start = Instant::now();
        let mut admitted = Vec::new();
        let mut waits = Vec::new();
        for gap in gaps {
            advance(Duration::from_nanos(interval / 4 * u64::from(*gap))).await;
            match limiter.try_acquire() {
                Ok(()) => admitted.push(u64::try_from(start.elapsed().as_nanos()).expect("fits u64")),
                Err(wait) => waits.push(wait),
            }
        }
        (admitted, interval, waits)
    })
}

proptest! {
    /// The GCRA guarantee: in any closed window of length `w`, at most
    /// `burst + ⌊w / T⌋` calls are admitted; with `w = per` that is at most
    /// `burst + permits`. And a rejection never asks for more than one
    /// interval `T` of waiting (no call waits, so nothing is reserved ahead).
    #[test]
    fn no_window_of_length_per_admits_more_than_burst_plus_permits(
        permits in 1_u32..50,
        per_ms in 1_u64..2_000,
        burst in 1_u32..20,
        gaps in proptest::collection::vec(0_u32..6, 1..300),
    ) {
        let (admitted, interval, waits) = admitted_times(permits, per_ms, burst, &gaps);
        let per = per_ms * 1_000_000;
        for (i, start) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|at| **at <= start + per).count();
            let bound = u64::from(burst) + per / interval;
            prop_assert!(in_window as u64 <= bound, "{in_window} admitted in [{start}, {start} + per], bound {bound}");
            prop_assert!(in_window as u64 <= u64::from(burst) + u64::from(permits));
        }
        for wait in waits {
            prop_assert!(!wait.is_zero() && wait.as_nanos() <= u128::from(interval));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_window_bound_is_reached_by_a_burst_then_one_call_per_interval() {
    let limiter = RateLimitConfig::new(10, Duration::from_secs(1))
        .burst(3)
        .limiter()
        .unwrap();
    let mut admitted = std::iter::from_fn(|| limiter.try_acquire().ok()).count();
    for _ in 0..10 {
        advance(100 * MS).await;
        admitted += std::iter::from_fn(|| limiter.try_acquire().ok()).count();
    }
    // [0, 1 s] closed: the burst of 3 at zero, then one every 100 ms.
    assert_eq!(admitted, 3 + 10);
}
