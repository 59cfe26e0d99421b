//! Behaviour of the client-side load balancer, on paused tokio time.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::{FutureExt, StreamExt, stream};
use metrics_util::debugging::DebuggingRecorder;
use orch_discovery::{
    Endpoint, EndpointChange, Weight,
    balance::{
        Algorithm, BalanceError, Balancer, BalancerConfig, HttpFailures, ReconnectBackoff, connect_fn,
    },
    health::HealthConfig,
};
use support::{Snapshot, changes, config, count};
use tower::{Service, ServiceExt, service_fn};

// ===== a fleet of scriptable endpoint services =====

/// What an endpoint's `poll_ready` answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Readiness {
    Ready,
    Pending,
    Broken,
}

/// What an endpoint's responses are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// `Ok(id)` after this long.
    Ok(Duration),
    /// `Err` at once.
    Fail,
}

struct Control {
    readiness: Readiness,
    answer: Answer,
    wakers: Vec<Waker>,
    connects: Vec<SocketAddr>,
    calls: usize,
}

/// Shared scripts of every endpoint, by id.
#[derive(Clone, Default)]
struct Fleet(Arc<Mutex<HashMap<String, Control>>>);

impl Fleet {
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Control) -> R) -> R {
        let mut map = self.0.lock().unwrap();
        let control = map.entry(id.to_owned()).or_insert_with(|| Control {
            readiness: Readiness::Ready,
            answer: Answer::Ok(Duration::ZERO),
            wakers: Vec::new(),
            connects: Vec::new(),
            calls: 0,
        });
        f(control)
    }

    fn set_readiness(&self, id: &str, readiness: Readiness) {
        let wakers = self.with(id, |c| {
            c.readiness = readiness;
            std::mem::take(&mut c.wakers)
        });
        wakers.into_iter().for_each(Waker::wake);
    }

    fn set_answer(&self, id: &str, answer: Answer) {
        self.with(id, |c| c.answer = answer);
    }

    fn calls(&self, id: &str) -> usize {
        self.with(id, |c| c.calls)
    }

    fn connects(&self, id: &str) -> Vec<SocketAddr> {
        self.with(id, |c| c.connects.clone())
    }

    /// A connector that builds a [`Node`] per endpoint and records the connect.
    fn connector(&self) -> impl Service<Endpoint, Response = Node, Error = Infallible, Future: Send> + use<> {
        let fleet = self.clone();
        connect_fn(move |endpoint: &Endpoint| {
            let id = endpoint.id().to_string();
            fleet.with(&id, |c| c.connects.push(endpoint.address()));
            Node {
                id,
                fleet: fleet.clone(),
            }
        })
    }
}

/// One endpoint's service: answers with its id.
struct Node {
    id: String,
    fleet: Fleet,
}

type NodeFuture = Pin<Box<dyn Future<Output = Result<String, io::Error>> + Send>>;

impl Service<()> for Node {
    type Response = String;
    type Error = io::Error;
    type Future = NodeFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.fleet.with(&self.id, |c| match c.readiness {
            Readiness::Ready => Poll::Ready(Ok(())),
            Readiness::Pending => {
                c.wakers.push(cx.waker().clone());
                Poll::Pending
            }
            Readiness::Broken => Poll::Ready(Err(io::Error::other("broken"))),
        })
    }

    fn call(&mut self, (): ()) -> NodeFuture {
        let id = self.id.clone();
        let answer = self.fleet.with(&self.id, |c| {
            c.calls += 1;
            c.answer
        });
        match answer {
            Answer::Ok(delay) if delay.is_zero() => Box::pin(std::future::ready(Ok(id))),
            Answer::Ok(delay) => Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(id)
            }),
            Answer::Fail => Box::pin(std::future::ready(Err(io::Error::other("failed")))),
        }
    }
}

// ===== helpers =====

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn endpoint(id: &str, port: u16) -> Endpoint {
    Endpoint::new(id, addr(port))
}

