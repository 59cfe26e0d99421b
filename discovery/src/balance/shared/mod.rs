//! A balancer that any number of tasks share through cheap `Clone` handles,
//! and that no outage of the backends leaves permanently failed.
//!
//! tower's `Buffer` would share a [`Balancer`] too, but `Buffer` takes a
//! `poll_ready` error as final (tower's contract, tower issue 43): after the
//! first [`BalanceError::NoEndpoints`] every later call fails, even once
//! the replicas are back. A [`SharedBalancer`] is built the same way (a
//! driver task runs the balancer; handles send it requests over a bounded
//! queue) with three differences: "no endpoint within the fail-fast
//! timeout" is the error of each call made meanwhile, never of
//! `poll_ready`; the driver keeps the balancer's background work going
//! while no request comes, so an endpoint that is ready again is noticed at
//! once (tower issue 824); and a call that need not wait skips the queue
//! (the `fast` module): the handle and the driver share the balancer behind
//! a lock, and when no call is queued and an endpoint is ready, the handle
//! calls the balancer itself, in the caller's task, without the two task
//! wake-ups of a hop through the driver.

mod driver;
mod fast;
mod future;
mod load;

use std::{
    fmt,
    future::Future,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;
use tower_service::Service;

use super::{BalanceError, Balancer, BoxError, FailureClassifier, RequestKey};
use crate::{Endpoint, EndpointChange};

pub use future::SharedResponseFuture;
pub use load::{BalancerLoad, LoadSnapshot};

use driver::{Driver, Message};
use fast::{FastCall, FastPath, ReportsLoad, Shared};

/// A cheap `Clone` handle to a [`Balancer`] run by a driver task, for any
/// number of tasks to share; no outage of the endpoints, however long,
/// leaves it failed.
///
/// Made with [`Balancer::into_shared`] (which spawns the driver on the
/// current tokio runtime) or [`Balancer::into_shared_pair`] (which hands
/// the driver to you to spawn). `Req` is the request type and `Rsp` the
/// endpoints' response type, so a client is nameable in a struct field:
/// `SharedBalancer<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>>`.
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::stream;
/// use orch_discovery::{Endpoint, EndpointChange, balance::{Balancer, connect_fn}};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let changes = stream::iter([EndpointChange::Insert(Endpoint::new(
///     "api-1",
///     "127.0.0.1:8081".parse().unwrap(),
/// ))]);
/// let connect = connect_fn(|endpoint: &Endpoint| {
///     let port = endpoint.address().port();
///     service_fn(move |_request: &'static str| async move { Ok::<_, Infallible>(port) })
/// });
/// let client = Balancer::new(changes, connect).into_shared();
/// let tasks: Vec<_> = (0..4)
///     .map(|_| {
///         let mut client = client.clone();
///         tokio::spawn(async move { client.ready().await?.call("hello").await })
///     })
///     .collect();
/// for task in tasks {
///     assert_eq!(task.await.unwrap().unwrap(), 8081);
/// }
/// # }
/// ```
///
/// # The `Service` contract
///
/// - `poll_ready` reserves a place in the driver's queue (at most
///   [`BalancerConfig::queue_capacity`](super::BalancerConfig::queue_capacity)
///   requests wait there); while the queue is full it returns `Pending`,
///   which is the backpressure. It fails only with
///   [`BalanceError::Closed`], when the driver is gone: that is final.
/// - `call` sends the request at once, in the caller's task, when no
///   earlier call waits in the queue and an endpoint is ready (the place
///   reserved in the queue is given back). Otherwise the request joins the
///   queue, and the driver sends the queued requests in order as
///   endpoints become ready: first come, first served. A `call` without a
///   `Ready` from `poll_ready` before it sends nothing and its future fails
///   with [`BalanceError::NotReady`].
/// - Each call's future fails with [`BalanceError::NoEndpoints`] when the
///   balancer found no ready endpoint within its fail-fast timeout (the
///   timeout runs from when the first call found none, as in [`Balancer`],
///   not per request, and calls fail at once after it until an endpoint is
///   ready again). The next call after an endpoint is ready succeeds.
/// - Dropping a call's future cancels it: before the driver reaches it,
///   it is skipped, never sent; after, the endpoint's future is dropped.
/// - When the last handle is dropped (clones included), the driver ends
///   once the queued requests are answered, and drops the balancer with its
///   connections. A driver that is dropped early (its task aborted, or a
///   panic while the balancer was in use) drops it too, and every handle
///   answers [`BalanceError::Closed`] from then on.
///
/// Cost per call over a [`Balancer`] used directly, when an endpoint is
/// ready: a place reserved in the queue and given back, one uncontended
/// lock, and one boxed response future. Calls that wait go through the
/// driver: one message through a tokio channel and one `oneshot` back, as
/// with `Buffer`.
pub struct SharedBalancer<Req, Rsp> {
    requests: PollSender<Message<Req, Rsp>>,
    balancer: Arc<dyn FastPath<Req, Rsp>>,
    /// `poll_ready` reserved a place in the queue and no `call` used it.
    reserved: bool,
}

impl<Req, Rsp> Clone for SharedBalancer<Req, Rsp> {
    /// Another handle to the same driver; a place reserved by the original's
    /// `poll_ready` is not cloned.
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
            balancer: Arc::clone(&self.balancer),
            reserved: false,
        }
    }
}

