//! Bulkhead: slots, the bounded FIFO queue, max wait, sharing, metrics, config.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics_util::debugging::DebugValue;
use orch_resilience::{Bulkhead, BulkheadConfig, BulkheadLayer, ErrorClass, ResilienceError};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

use support::Metrics;

const MS: Duration = Duration::from_millis(1);

/// Calls reaching the inner service: request id and the time it arrived.
type Log = Arc<Mutex<Vec<(u32, Instant)>>>;

/// A request: an id, and how long the inner service holds it.
#[derive(Debug, Clone, Copy)]
struct Req(u32, Duration);

/// An inner service that logs each call and answers its id after the hold time.
fn holding(log: Log) -> impl Service<Req, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    service_fn(move |Req(id, hold): Req| {
        log.lock().expect("log lock").push((id, Instant::now()));
        async move {
            sleep(hold).await;
            Ok(id)
        }
    })
}

fn bulkhead(
    config: BulkheadConfig,
    log: &Log,
) -> Bulkhead<impl Service<Req, Response = u32, Error = std::io::Error, Future: Send> + Clone + use<>> {
    config.build().expect("valid config").layer(holding(log.clone()))
}

fn ids(log: &Log) -> Vec<u32> {
    log.lock().expect("log lock").iter().map(|(id, _)| *id).collect()
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_max_concurrent_are_rejected_at_once_without_waiting() {
    let log = Log::default();
    let mut svc = bulkhead(BulkheadConfig::default().name("db").max_concurrent(2), &log);
    let handle = svc.handle();

    let a = svc.ready().await.unwrap().call(Req(1, 100 * MS));
    let b = svc.ready().await.unwrap().call(Req(2, 100 * MS));
    assert_eq!((handle.available(), handle.in_flight()), (0, 2));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req(3, 100 * MS))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    match &err {
        ResilienceError::BulkheadFull {
            name,
            max_concurrent,
            waited,
        } => assert_eq!((&**name, *max_concurrent, *waited), ("db", 2, Duration::ZERO)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_local_rejection());
    assert_eq!(ids(&log), [1, 2], "the rejected call never reached the service");

    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(handle.available(), 1, "a finished call frees its slot");
    assert_eq!(b.await.unwrap(), 2);
    assert_eq!(svc.oneshot(Req(4, MS)).await.unwrap(), 4);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_runs_when_a_slot_frees_and_a_full_queue_rejects() {
    let log = Log::default();
    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(1));
    let mut svc = bulkhead(config, &log);
    let handle = svc.handle();
    let start = Instant::now();

    let a = svc.ready().await.unwrap().call(Req(1, 300 * MS));
    let b = svc.ready().await.unwrap().call(Req(2, 300 * MS));
    assert_eq!(handle.queued(), 1);
    assert_eq!(
        ids(&log),
        [1],
        "a queued call does not reach the service before it holds a slot"
    );

    let c = svc.ready().await.unwrap().call(Req(3, 300 * MS)).await;
    assert!(matches!(c, Err(ResilienceError::BulkheadFull { waited, .. }) if waited.is_zero()));

    let (a, b) = tokio::join!(a, b);
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    let log = log.lock().unwrap().clone();
    assert_eq!(log[1], (2, start + 300 * MS), "B starts when A frees the slot");
    assert_eq!(start.elapsed(), 600 * MS);
    assert_eq!((handle.queued(), handle.in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_that_gets_no_slot_within_max_wait_is_rejected_with_the_time_waited() {
    let log = Log::default();
    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(5)
        .max_wait(100 * MS);
    let mut svc = bulkhead(config, &log);
    let handle = svc.handle();

    let a = tokio::spawn(svc.ready().await.unwrap().call(Req(1, Duration::from_secs(1))));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(Req(2, MS)).await.unwrap_err();
    assert_eq!(start.elapsed(), 100 * MS);
    assert!(matches!(err, ResilienceError::BulkheadFull { waited, .. } if waited == 100 * MS));
    assert_eq!(handle.queued(), 0, "the timed-out call left the queue");
    assert_eq!(ids(&log), [1]);
    assert_eq!(a.await.unwrap().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_first_in_first_out_by_call_order() {
    let log = Log::default();
    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(10)
        .max_wait(Duration::from_secs(10));
    let mut svc = bulkhead(config, &log);
    let start = Instant::now();

    let running = svc.ready().await.unwrap().call(Req(0, 100 * MS));
    // Queued calls, made in order but polled in reverse order: the order of
    // the calls decides, not the order of the polls.
    let mut queued = Vec::new();
    for id in 1..=4 {
        queued.push(svc.ready().await.unwrap().call(Req(id, 100 * MS)));
    }
    let mut handles = Vec::new();
    for future in queued.into_iter().rev() {
        handles.push(tokio::spawn(future));
    }
    assert_eq!(running.await.unwrap(), 0);

    // A newcomer arriving as a slot is released does not overtake the queue:
    // it queues behind the four.
    let newcomer = tokio::spawn(svc.ready().await.unwrap().call(Req(5, 100 * MS)));
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    newcomer.await.unwrap().unwrap();

    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let starts: Vec<Duration> = log.iter().map(|(_, at)| *at - start).collect();
    assert_eq!(starts, (0..6).map(|i| i * 100 * MS).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn zero_max_wait_disables_the_queue_whatever_max_queue_says() {
    let log = Log::default();
    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(10)
        .max_wait(Duration::ZERO);
    let mut svc = bulkhead(config, &log);
    let _a = svc.ready().await.unwrap().call(Req(1, Duration::from_secs(1)));
    let err = svc.ready().await.unwrap().call(Req(2, MS)).await.unwrap_err();
    assert!(matches!(err, ResilienceError::BulkheadFull { waited, .. } if waited.is_zero()));
    assert_eq!(svc.handle().queued(), 0);

    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(0)
        .max_wait(Duration::from_secs(1));
    let mut svc = bulkhead(config, &log);
    let _b = svc.ready().await.unwrap().call(Req(3, Duration::from_secs(1)));
    assert!(svc.ready().await.unwrap().call(Req(4, MS)).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_future_gives_back_its_slot_or_its_queue_place() {
    let log = Log::default();
    let config = BulkheadConfig::default()
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(1));
    let mut svc = bulkhead(config, &log);
    let handle = svc.handle();

    let running = svc.ready().await.unwrap().call(Req(1, Duration::from_secs(10)));
    let waiting = svc.ready().await.unwrap().call(Req(2, MS));
    assert_eq!((handle.in_flight(), handle.queued()), (1, 1));
    drop(waiting);
    assert_eq!(handle.queued(), 0);
    drop(running);
    assert_eq!(handle.available(), 1);
    assert_eq!(svc.oneshot(Req(3, MS)).await.unwrap(), 3);
    assert_eq!(ids(&log), [1, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_frees_its_slot_and_its_error_is_converted() {
    let inner = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("refused")) });
    let mut svc = BulkheadConfig::default()
        .max_concurrent(1)
        .build()
        .unwrap()
        .layer(inner);
    for _ in 0..3 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Inner);
        assert!(err.downcast_inner_ref::<std::io::Error>().is_some());
    }
    assert_eq!(svc.handle().available(), 1);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_slots() {
    let log = Log::default();
    let layer = BulkheadConfig::default().max_concurrent(2).build().unwrap();
    let mut first = layer.layer(holding(log.clone()));
    let mut clone = first.clone();
    let mut other = layer.layer(holding(log.clone()));

    let a = first.ready().await.unwrap().call(Req(1, 100 * MS));
    let b = clone.ready().await.unwrap().call(Req(2, 100 * MS));
    let c = other.ready().await.unwrap().call(Req(3, 100 * MS)).await;
    assert!(matches!(c, Err(ResilienceError::BulkheadFull { .. })));
    assert_eq!(layer.handle().in_flight(), 2);
    let (a, b) = tokio::join!(a, b);
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    assert_eq!(ids(&log), [1, 2]);
}

/// Reads the bulkhead metrics of one name. `DebuggingRecorder` snapshots
/// reset every value to zero, so values are summed across snapshots (gauges
/// here only move by increments and decrements).
struct Totals<'a> {
    metrics: &'a Metrics,
    name: &'static str,
    totals: HashMap<String, f64>,
}

impl Totals<'_> {
    fn read(&mut self) -> &HashMap<String, f64> {
        for sample in self.metrics.snapshot().samples() {
            if !sample.has(&[("name", self.name)]) {
                continue;
            }
            let delta = match &sample.value {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(v) => v.0,
                DebugValue::Histogram(_) => continue,
            };
            *self.totals.entry(sample.name.clone()).or_default() += delta;
        }
        &self.totals
    }
}

#[tokio::test(start_paused = true)]
async fn occupancy_and_rejections_are_reported_as_metrics() {
    let metrics = Metrics::default();
    let mut totals = Totals {
        metrics: &metrics,
        name: "search",
        totals: HashMap::new(),
    };
    let _guard = metrics.install();

    let log = Log::default();
    let config = BulkheadConfig::default()
        .name("search")
        .max_concurrent(2)
        .max_queue(1)
        .max_wait(Duration::from_secs(1));
    let mut svc = bulkhead(config, &log);

    let a = svc.ready().await.unwrap().call(Req(1, 100 * MS));
    let b = svc.ready().await.unwrap().call(Req(2, 100 * MS));
    let c = svc.ready().await.unwrap().call(Req(3, 100 * MS));
    let d = svc.ready().await.unwrap().call(Req(4, 100 * MS)).await;
    assert!(d.is_err());
    let loaded = totals.read();
    assert_eq!(loaded["orch_bulkhead_in_flight"], 2.0);
    assert_eq!(loaded["orch_bulkhead_queued"], 1.0);
    assert_eq!(loaded["orch_bulkhead_rejections_total"], 1.0);

    let (a, b, c) = tokio::join!(a, b, c);
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    let idle = totals.read();
    assert_eq!(idle["orch_bulkhead_in_flight"], 0.0);
    assert_eq!(idle["orch_bulkhead_queued"], 0.0);
    assert_eq!(idle["orch_bulkhead_rejections_total"], 1.0);
}

#[test]
fn config_rejects_zero_max_concurrent_naming_the_field() {
    let err = BulkheadConfig::default().max_concurrent(0).build().unwrap_err();
    assert_eq!(err.field_name(), "bulkhead.max_concurrent");
    let err = BulkheadLayer::new(BulkheadConfig::default().max_concurrent(usize::MAX)).unwrap_err();
    assert_eq!(err.field_name(), "bulkhead.max_concurrent");
    assert!(BulkheadConfig::default().max_queue(0).validate().is_ok());
    assert!(
        BulkheadConfig::default()
            .max_queue(8)
            .max_wait(Duration::ZERO)
            .validate()
            .is_ok()
    );
}

#[test]
fn config_round_trips_through_json_with_human_durations() {
    let config: BulkheadConfig = serde_json::from_str(
        r#"{ "name": "db", "max_concurrent": 8, "max_queue": 16, "max_wait": "250ms" }"#,
    )
    .unwrap();
    assert_eq!(
        config,
        BulkheadConfig::default()
            .name("db")
            .max_concurrent(8)
            .max_queue(16)
            .max_wait(250 * MS)
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["max_wait"], "250ms");
    assert_eq!(serde_json::from_value::<BulkheadConfig>(json).unwrap(), config);

    let defaults: BulkheadConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, BulkheadConfig::default());
    assert_eq!(
        (
            defaults.name.as_str(),
            defaults.max_concurrent,
            defaults.max_queue,
            defaults.max_wait
        ),
        ("bulkhead", 25, 25, Duration::ZERO)
    );
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{ "max_calls": 3 }"#).is_err());
}