fn insert(id: &str, port: u16) -> EndpointChange {
    EndpointChange::Insert(endpoint(id, port))
}

fn poll_ready<S: Service<()>>(balancer: &mut S) -> Poll<Result<(), S::Error>> {
    balancer.poll_ready(&mut Context::from_waker(Waker::noop()))
}

/// One request: ready, call, await.
async fn send<S>(balancer: &mut S) -> Result<String, BalanceError>
where
    S: Service<(), Response = String, Error = BalanceError>,
{
    support::send(balancer, ()).await
}

/// `n` requests one after another; how many each endpoint answered.
///
/// Unlike `support::tally`, only successes count and errors are skipped:
/// this fleet's failures do not name their endpoint.
async fn tally<S>(balancer: &mut S, n: usize) -> HashMap<String, usize>
where
    S: Service<(), Response = String, Error = BalanceError>,
{
    let mut counts = HashMap::new();
    for _ in 0..n {
        if let Ok(id) = send(balancer).await {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

// ===== weights =====

async fn weighted_shares(algorithm: Algorithm) {
    let fleet = Fleet::default();
    let weights = [1u32, 2, 3, 4];
    let changes = stream::iter(weights.map(|w| {
        let e = endpoint(&format!("w{w}"), 8000 + w as u16).with_weight(Weight::new(w).unwrap());
        EndpointChange::Insert(e)
    }))
    .chain(stream::pending());
    let mut balancer = Balancer::with_config(&config(algorithm), changes, fleet.connector()).unwrap();
    let n = 100_000;
    let counts = tally(&mut balancer, n).await;
    for w in weights {
        let share = count(&counts, &format!("w{w}")) as f64 / n as f64;
        let expected = f64::from(w) / 10.0;
        assert!(
            (share - expected).abs() < 0.01,
            "weight {w}: share {share:.4}, expected {expected} ({counts:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_pending_splits_traffic_by_weight() {
    weighted_shares(Algorithm::pending_requests().into()).await;
}

#[tokio::test(start_paused = true)]
async fn p2c_ewma_splits_traffic_by_weight_when_latencies_are_equal() {
    weighted_shares(Algorithm::peak_ewma().into()).await;
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_settle_in_proportion_to_weight() {
    // Responses that never finish during the test: P2C over in-flight
    // counts per unit of weight keeps them proportional to weight.
    let fleet = Fleet::default();
    for id in ["light", "heavy"] {
        fleet.set_answer(id, Answer::Ok(Duration::from_secs(3600)));
    }
    let changes = stream::iter([
        EndpointChange::Insert(endpoint("light", 1)),
        EndpointChange::Insert(endpoint("heavy", 2).with_weight(Weight::new(3).unwrap())),
    ])
    .chain(stream::pending());
    let config = config(Algorithm::pending_requests());
    let mut balancer = Balancer::with_config(&config, changes, fleet.connector()).unwrap();
    let mut in_flight = Vec::new();
    for _ in 0..400 {
        in_flight.push(balancer.ready().await.unwrap().call(()));
    }
    // Each unfinished future holds its endpoint's in-flight count.
    let heavy = fleet.calls("heavy");
    assert_eq!(heavy + fleet.calls("light"), 400);
    assert!((285..=315).contains(&heavy), "heavy has {heavy} of 400 in flight");

    // Once they complete, the counts are back to zero: the split is by weight again.
    drop(in_flight);
    let before = fleet.calls("heavy");
    tally(&mut balancer, 0).await;
    for _ in 0..4_000 {
        drop(balancer.ready().await.unwrap().call(()));
    }
    let share = (fleet.calls("heavy") - before) as f64 / 4_000.0;
    assert!((share - 0.75).abs() < 0.03, "{share}");
}

// ===== removes =====

#[tokio::test(start_paused = true)]
async fn a_removed_endpoint_is_never_picked_and_its_requests_in_flight_complete() {
    let fleet = Fleet::default();
    fleet.set_answer("b", Answer::Ok(Duration::from_millis(50)));
    let (tx, changes) = changes();
    for (id, port) in [("a", 1), ("b", 2), ("c", 3)] {
        tx.send(insert(id, port)).unwrap();
    }
    let mut balancer =
        Balancer::with_config(&config(Algorithm::pending_requests()), changes, fleet.connector()).unwrap();

    // Start requests until one goes to `b`, and keep it in flight.
    let mut in_flight_to_b = None;
    for _ in 0..100 {
        let mut response = balancer.ready().await.unwrap().call(());
        match (&mut response).now_or_never() {
            Some(_) => {}
            None => {
                in_flight_to_b = Some(response);
                break;
            }
        }
    }
    let in_flight_to_b = in_flight_to_b.expect("b was picked at least once");

    tx.send(EndpointChange::Remove("b".into())).unwrap();
    let counts = tally(&mut balancer, 10_000).await;
    assert_eq!(count(&counts, "b"), 0, "{counts:?}");
    assert_eq!(count(&counts, "a") + count(&counts, "c"), 10_000);
    assert_eq!(balancer.len(), 2);

    assert_eq!(in_flight_to_b.await.unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn the_end_of_discovery_keeps_the_endpoints() {
    let fleet = Fleet::default();
    let changes = stream::iter([insert("a", 1), insert("b", 2)]);
    let mut balancer =
        Balancer::with_config(&config(Algorithm::peak_ewma()), changes, fleet.connector()).unwrap();
    let counts = tally(&mut balancer, 100).await;
    assert_eq!(count(&counts, "a") + count(&counts, "b"), 100);
    assert_eq!(balancer.len(), 2);
}

// ===== readiness, eviction, reconnects =====

#[tokio::test(start_paused = true)]
async fn a_not_ready_endpoint_is_not_picked_until_it_is_ready() {
    let fleet = Fleet::default();
    fleet.set_readiness("slow", Readiness::Pending);
    let (tx, changes) = changes();
    tx.send(insert("slow", 1)).unwrap();
    tx.send(insert("fast", 2)).unwrap();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::pending_requests()), changes, fleet.connector()).unwrap();

    let counts = tally(&mut balancer, 1_000).await;
    assert_eq!(count(&counts, "fast"), 1_000, "{counts:?}");
    assert_eq!((balancer.len(), balancer.ready_len()), (2, 1));

    fleet.set_readiness("slow", Readiness::Ready);
    let counts = tally(&mut balancer, 1_000).await;
    assert!(count(&counts, "slow") > 300, "{counts:?}");
    assert_eq!(
        fleet.connects("slow").len(),
        1,
        "waiting for readiness is not a reconnect"
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_ready_error_evicts_and_the_endpoint_reconnects_after_backoff() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    tx.send(insert("flaky", 1)).unwrap();
    tx.send(insert("steady", 2)).unwrap();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::pending_requests()), changes, fleet.connector()).unwrap();
    let counts = tally(&mut balancer, 100).await;
    assert!(count(&counts, "flaky") > 0);

    fleet.set_readiness("flaky", Readiness::Broken);
    let counts = tally(&mut balancer, 1_000).await;
    assert!(
        count(&counts, "flaky") <= 1,
        "picked at most once before its poll_ready failed: {counts:?}"
    );
    assert_eq!((balancer.len(), balancer.ready_len()), (2, 1));
    assert_eq!(fleet.connects("flaky").len(), 1);

    // Still broken after the first backoff (100 ms): evicted again, and the
    // next wait doubles (200 ms).
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(fleet.connects("flaky").len(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(fleet.connects("flaky").len(), 2);
    assert_eq!(balancer.ready_len(), 1);

    fleet.set_readiness("flaky", Readiness::Ready);
    tokio::time::advance(Duration::from_millis(199)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(fleet.connects("flaky").len(), 2);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(fleet.connects("flaky").len(), 3);
    assert_eq!(balancer.ready_len(), 2);
    let counts = tally(&mut balancer, 1_000).await;
    assert!(count(&counts, "flaky") > 300, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_connect_is_retried_after_backoff_and_the_endpoint_is_not_picked_meanwhile() {
    let fleet = Fleet::default();
    let attempts = Arc::new(Mutex::new(0u32));
    let connector = {
        let (fleet, attempts) = (fleet.clone(), Arc::clone(&attempts));
        service_fn(move |endpoint: Endpoint| {
            let (fleet, attempts) = (fleet.clone(), Arc::clone(&attempts));
            async move {
                if endpoint.id().as_str() == "late" {
                    let mut n = attempts.lock().unwrap();
                    *n += 1;
                    if *n < 3 {
                        return Err(io::Error::other("connection refused"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, io::Error>(Node {
                    id: endpoint.id().to_string(),
                    fleet,
                })
            }
        })
    };
    let (tx, changes) = changes();
    tx.send(insert("late", 1)).unwrap();
    tx.send(insert("early", 2)).unwrap();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::pending_requests()), changes, connector).unwrap();

    let counts = tally(&mut balancer, 100).await;
    assert_eq!(count(&counts, "early"), 100, "{counts:?}");
    assert_eq!(*attempts.lock().unwrap(), 1);

    // Like tower's balancer, background work progresses when the balancer is
    // polled: after 100 ms of backoff the second connect (fails again, now
    // 200 ms), then the third, which succeeds after 5 ms.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(*attempts.lock().unwrap(), 2);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(poll_ready(&mut balancer).is_ready());
    assert_eq!(*attempts.lock().unwrap(), 3);
    assert_eq!(balancer.ready_len(), 1, "connecting is not ready");
    tokio::time::advance(Duration::from_millis(5)).await;
    let counts = tally(&mut balancer, 1_000).await;
    assert!(count(&counts, "late") > 300, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn an_update_with_a_new_address_reconnects_and_a_new_weight_does_not() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    tx.send(insert("a", 1)).unwrap();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::peak_ewma()), changes, fleet.connector()).unwrap();
    assert_eq!(send(&mut balancer).await.unwrap(), "a");

    tx.send(EndpointChange::Update(
        endpoint("a", 1).with_weight(Weight::new(5).unwrap()),
    ))
    .unwrap();
    assert_eq!(send(&mut balancer).await.unwrap(), "a");
    assert_eq!(fleet.connects("a"), vec![addr(1)]);

    tx.send(EndpointChange::Update(endpoint("a", 2))).unwrap();
    assert_eq!(send(&mut balancer).await.unwrap(), "a");
    assert_eq!(fleet.connects("a"), vec![addr(1), addr(2)]);
    assert_eq!(balancer.len(), 1);
}

// ===== no endpoints =====

#[tokio::test(start_paused = true)]
async fn no_endpoints_fails_after_the_failfast_timeout_and_recovers_when_one_arrives() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::peak_ewma()), changes, fleet.connector()).unwrap();

    let started = tokio::time::Instant::now();
    let err = balancer.ready().await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "linkerd's default fail-fast timeout"
    );
    assert!(matches!(err, BalanceError::NoEndpoints { known: 0, .. }), "{err}");

    // While nothing is ready, later calls fail at once.
    assert!(matches!(
        poll_ready(&mut balancer),
        Poll::Ready(Err(BalanceError::NoEndpoints { .. }))
    ));

    tx.send(insert("a", 1)).unwrap();
    assert_eq!(send(&mut balancer).await.unwrap(), "a");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_arrives_before_the_timeout_is_used() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::peak_ewma()), changes, fleet.connector()).unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send(insert("a", 1)).unwrap();
        // Keep the stream open.
        std::future::pending::<()>().await;
    });
    let started = tokio::time::Instant::now();
    assert_eq!(send(&mut balancer).await.unwrap(), "a");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn only_broken_endpoints_is_no_endpoints_too() {
    let fleet = Fleet::default();
    fleet.set_readiness("a", Readiness::Pending);
    let changes = stream::iter([insert("a", 1)]).chain(stream::pending());
    let config = config(Algorithm::peak_ewma()).failfast_timeout(Duration::from_millis(500));
    let mut balancer = Balancer::with_config(&config, changes, fleet.connector()).unwrap();
    let err = balancer.ready().await.unwrap_err();
    assert!(
        matches!(err, BalanceError::NoEndpoints { known: 1, waited } if waited == Duration::from_millis(500))
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_without_poll_ready_calls_nothing() {
    let fleet = Fleet::default();
    let changes = stream::iter([insert("a", 1)]);
    let mut balancer =
        Balancer::with_config(&config(Algorithm::peak_ewma()), changes, fleet.connector()).unwrap();
    let err = balancer.call(()).await.unwrap_err();
    assert!(matches!(err, BalanceError::NotReady));
    balancer.ready().await.unwrap();
    balancer.call(()).await.unwrap();
    assert!(
        matches!(balancer.call(()).await, Err(BalanceError::NotReady)),
        "one ready, one call"
    );
}

// ===== error-aware load =====

async fn fast_failure_share(algorithm: Algorithm) -> f64 {
    let fleet = Fleet::default();
    fleet.set_answer("failing", Answer::Fail);
    for id in ["good-1", "good-2"] {
        fleet.set_answer(id, Answer::Ok(Duration::from_millis(10)));
    }
    let changes = stream::iter([insert("failing", 1), insert("good-1", 2), insert("good-2", 3)])
        .chain(stream::pending());
    // The load model alone: outlier ejection (tests/balance_health.rs) would
    // take the failing endpoint out after five failures whatever its load.
    let config = config(algorithm).health(HealthConfig::default().without_outlier_detection());
    let mut balancer = Balancer::with_config(&config, changes, fleet.connector()).unwrap();
    let n = 2_000;
    let mut failures = 0;
    for _ in 0..n {
        if send(&mut balancer).await.is_err() {
            failures += 1;
        }
    }
    f64::from(failures) / f64::from(n)
}

#[tokio::test(start_paused = true)]
async fn a_fast_failing_endpoint_gets_little_traffic_under_p2c_ewma() {
    // Without the failure penalty it answers fastest and would take most traffic.
    let share = fast_failure_share(Algorithm::peak_ewma().into()).await;
    assert!(share < 0.02, "failing endpoint got {share:.3} of requests");
    let share = fast_failure_share(Algorithm::peak_ewma().failure_penalty(Duration::ZERO).into()).await;
    assert!(
        share > 0.5,
        "without the penalty, the black hole draws traffic: {share:.3}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_failing_endpoint_gets_little_traffic_under_p2c_pending() {
    let share = fast_failure_share(Algorithm::pending_requests().into()).await;
    assert!(share < 0.05, "failing endpoint got {share:.3} of requests");
}

#[tokio::test(start_paused = true)]
async fn http_5xx_and_grpc_unavailable_count_as_failures() {
    for failing in [
        http::Response::builder().status(503).body(()).unwrap(),
        http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap(),
    ] {
        let failing = Arc::new(failing);
        let connect = connect_fn(move |endpoint: &Endpoint| {
            let failing = Arc::clone(&failing);
            let bad = endpoint.id().as_str() == "bad";
            service_fn(move |(): ()| {
                let failing = Arc::clone(&failing);
                async move {
                    if bad {
                        let mut response = http::Response::new(());
                        *response.status_mut() = failing.status();
                        *response.headers_mut() = failing.headers().clone();
                        Ok::<_, Infallible>(response)
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok(http::Response::new(()))
                    }
                }
            })
        });
        let changes = stream::iter([insert("bad", 1), insert("good", 2)]).chain(stream::pending());
        let mut balancer = Balancer::with_config(&config(Algorithm::peak_ewma()), changes, connect)
            .unwrap()
            .classify_with(HttpFailures);
        let mut bad = 0;
        for _ in 0..1_000 {
            let response = balancer.ready().await.unwrap().call(()).await.unwrap();
            if response.status().is_server_error() || response.headers().contains_key("grpc-status") {
                bad += 1;
            }
        }
        assert!(bad < 20, "the failing endpoint answered {bad} of 1000");
    }
}

// ===== the clock =====

/// A user's paused-time test of a service over a default balancer sees
/// the latencies it scripts: the default clock follows tokio's paused
/// time. On the TSC both endpoints would look equally fast (paused sleeps
/// take no real time), and requests in flight would split about evenly.
#[tokio::test(start_paused = true)]
async fn the_default_clock_measures_paused_time() {
    let connect = connect_fn(|e: &Endpoint| {
        let id = e.id().to_string();
        let latency = Duration::from_millis(if id == "slow" { 100 } else { 1 });
        service_fn(move |(): ()| {
            let id = id.clone();
            async move {
                tokio::time::sleep(latency).await;
                Ok::<_, Infallible>(id)
            }
        })
    });
    let changes = stream::iter([insert("fast", 1), insert("slow", 2)]).chain(stream::pending());
    // Only the decay is shortened, so the estimates settle within the test.
    let algorithm = Algorithm::peak_ewma().decay(Duration::from_millis(100));
    let config = BalancerConfig::default().algorithm(algorithm).seed(3);
    let mut balancer = Balancer::with_config(&config, changes, connect).unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    // Waves of ten concurrent requests, so load decides where estimates tie.
    for _ in 0..20 {
        let mut wave = Vec::new();
        for _ in 0..10 {
            wave.push(balancer.ready().await.unwrap().call(()));
        }
        for id in futures_util::future::join_all(wave).await {
            *counts.entry(id.unwrap()).or_default() += 1;
        }
    }
    assert!(count(&counts, "slow") < 30, "{counts:?}");
}

// ===== metrics =====

#[tokio::test(start_paused = true)]
async fn metrics_count_picks_per_endpoint_endpoints_evictions_and_no_endpoints() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let fleet = Fleet::default();
    let (tx, changes) = changes();
    tx.send(insert("a", 1)).unwrap();
    tx.send(insert("b", 2)).unwrap();
    let config = config(Algorithm::pending_requests());
    let mut balancer = Balancer::with_config(&config, changes, fleet.connector()).unwrap();
    let counts = tally(&mut balancer, 100).await;

    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.picks("a"), Some(count(&counts, "a") as u64));
    assert_eq!(snapshot.picks("b"), Some(count(&counts, "b") as u64));
    assert_eq!(snapshot.endpoints(), (Some(2), Some(2)));

    fleet.set_readiness("a", Readiness::Broken);
    tally(&mut balancer, 10).await;
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(
        snapshot.get("orch_balancer_evictions_total", &[("balancer", "api")]),
        Some(1)
    );
    assert_eq!(snapshot.endpoints(), (Some(1), Some(2)));
    assert_eq!(snapshot.picks("b").unwrap() + snapshot.picks("a").unwrap(), 10);

    tx.send(EndpointChange::Remove("a".into())).unwrap();
    tx.send(EndpointChange::Remove("b".into())).unwrap();
    assert!(balancer.ready().await.unwrap_err().is_no_endpoints());
    let snapshot = Snapshot::take(&snapshotter);
    assert_eq!(snapshot.endpoints(), (Some(0), Some(0)));
    assert_eq!(
        snapshot.get("orch_balancer_no_endpoints_total", &[("balancer", "api")]),
        Some(1)
    );
}

// ===== config =====

#[tokio::test]
async fn a_bad_config_builds_no_balancer() {
    let fleet = Fleet::default();
    let config = BalancerConfig::default().reconnect(ReconnectBackoff::default().jitter(2.0));
    let err = Balancer::with_config(&config, stream::empty(), fleet.connector()).unwrap_err();
    assert_eq!(err.field_name(), "balancer.reconnect.jitter");
}