impl<Req, Rsp> fmt::Debug for SharedBalancer<Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBalancer").finish_non_exhaustive()
    }
}

impl<Req, Rsp> SharedBalancer<Req, Rsp> {
    /// Requests in flight per ready endpoint, as a
    /// [`MetricSource`](orch_core::autoscale::MetricSource) for the
    /// autoscaler's target-tracking policy. It does not keep the balancer
    /// alive.
    pub fn load(&self) -> BalancerLoad {
        let view: Arc<dyn load::LoadView> = self.balancer.clone();
        BalancerLoad::new(&view)
    }
}

impl<Req, Rsp> Service<Req> for SharedBalancer<Req, Rsp>
where
    Req: Send + 'static,
    Rsp: Send + 'static,
{
    type Response = Rsp;
    type Error = BalanceError;
    type Future = SharedResponseFuture<Rsp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BalanceError>> {
        // A place in the queue even for a call that will skip it: whether
        // it can is known only in `call`, under the balancer's lock, and a
        // call that cannot must not wait for a place then.
        let ready = self
            .requests
            .poll_reserve(cx)
            .map_err(|_closed| BalanceError::Closed);
        self.reserved = matches!(ready, Poll::Ready(Ok(())));
        ready
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if !std::mem::take(&mut self.reserved) {
            // No `Ready` from `poll_ready` first: a broken `Service` contract.
            return SharedResponseFuture::failed(BalanceError::NotReady);
        }
        let request = match self.balancer.try_call(request) {
            FastCall::Sent(future) => {
                self.requests.abort_send();
                return SharedResponseFuture::sent(future);
            }
            FastCall::Failed(error) => {
                self.requests.abort_send();
                return SharedResponseFuture::failed(error);
            }
            FastCall::Queue(request) => request,
        };
        let (respond, reply) = oneshot::channel();
        match self.requests.send_item(Message { request, respond }) {
            Ok(()) => SharedResponseFuture::waiting(reply),
            // Closed since `poll_ready`: the driver is gone.
            Err(_) => SharedResponseFuture::failed(BalanceError::Closed),
        }
    }
}

// ===== impl Balancer =====

impl<D, M, K, H> ReportsLoad for Balancer<D, M, K, H>
where
    M: Service<Endpoint>,
{
    fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            ready: self.ready_len(),
            in_flight: self.in_flight(),
        }
    }
}

impl<D, M, K, H> Balancer<D, M, K, H>
where
    M: Service<Endpoint>,
{
    /// This balancer behind a [`SharedBalancer`] handle, its driver spawned
    /// on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does); use
    /// [`into_shared_pair`](Self::into_shared_pair) to spawn the driver
    /// yourself.
    #[allow(
        clippy::type_complexity,
        reason = "the bounds are the Balancer's Service bounds"
    )]
    pub fn into_shared<Req, E>(self) -> SharedBalancer<Req, <M::Response as Service<Req>>::Response>
    where
        Self: Send + 'static,
        D: Stream<Item = EndpointChange> + Unpin,
        M::Error: Into<BoxError>,
        M::Future: Future<Output = Result<M::Response, E>>,
        E: Into<BoxError>,
        M::Response: Service<Req>,
        <M::Response as Service<Req>>::Error: Into<BoxError>,
        <M::Response as Service<Req>>::Response: Send + 'static,
        <M::Response as Service<Req>>::Future: Send + 'static,
        K: FailureClassifier<<M::Response as Service<Req>>::Response, <M::Response as Service<Req>>::Error>
            + Send
            + 'static,
        H: RequestKey<Req>,
        Req: Send + 'static,
    {
        let (shared, driver) = self.into_shared_pair();
        tokio::spawn(driver);
        shared
    }

    /// This balancer behind a [`SharedBalancer`] handle, and the driver
    /// future that runs it, for you to spawn: the handle's calls wait until
    /// it runs. The driver ends when every handle is dropped.
    #[allow(
        clippy::type_complexity,
        reason = "the bounds are the Balancer's Service bounds"
    )]
    pub fn into_shared_pair<Req, E>(
        self,
    ) -> (
        SharedBalancer<Req, <M::Response as Service<Req>>::Response>,
        impl Future<Output = ()> + Send + 'static,
    )
    where
        Self: Send + 'static,
        D: Stream<Item = EndpointChange> + Unpin,
        M::Error: Into<BoxError>,
        M::Future: Future<Output = Result<M::Response, E>>,
        E: Into<BoxError>,
        M::Response: Service<Req>,
        <M::Response as Service<Req>>::Error: Into<BoxError>,
        <M::Response as Service<Req>>::Response: Send + 'static,
        <M::Response as Service<Req>>::Future: Send + 'static,
        K: FailureClassifier<<M::Response as Service<Req>>::Response, <M::Response as Service<Req>>::Error>
            + Send
            + 'static,
        H: RequestKey<Req>,
        Req: Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(self.queue_capacity);
        let balancer = Arc::new(Shared::new(self));
        let shared = SharedBalancer {
            requests: PollSender::new(sender),
            balancer: Arc::clone(&balancer) as Arc<dyn FastPath<_, _>>,
            reserved: false,
        };
        (shared, Driver::new(balancer, receiver))
    }
}
