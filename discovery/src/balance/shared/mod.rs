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

pub(crate) use driver::Drive;
use driver::{Driver, Message};
use fast::{FastPath, IfBusy, Shared};

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
/// - `poll_ready` is `Ready` at once when no call waits in the driver's
///   queue and an endpoint is ready: the call will go in the caller's
///   task. Otherwise it reserves a place in the queue (at most
///   [`BalancerConfig::queue_capacity`](super::BalancerConfig::queue_capacity)
///   requests wait there); while the queue is full it returns `Pending`,
///   which is the backpressure. It fails only with
///   [`BalanceError::Closed`], when the driver is gone: that is final.
/// - `call` sends the request at once, in the caller's task, when no
///   earlier call waits in the queue and an endpoint is ready (a place
///   reserved in the queue is given back). Otherwise the request joins the
///   queue, and the driver sends the queued requests in order as
///   endpoints become ready: first come, first served. Should the ready
///   endpoints be gone between a `Ready` that reserved no place and the
///   `call`, the call's future waits for a place in the queue itself. A
///   `call` without a `Ready` from `poll_ready` before it sends nothing
///   and its future fails with [`BalanceError::NotReady`].
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
/// ready: the lock taken twice uncontended (once in `poll_ready`, once in
/// `call`) and one boxed response future; cloning a handle is two
/// reference counts. Calls that wait go through the driver: a place
/// reserved in the queue, one message through a tokio channel and one
/// `oneshot` back, as with `Buffer`.
pub struct SharedBalancer<Req, Rsp> {
    balancer: Arc<dyn FastPath<Req, Rsp>>,
    /// The driver's queue; the driver ends when every sender is gone.
    requests: mpsc::Sender<Message<Req, Rsp>>,
    /// Made on the first call that must wait for a place in the queue, and
    /// kept: a handle whose calls all go at once never needs it.
    queue: Option<PollSender<Message<Req, Rsp>>>,
    /// What the last `poll_ready` granted, until `call` uses it: `None`
    /// before a `Ready`; [`IfBusy::GiveBack`] when the call goes at once
    /// (nothing queued and an endpoint ready), [`IfBusy::Queue`] when a
    /// place in the queue is reserved (in `queue`).
    ready: Option<IfBusy>,
}

impl<Req, Rsp> Clone for SharedBalancer<Req, Rsp> {
    /// Another handle to the same driver; what the original's
    /// `poll_ready` granted (a place in the queue) is not cloned.
    fn clone(&self) -> Self {
        Self {
            balancer: Arc::clone(&self.balancer),
            requests: self.requests.clone(),
            queue: None,
            ready: None,
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
        BalancerLoad {
            balancer: Arc::downgrade(&view),
        }
    }
}

impl<Req, Rsp> SharedBalancer<Req, Rsp>
where
    Req: Send + 'static,
    Rsp: Send + 'static,
{
    /// Sends `request` to the driver through the place reserved in `queue`.
    fn queue(&mut self, request: Req) -> SharedResponseFuture<Rsp> {
        let Some(queue) = self.queue.as_mut() else {
            return SharedResponseFuture::failed(BalanceError::NotReady);
        };
        let (respond, reply) = oneshot::channel();
        match queue.send_item(Message { request, respond }) {
            Ok(()) => SharedResponseFuture::waiting(reply),
            // Closed since `poll_ready`: the driver is gone.
            Err(_) => SharedResponseFuture::failed(BalanceError::Closed),
        }
    }

    /// Gives back the place reserved (or being waited for) in the queue.
    fn abort_reserved(&mut self) {
        if let Some(queue) = &mut self.queue {
            queue.abort_send();
        }
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
        if self.ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.balancer.ready_now() {
            // A place being waited for is not needed any more.
            self.abort_reserved();
            self.ready = Some(IfBusy::GiveBack);
            return Poll::Ready(Ok(()));
        }
        // A place in the queue even for a call that may yet go at once:
        // whether it can is known only in `call`, under the balancer's
        // lock, and a call that cannot must not wait for a place then.
        let requests = &self.requests;
        let queue = self
            .queue
            .get_or_insert_with(|| PollSender::new(requests.clone()));
        let ready = queue.poll_reserve(cx).map_err(|_closed| BalanceError::Closed);
        if let Poll::Ready(Ok(())) = ready {
            self.ready = Some(IfBusy::Queue);
        }
        ready
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let Some(if_busy) = self.ready.take() else {
            // No `Ready` from `poll_ready` first: a broken `Service` contract.
            return SharedResponseFuture::failed(BalanceError::NotReady);
        };
        let result = match self.balancer.try_call(request, if_busy) {
            Ok(future) => future,
            Err(request) if if_busy == IfBusy::Queue => return self.queue(request),
            Err(request) => {
                let queued = queue_later(Arc::clone(&self.balancer), self.requests.clone(), request);
                return SharedResponseFuture::sent(Box::pin(queued));
            }
        };
        // Sent or answered at once: the place reserved in the queue (if
        // any) is not needed.
        self.abort_reserved();
        result
    }
}

/// A call whose `Ready` reserved no place in the queue and found no ready
/// endpoint in `call` after all (they left in between): what `poll_ready`
/// and `call` would have done, in the call's future. It waits for a place
/// in the queue, tries the fast path again, and otherwise queues: the
/// count and the send with no `await` between them, so a call dropped
/// while it waits leaves nothing counted.
async fn queue_later<Req, Rsp: Send + 'static>(
    balancer: Arc<dyn FastPath<Req, Rsp>>,
    requests: mpsc::Sender<Message<Req, Rsp>>,
    request: Req,
) -> Result<Rsp, BalanceError> {
    let place = requests
        .reserve_owned()
        .await
        .map_err(|_closed| BalanceError::Closed)?;
    let request = match balancer.try_call(request, IfBusy::Queue) {
        Ok(future) => return future.await,
        Err(request) => request,
    };
    let (respond, reply) = oneshot::channel();
    place.send(Message { request, respond });
    SharedResponseFuture::waiting(reply).await
}

// ===== impl Balancer =====

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
            balancer: Arc::clone(&balancer) as Arc<dyn FastPath<_, _>>,
            requests: sender,
            queue: None,
            ready: None,
        };
        let driver = Driver {
            shared: balancer,
            requests: receiver,
            current: None,
        };
        (shared, driver)
    }
}
