//! Limits how many calls run at once, with a short, bounded wait queue.
//!
//! A slow dependency ties up every caller that reaches it; without a limit,
//! one slow backend takes all of a process's connections, tasks and memory,
//! and everything else fails with it. A bulkhead (the watertight compartment
//! of a ship, named so by Nygard's *Release It!*) caps the calls in flight to
//! one dependency so that the damage stays in its compartment.
//!
//! The algorithm is Resilience4j's `SemaphoreBulkhead` (max concurrent calls,
//! max wait duration) with one addition, a bound on how many calls may wait.
//!
//! # Contract
//!
//! When a call is made ([`Service::call`]):
//!
//! 1. If a slot is free, the call takes it and the inner service is called
//!    at once.
//! 2. Otherwise, if waiting is enabled (`max_wait` and `max_queue` both
//!    non-zero) and fewer than `max_queue` calls are waiting, the call joins
//!    the queue and waits up to `max_wait` for a slot. Its place in the queue
//!    and its `max_wait` are taken in `call`, not at the first poll of the
//!    response future. Slots go to waiters in the order they called (tokio's
//!    `Semaphore` is fair), and a newcomer never takes a slot ahead of a
//!    waiter. A waiter that gets no slot in time fails with
//!    [`ResilienceError::BulkheadFull`] whose `waited` is the time it waited.
//! 3. Otherwise the call fails at once with `BulkheadFull`, `waited` zero.
//!
//! The inner service is never called before the call holds a slot (some
//! clients, hyper's among them, start sending in `call`). A queued call
//! therefore takes the inner service that `poll_ready` made ready with it,
//! leaving a clone in its place; this is why the service requires
//! `S: Clone`. The slot is held until the inner response future completes or
//! is dropped, whichever comes first. A rejected call never reaches the inner
//! service.
//!
//! `poll_ready` forwards the inner service's readiness and does not reserve a
//! slot. Reserving in `poll_ready` would hold slots for callers that never
//! call, and would push back on the caller's own queue instead of failing
//! fast, which is what a bulkhead is for.
//!
//! One [`BulkheadLayer`] is one bulkhead: every service it wraps and all their
//! clones share the slots and the queue (the state lives in an `Arc`).
//!
//! # Observability
//!
//! | what | name | labels |
//! |---|---|---|
//! | gauge, slots held | `orch_bulkhead_in_flight` | `name` |
//! | gauge, calls waiting for a slot | `orch_bulkhead_queued` | `name` |
//! | counter, calls rejected | `orch_bulkhead_rejections_total` | `name` |
//!
//! Metric handles are registered when the layer is built. Each rejection
//! emits a `DEBUG` tracing event with the fields `name`, `max_concurrent`,
//! `queued`, `waited` and `reason`. [`BulkheadHandle`] reads the same numbers
//! directly.

mod config;
pub mod future;
mod layer;
mod state;

use std::{
    mem,
    sync::Arc,
    task::{Context, Poll},
};

use tower_service::Service;

pub use self::{config::BulkheadConfig, layer::BulkheadLayer, state::BulkheadHandle};
use self::{
    future::ResponseFuture,
    state::{Admission, Shared},
};
use crate::error::{BoxError, ResilienceError};

/// The name a bulkhead has when none is configured.
const DEFAULT_NAME: &str = "bulkhead";

/// Runs at most `max_concurrent` calls of the inner service at once. Built by
/// [`BulkheadLayer`]; see the [module docs](self) for the contract.
///
/// ```
/// use orch_resilience::{BulkheadConfig, BulkheadLayer, ResilienceError};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = BulkheadConfig::default().max_concurrent(1).build().unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
///
/// let first = svc.ready().await.unwrap().call(1); // holds the only slot
/// let second = svc.ready().await.unwrap().call(2); // no slot, no waiting
/// assert!(matches!(second.await, Err(ResilienceError::BulkheadFull { .. })));
/// assert_eq!(first.await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Bulkhead<S> {
    inner: S,
    shared: Arc<Shared>,
}

// ===== impl Bulkhead =====

impl<S> Bulkhead<S> {
    fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A handle to observe the bulkhead's occupancy.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(Arc::clone(&self.shared))
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the bulkhead service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S::Future, S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.shared.admit() {
            Admission::Run(slot) => ResponseFuture::running(self.inner.call(request), slot),
            Admission::Wait(wait) => {
                // Take the service that `poll_ready` made ready; the clone left
                // behind is made ready by the caller's next `poll_ready`.
                let clone = self.inner.clone();
                let ready = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(wait, ready, request)
            }
            Admission::Rejected(error) => ResponseFuture::rejected(error),
        }
    }
}
