//! The shared balancer: clones from many tasks, outages answered per call
//! and survived, backpressure, cancellation and driver shutdown, on paused
//! tokio time.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod support;

use std::{
    future::{Ready, ready},
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::FutureExt;
use orch_discovery::{
    Endpoint, EndpointChange,
    balance::{Algorithm, BalanceError, Balancer, SharedBalancer, connect_fn},
};
use support::{Fleet, changes, config, endpoint};
use tower::{Service, ServiceExt};

const FAILFAST: Duration = Duration::from_secs(1);

type Client = SharedBalancer<(), String>;

async fn send(client: &mut Client) -> Result<String, BalanceError> {
    client.ready().await?.call(()).await
}

/// Lets the driver run until it waits for something.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn the_handle_is_send_sync_static_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<SharedBalancer<http::Request<String>, http::Response<String>>>();
    fn assert_send<T: Send + 'static>() {}
    assert_send::<orch_discovery::balance::SharedResponseFuture<http::Response<String>>>();
}

#[tokio::test(start_paused = true)]
async fn an_outage_past_the_failfast_timeout_fails_calls_and_the_same_handles_recover() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let config = config(Algorithm::pending_requests()).failfast_timeout(FAILFAST);
    let mut client: Client = Balancer::with_config(&config, changes, fleet.connector())
        .unwrap()
        .into_shared();
    let clones: Vec<Client> = (0..3).map(|_| client.clone()).collect();

    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(send(&mut client).await.unwrap(), "e0");

    // Every endpoint gone: after the fail-fast timeout each call, from any
    // task and any handle, fails on its own with NoEndpoints.
    tx.send(EndpointChange::Remove(endpoint("e0", 1).id().clone()))
        .unwrap();
    let outage: Vec<_> = clones
        .iter()
        .cloned()
        .map(|mut c| tokio::spawn(async move { send(&mut c).await }))
        .collect();
    for task in outage {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.is_no_endpoints(), "{err}");
    }
    for _ in 0..3 {
        assert!(send(&mut client).await.unwrap_err().is_no_endpoints());
    }

    // One endpoint back: the same handle and its clones succeed, from
    // several tasks at once.
    tx.send(EndpointChange::Insert(endpoint("e1", 1))).unwrap();
    assert_eq!(send(&mut client).await.unwrap(), "e1");
    let tasks: Vec<_> = clones
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..10 {
                    answers.push(send(&mut c).await.unwrap());
                }
                answers
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().iter().all(|id| id == "e1"));
    }
    assert_eq!(fleet.calls("e1"), 31);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_ready_again_is_noticed_by_the_driver_and_used() {
    let fleet = Fleet::default();
    fleet.set_ready("e0", false);
    let (tx, changes) = changes();
    let config = config(Algorithm::peak_ewma()).failfast_timeout(FAILFAST);
    let mut client: Client = Balancer::with_config(&config, changes, fleet.connector())
        .unwrap()
        .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();

    let started = tokio::time::Instant::now();
    assert!(send(&mut client).await.unwrap_err().is_no_endpoints());
    assert_eq!(started.elapsed(), FAILFAST);
    // Failing now: at once, without waiting again.
    assert!(send(&mut client).await.unwrap_err().is_no_endpoints());
    assert_eq!(started.elapsed(), FAILFAST);

    // The endpoint's readiness wakes the idle driver, which takes it in.
    fleet.set_ready("e0", true);
    settle().await;
    assert_eq!(send(&mut client).await.unwrap(), "e0");
    assert_eq!(started.elapsed(), FAILFAST, "no request waited");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_holds_callers_in_poll_ready_until_the_driver_answers() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let config = config(Algorithm::pending_requests())
        .failfast_timeout(FAILFAST)
        .queue_capacity(2);
    let client: Client = Balancer::with_config(&config, changes, fleet.connector())
        .unwrap()
        .into_shared();

    // No endpoint: the driver holds one request while it waits, the queue
    // two more; the fourth caller waits for a place.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { send(&mut c).await })
        })
        .collect();
    settle().await;
    let mut fourth = client.clone();
    assert!(fourth.ready().now_or_never().is_none(), "the queue is full");

    // The fail-fast timeout answers the waiting ones and frees the queue.
    for task in waiting {
        assert!(task.await.unwrap().unwrap_err().is_no_endpoints());
    }
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(send(&mut fourth).await.unwrap(), "e0");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_never_sent() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let config = config(Algorithm::pending_requests()).failfast_timeout(Duration::from_secs(60));
    let mut client: Client = Balancer::with_config(&config, changes, fleet.connector())
        .unwrap()
        .into_shared();

    // Queued while nothing is ready, then abandoned by its caller.
    let abandoned = client.ready().await.unwrap().call(());
    let mut second = client.clone();
    let kept = tokio::spawn(async move { send(&mut second).await });
    settle().await;
    drop(abandoned);

    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(kept.await.unwrap().unwrap(), "e0");
    assert_eq!(fleet.calls("e0"), 1, "only the kept call reached the endpoint");
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_driver_and_drops_the_balancer() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let mut client: Client =
        Balancer::with_config(&config(Algorithm::RoundRobin), changes, fleet.connector())
            .unwrap()
            .into_shared();
    let clone = client.clone();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(send(&mut client).await.unwrap(), "e0");

    drop(client);
    settle().await;
    assert!(!tx.is_closed(), "a clone still holds the driver");
    drop(clone);
    // The balancer (and with it the discovery stream) is dropped.
    tokio::time::timeout(Duration::from_secs(5), tx.closed())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_gone_driver_is_the_one_final_error() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let balancer = Balancer::with_config(&config(Algorithm::RoundRobin), changes, fleet.connector()).unwrap();
    let (mut client, driver): (Client, _) = balancer.into_shared_pair();
    let driver = tokio::spawn(driver);
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(send(&mut client).await.unwrap(), "e0");

    driver.abort();
    let _ = driver.await;
    let err = send(&mut client).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
}

