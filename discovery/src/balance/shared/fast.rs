//! The balancer behind the lock that the handles and the driver share, and
//! the fast path of a call: the handle calls the balancer itself, in the
//! caller's task, when no call waits before it and an endpoint is ready.
//!
//! Why: a hop through the driver's queue costs a task wake-up there and
//! another back (on a multi-threaded runtime, often on the other thread),
//! which was two thirds of a loopback HTTP/1.1 call at concurrency 1
//! (`benches/client_stack.rs`: 57 µs through the driver against 19 µs for
//! the bare hyper call). The driver keeps everything that waits: calls
//! that found no ready endpoint, the fail-fast timeout, and the background
//! work (discovery, connects, endpoints ready again). The fast path polls
//! the balancer with the driver's waker, so whatever the balancer would be
//! woken for wakes the driver, never a caller that has moved on.

use std::{
    sync::{Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use tower_service::Service;

use super::super::{BalanceError, Balancer};
use super::future::SharedResponseFuture;
use super::load::{LoadSnapshot, LoadView};
use crate::Endpoint;

/// The state behind the lock: one balancer, whoever polls it.
pub(crate) struct Shared<B> {
    inner: Mutex<Inner<B>>,
}

pub(crate) struct Inner<B> {
    /// `None` once the driver is gone: it drops the balancer on its way
    /// out, as it did when it owned it, so a gone driver stays the one
    /// final error ([`BalanceError::Closed`]) for every handle.
    pub(crate) balancer: Option<B>,
    /// The driver's waker, `None` until the driver first runs: before
    /// that, calls queue for it (`into_shared_pair` promises that calls
    /// wait until the driver runs).
    driver: Option<Waker>,
    /// Calls sent to the driver that it has not answered (or skipped) yet.
    /// While there are any, new calls queue behind them (first come, first
    /// served) instead of taking an endpoint that just became ready.
    pub(crate) queued: usize,
}

/// What [`FastPath::try_call`] does with a call it cannot send at once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfBusy {
    /// Count it as queued, under the same lock as the check, so that a call
    /// that comes next queues behind it: the caller holds a place in the
    /// queue and sends it there at once.
    Queue,
    /// Count nothing: the caller has no place in the queue yet.
    GiveBack,
}

/// The fast path, with the balancer's type erased so that the handle
/// names only `Req` and `Rsp`.
pub(crate) trait FastPath<Req, Rsp>: LoadView {
    /// Whether a call made now would be sent at once: nothing queued waits
    /// and an endpoint is ready.
    fn ready_now(&self) -> bool;

    /// Calls the balancer at once if nothing queued waits and an endpoint
    /// is ready: the endpoint's response future, called in the caller's
    /// task, or the balancer's fail-fast error (the driver would have
    /// answered the same). Otherwise the request back (`Err`), counted as
    /// queued if the caller asked for it with [`IfBusy::Queue`].
    fn try_call(&self, request: Req, if_busy: IfBusy) -> Result<SharedResponseFuture<Rsp>, Req>;
}

// ===== impl Shared =====

impl<B> Shared<B> {
    pub(crate) fn new(balancer: B) -> Self {
        Self {
            inner: Mutex::new(Inner {
                balancer: Some(balancer),
                driver: None,
                queued: 0,
            }),
        }
    }

    /// Locks for the driver and makes `waker` the one the fast path polls
    /// the balancer with. `None` when the lock is poisoned: a panic while
    /// the balancer was in use (in an endpoint's `call`, say) leaves it in
    /// no state to trust, and the driver ends, as it would have had the
    /// panic happened in its own task.
    pub(crate) fn lock_for_driver(&self, waker: &Waker) -> Option<MutexGuard<'_, Inner<B>>> {
        let mut inner = self.inner.lock().ok()?;
        // `will_wake` spares the clone (a reference count) on every poll.
        if !inner.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            inner.driver = Some(waker.clone());
        }
        Some(inner)
    }

    /// Takes the balancer out for the driver to drop, poisoned or not, and
    /// turns the fast path off for good.
    pub(crate) fn close(&self) -> Option<B> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.driver = None;
        inner.balancer.take()
    }
}

impl<D, M, K, H> LoadView for Shared<Balancer<D, M, K, H>>
where
    M: Service<Endpoint>,
    Balancer<D, M, K, H>: Send,
{
    fn load(&self) -> Option<LoadSnapshot> {
        // Poisoned: the driver ends when it sees it; there is no load.
        let inner = self.inner.lock().ok()?;
        let balancer = inner.balancer.as_ref()?;
        Some(LoadSnapshot {
            ready: balancer.ready_len(),
            in_flight: balancer.in_flight(),
        })
    }
}

impl<B, Req, Rsp> FastPath<Req, Rsp> for Shared<B>
where
    B: Service<Req, Response = Rsp, Error = BalanceError> + Send,
    B::Future: Send + 'static,
    Rsp: Send + 'static,
    Self: LoadView,
{
    fn ready_now(&self) -> bool {
        // Failing fast is not "ready": the call goes the queue's way and
        // `try_call` answers it, so that the balancer counts it once.
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        matches!(inner.poll_ready(), Poll::Ready(Ok(_)))
    }

    fn try_call(&self, request: Req, if_busy: IfBusy) -> Result<SharedResponseFuture<Rsp>, Req> {
        // Poisoned: the driver ends when it sees it, and answers `Closed`.
        let Ok(mut inner) = self.inner.lock() else {
            return Err(request);
        };
        // `poll_ready` and `call` under one lock: the reservation a
        // `Ready` makes is this call's, no other handle's.
        match inner.poll_ready() {
            Poll::Ready(Ok(balancer)) => {
                let future = balancer.call(request);
                drop(inner);
                return Ok(SharedResponseFuture::sent(Box::pin(future)));
            }
            // Failing fast: no call waits, so this is the answer the
            // driver would give (and count in the metrics) at once.
            Poll::Ready(Err(error)) => return Ok(SharedResponseFuture::failed(error)),
            // Waiting for an endpoint (the fail-fast timer armed with the
            // driver's waker: the driver takes the call from here), calls
            // queued before this one, or no driver yet.
            Poll::Pending => {}
        }
        if if_busy == IfBusy::Queue {
            inner.queued += 1;
        }
        Err(request)
    }
}

impl<B> Inner<B> {
    /// The balancer's `poll_ready`, polled with the driver's waker, when no
    /// call is queued and the driver runs; `Pending` otherwise.
    fn poll_ready<Req>(&mut self) -> Poll<Result<&mut B, BalanceError>>
    where
        B: Service<Req, Error = BalanceError>,
    {
        let (0, Some(balancer), Some(driver)) = (self.queued, self.balancer.as_mut(), self.driver.as_ref())
        else {
            return Poll::Pending;
        };
        let ready = balancer.poll_ready(&mut Context::from_waker(driver));
        ready.map_ok(|()| balancer)
    }
}
