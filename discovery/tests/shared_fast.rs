//! The shared balancer's fast path: a call with a ready endpoint goes in
//! the caller's task, calls that wait for an endpoint keep their order,
//! and a call whose endpoint left after `poll_ready` still gets its turn,
//! on paused tokio time.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod support;

use std::{
    future::{Future, Ready, ready},
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
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

/// A call with a ready endpoint is sent in the caller's task: once the
/// driver has run (and the balancer knows whom to wake), calls do not
/// wait for it.
#[tokio::test(start_paused = true)]
async fn a_call_with_a_ready_endpoint_does_not_wait_for_the_driver() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let balancer = Balancer::with_config(&config(Algorithm::RoundRobin), changes, fleet.connector()).unwrap();
    let (mut client, driver): (Client, _) = balancer.into_shared_pair();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    // Before the driver runs, a call waits for it.
    let mut first = client.ready().await.unwrap().call(());
    assert!(first.poll_unpin(&mut cx).is_pending());
    let mut driver = Box::pin(driver);
    assert!(driver.as_mut().poll(&mut cx).is_pending());
    assert_eq!(first.await.unwrap(), "e0");

    // The driver is not polled again: calls go through all the same.
    for _ in 0..3 {
        let answer = send(&mut client).now_or_never().expect("sent in this task");
        assert_eq!(answer.unwrap(), "e0");
    }
    assert_eq!(fleet.calls("e0"), 4);
}

/// An endpoint that is ready when its gate is open, and logs the requests
/// it gets, in order.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
    log: Arc<Mutex<Vec<u32>>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    fn log(&self) -> Vec<u32> {
        self.log.lock().unwrap().clone()
    }
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = io::Error;
    type Future = Ready<Result<u32, io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        if self.open.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn call(&mut self, request: u32) -> Self::Future {
        self.log.lock().unwrap().push(request);
        ready(Ok(request))
    }
}

/// Calls that waited for an endpoint go first: a call made once the
/// endpoint is ready, before the driver has sent the waiting ones, queues
/// behind them instead of overtaking them.
#[tokio::test(start_paused = true)]
async fn a_call_queues_behind_the_calls_that_wait_for_an_endpoint() {
    let gate = Gate::default();
    let connect = connect_fn({
        let gate = gate.clone();
        move |_: &Endpoint| gate.clone()
    });
    let (tx, changes) = changes();
    let config = config(Algorithm::RoundRobin).failfast_timeout(Duration::from_secs(60));
    let mut client: SharedBalancer<u32, u32> = Balancer::with_config(&config, changes, connect)
        .unwrap()
        .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();

    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move { c.ready().await?.call(i).await })
        })
        .collect();
    settle().await;

    // Ready now, and the driver woken but not yet run: the next call joins
    // the queue, unsent.
    gate.open();
    let mut third = client.ready().await.unwrap().call(2);
    assert!(
        third
            .poll_unpin(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    assert!(gate.log().is_empty(), "nothing was sent in this task");

    for (i, task) in waiting.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(third.await.unwrap(), 2);
    assert_eq!(gate.log(), [0, 1, 2], "in the order of the calls");

    // The queue is empty again: calls go at once.
    let fourth = client.ready().await.unwrap().call(3).now_or_never();
    assert_eq!(fourth.expect("sent in this task").unwrap(), 3);
}

/// A `Ready` that found an endpoint ready reserved no place in the queue:
/// should the endpoint be gone by `call`, the call waits in the queue all
/// the same, and is sent once an endpoint is ready again.
#[tokio::test(start_paused = true)]
async fn a_call_whose_endpoint_left_after_poll_ready_queues_and_is_sent_later() {
    let gate = Gate::default();
    gate.open();
    let connect = connect_fn({
        let gate = gate.clone();
        move |_: &Endpoint| gate.clone()
    });
    let (tx, changes) = changes();
    let config = config(Algorithm::RoundRobin).failfast_timeout(Duration::from_secs(60));
    let mut client: SharedBalancer<u32, u32> = Balancer::with_config(&config, changes, connect)
        .unwrap()
        .into_shared();
    tx.send(EndpointChange::Insert(endpoint("e0", 1))).unwrap();
    settle().await;
    assert_eq!(client.ready().await.unwrap().call(0).await.unwrap(), 0);

    // Ready with the endpoint ready; another handle's call takes the
    // balancer's turn, and the endpoint stops being ready before this
    // call (the balancer asks it again on the next pick).
    let mut late = client.clone();
    late.ready().await.unwrap();
    assert_eq!(client.ready().await.unwrap().call(1).await.unwrap(), 1);
    gate.close();
    let mut call = late.call(2);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(call.poll_unpin(&mut cx).is_pending());
    settle().await;
    assert!(call.poll_unpin(&mut cx).is_pending());
    assert_eq!(gate.log(), [0, 1], "not sent while no endpoint is ready");

    gate.open();
    assert_eq!(call.await.unwrap(), 2);
    assert_eq!(gate.log(), [0, 1, 2]);
}