/// An endpoint that answers its id, and can break while idle: breaking
/// wakes the waker of its last `poll_ready`, as a watched connection does.
#[derive(Clone)]
struct Breakable {
    id: &'static str,
    broken: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
    calls: Arc<AtomicUsize>,
}

impl Breakable {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            broken: Arc::default(),
            waker: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn break_now(&self) {
        self.broken.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }
}

impl Service<()> for Breakable {
    type Response = String;
    type Error = io::Error;
    type Future = Ready<Result<String, io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::other("broken")));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(self.id.to_owned()))
    }
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_breaks_while_idle_is_evicted_before_its_next_pick() {
    let (a, b) = (Breakable::new("e0"), Breakable::new("e1"));
    let services = [a.clone(), b.clone()];
    let connect = connect_fn(move |endpoint: &Endpoint| {
        services
            .iter()
            .find(|s| s.id == endpoint.id().as_str())
            .unwrap()
            .clone()
    });
    let (tx, changes) = changes();
    let config = config(Algorithm::RoundRobin).failfast_timeout(FAILFAST);
    let mut client: Client = Balancer::with_config(&config, changes, connect)
        .unwrap()
        .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    tx.send(EndpointChange::Insert(endpoint("e1", 1))).unwrap();
    let mut last = String::new();
    for _ in 0..4 {
        last = send(&mut client).await.unwrap();
    }
    assert_eq!(b.calls.load(Ordering::SeqCst), 2, "round robin alternates");

    // The endpoint not called last breaks while nobody calls (the one
    // called last is asked again at the next request anyway): the driver
    // is woken, asks it, and evicts it, so no caller pays for finding out.
    let (broken, healthy) = if last == "e0" { (&b, "e0") } else { (&a, "e1") };
    broken.break_now();
    settle().await;
    for _ in 0..10 {
        assert_eq!(send(&mut client).await.unwrap(), healthy);
    }
    assert_eq!(broken.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_call_without_poll_ready_sends_nothing_and_fails_not_ready() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let mut client: Client =
        Balancer::with_config(&config(Algorithm::RoundRobin), changes, fleet.connector())
            .unwrap()
            .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    assert_eq!(send(&mut client).await.unwrap(), "e0");

    let err = client.call(()).await.unwrap_err();
    assert!(matches!(err, BalanceError::NotReady), "{err}");
    assert_eq!(fleet.calls("e0"), 1);
}

/// Panics in its `call`, as a buggy endpoint might.
#[derive(Clone)]
struct Panics;

impl Service<()> for Panics {
    type Response = String;
    type Error = io::Error;
    type Future = Ready<Result<String, io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        panic!("a bug in the endpoint");
    }
}

/// A panic while the balancer is in use (here in an endpoint's `call`,
/// made in the caller's task) leaves it in no state to trust: the driver
/// ends and every handle answers `Closed`, as when the driver itself
/// panicked.
#[tokio::test(start_paused = true)]
async fn a_panic_in_an_endpoints_call_closes_the_shared_balancer() {
    let (tx, changes) = changes();
    let mut client: Client = Balancer::with_config(
        &config(Algorithm::RoundRobin),
        changes,
        connect_fn(|_: &Endpoint| Panics),
    )
    .unwrap()
    .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();

    // The driver has run: the call is made in the caller's task, which
    // panics with the lock held.
    settle().await;
    let mut c = client.clone();
    let panicked = tokio::spawn(async move { send(&mut c).await }).await;
    assert!(panicked.unwrap_err().is_panic());
    let err = send(&mut client).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_load_is_requests_in_flight_per_ready_endpoint() {
    use orch_core::autoscale::{MetricSource, Reading};
    use orch_discovery::balance::LoadSnapshot;

    // Endpoints that answer only when released.
    let release = Arc::new(tokio::sync::Notify::new());
    let connect = connect_fn({
        let release = Arc::clone(&release);
        move |endpoint: &Endpoint| {
            let (release, id) = (Arc::clone(&release), endpoint.id().to_string());
            tower::service_fn(move |()| {
                let (release, id) = (Arc::clone(&release), id.clone());
                async move {
                    release.notified().await;
                    Ok::<_, io::Error>(id)
                }
            })
        }
    });
    let (tx, changes) = changes();
    let client: Client = Balancer::with_config(&config(Algorithm::pending_requests()), changes, connect)
        .unwrap()
        .into_shared();
    let load = client.load();
    settle().await;
    let reading = load.sample().await;
    assert!(
        matches!(&reading, Reading::Missing { reason } if reason.contains("no ready endpoint")),
        "{reading:?}"
    );

    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    tx.send(EndpointChange::Insert(endpoint("e1", 1))).unwrap();
    settle().await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { send(&mut client).await })
        })
        .collect();
    settle().await;
    assert_eq!(
        load.snapshot(),
        Some(LoadSnapshot {
            ready: 2,
            in_flight: 6
        })
    );
    let Reading::Sample { value, .. } = load.sample().await else {
        panic!("two ready endpoints")
    };
    assert_eq!(value, 3.0);

    release.notify_waiters();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    settle().await;
    assert_eq!(load.snapshot().map(|s| s.in_flight), Some(0));

    // The source does not keep the balancer alive.
    drop(client);
    settle().await;
    assert_eq!(load.snapshot(), None);
    assert!(matches!(load.sample().await, Reading::Missing { .. }));
}
