//! The percentile delay: the latency tracker's percentiles over two windows,
//! the delay that follows recent latencies (and falls back before enough
//! samples), what is recorded, and one tracker shared by a layer's services.

use std::time::Duration;

use orch_resilience::{Hedge, HedgeConfig, HedgeDelay, LatencyTracker};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt};

use super::{Script, Then, fixed, layer};
use crate::support::ms;

// ===== percentile delay =====

#[tokio::test(start_paused = true)]
async fn the_tracker_answers_percentiles_over_two_windows() {
    let tracker = LatencyTracker::new(ms(1_000));
    assert_eq!(tracker.percentile(0.95), None);
    for latency in 1..=100 {
        tracker.record(ms(latency));
    }
    assert_eq!(tracker.samples(), 100);
    for (p, exact) in [(0.5, 50), (0.9, 90), (0.95, 95), (0.99, 99), (1.0, 100)] {
        let value = tracker.percentile(p).unwrap();
        assert!(
            value >= ms(exact) && value.as_secs_f64() <= ms(exact).as_secs_f64() * 1.0625,
            "p{p}: {value:?}"
        );
    }

    // One window later the samples still count; two windows later they are gone.
    sleep(ms(1_000)).await;
    tracker.record(ms(500));
    assert_eq!(tracker.samples(), 101);
    sleep(ms(1_000)).await;
    assert_eq!(tracker.samples(), 1);
    assert_eq!(tracker.percentile(0.5), tracker.percentile(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_percentile_delay_follows_recent_latencies() {
    let config = HedgeConfig::default().delay(HedgeDelay::Percentile {
        percentile: 0.9,
        min_samples: 10,
        window: ms(10_000),
        fallback: ms(500),
    });
    // Call 1: slow primary, hedged at the fallback delay.
    // Calls 2-21: 20ms primaries.
    // Call 22: slow primary, hedged at the p90 of the samples.
    let mut steps = vec![(1_000, Then::Ok), (10, Then::Ok)];
    steps.extend([(20, Then::Ok); 20]);
    steps.extend([(1_000, Then::Ok), (5, Then::Ok)]);
    let script = Script::new(&steps);
    let mut service = layer(config).layer(script.service::<u32>());
    let samples = |tracker: Option<&LatencyTracker>| tracker.unwrap().samples();

    assert_eq!(service.current_delay(), ms(500), "fallback before min_samples");
    let start = Instant::now();
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(510));
    // The cancelled primary was recorded with the time it had run.
    assert_eq!(samples(service.latency()), 1);
    assert!(service.latency().unwrap().percentile(1.0).unwrap() >= ms(510));

    for _ in 0..20 {
        service.ready().await.unwrap().call(7).await.unwrap();
    }
    assert_eq!(samples(service.latency()), 21);
    let delay = service.current_delay();
    assert_eq!(Some(delay), service.latency().unwrap().percentile(0.9));
    assert!(
        delay >= ms(20) && delay <= Duration::from_micros(21_250),
        "{delay:?}"
    );

    let start = Instant::now();
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), (23, 200));
    let elapsed = start.elapsed();
    // Hedged at the percentile delay (on the timer's millisecond grid) + 5ms.
    assert!(
        elapsed >= delay + ms(5) && elapsed <= delay + ms(6),
        "{elapsed:?}"
    );
    assert_eq!(script.calls(), 24);

    // Two windows later the samples have expired: back to the fallback.
    sleep(ms(20_000)).await;
    assert_eq!(service.current_delay(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn failed_primaries_and_unsafe_requests_record_no_latency() {
    let config = HedgeConfig::default().delay(HedgeDelay::percentile(0.95));
    let script = Script::new(&[(5, Then::Fail), (5, Then::Ok), (5, Then::Ok)]);
    let mut service = Hedge::new(script.service::<http::Request<()>>(), config).unwrap();

    let get = http::Request::get("/").body(()).unwrap();
    assert_eq!(service.ready().await.unwrap().call(get).await.unwrap(), (1, 200));
    let post = http::Request::post("/").body(()).unwrap();
    assert_eq!(service.ready().await.unwrap().call(post).await.unwrap(), (2, 200));
    assert_eq!(service.latency().unwrap().samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_tracker() {
    let shared = layer(HedgeConfig::default());
    let script = Script::new(&[(7, Then::Ok), (9, Then::Ok)]);
    let first = shared.layer(script.service::<u32>());
    let clone = first.clone();
    let second = shared.layer(script.service::<u32>());

    first.oneshot(1).await.unwrap();
    second.oneshot(2).await.unwrap();
    assert_eq!(clone.latency().unwrap().samples(), 2);
    assert_eq!(shared.latency().unwrap().samples(), 2);

    assert!(layer(fixed(10)).latency().is_none());
}
