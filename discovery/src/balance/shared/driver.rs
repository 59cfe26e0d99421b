//! The task that drives a shared balancer: it takes the calls that could
//! not go at once off the queue, one at a time, waits for the balancer to
//! be ready for each, and hands the caller the endpoint's response future;
//! while idle, it keeps the balancer's background work going.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use super::super::BalanceError;
use super::fast::Shared;
use super::future::BoxResponseFuture;

/// A request on its way to the driver, and where its answer goes.
pub(crate) struct Message<Req, Rsp> {
    pub(crate) request: Req,
    pub(crate) respond: oneshot::Sender<Result<BoxResponseFuture<Rsp>, BalanceError>>,
}

/// What the driver needs of a balancer besides `Service`: a way to keep its
/// background work going between requests.
pub(crate) trait Drive<Req>: Service<Req, Error = BalanceError> {
    /// Applies background progress; `cx`'s task is woken by the next.
    fn poll_background(&mut self, cx: &mut Context<'_>);
}

/// The driver future: runs until every handle is gone and the queue is
/// empty, or until a panic poisoned the balancer's lock.
pub(crate) struct Driver<B, Req, Rsp> {
    pub(super) shared: Arc<Shared<B>>,
    pub(super) requests: mpsc::Receiver<Message<Req, Rsp>>,
    /// Taken off the queue, waiting for the balancer to be ready.
    pub(super) current: Option<Message<Req, Rsp>>,
}

// Nothing in the driver is pinned: the balancer is polled through `&mut`.
impl<B, Req, Rsp> Unpin for Driver<B, Req, Rsp> {}

impl<B, Req, Rsp> Future for Driver<B, Req, Rsp>
where
    B: Drive<Req, Response = Rsp>,
    B::Future: Future<Output = Result<Rsp, BalanceError>> + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if this.current.is_none() {
                match this.requests.poll_recv(cx) {
                    Poll::Ready(Some(message)) => {
                        // The caller dropped its future: never send it.
                        if message.respond.is_closed() {
                            let Some(mut inner) = this.shared.lock_for_driver(cx.waker()) else {
                                return poisoned();
                            };
                            answered(&mut inner.queued);
                        } else {
                            this.current = Some(message);
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        tracing::debug!("every shared balancer handle is gone; driver ends");
                        return Poll::Ready(());
                    }
                    Poll::Pending => {
                        // Idle: keep connects, discovery and health moving,
                        // and be woken when they progress.
                        let Some(mut inner) = this.shared.lock_for_driver(cx.waker()) else {
                            return poisoned();
                        };
                        if let Some(balancer) = inner.balancer.as_mut() {
                            balancer.poll_background(cx);
                        }
                        return Poll::Pending;
                    }
                }
            }
            let Some(mut guard) = this.shared.lock_for_driver(cx.waker()) else {
                return poisoned();
            };
            // Through `&mut Inner`, so the balancer and the count borrow
            // apart.
            let inner = &mut *guard;
            // Only `Drop` takes the balancer out, so it is here.
            let Some(balancer) = inner.balancer.as_mut() else {
                return Poll::Ready(());
            };
            let ready = match balancer.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(ready) => ready,
            };
            let Some(message) = this.current.take() else {
                continue;
            };
            answered(&mut inner.queued);
            let reply = match ready {
                Ok(()) if message.respond.is_closed() => {
                    // The reservation stays for the next request.
                    continue;
                }
                Ok(()) => Ok(Box::pin(balancer.call(message.request)) as BoxResponseFuture<Rsp>),
                // `NoEndpoints`: this call's answer; the balancer stays
                // usable and the next request asks it again.
                Err(error) => Err(error),
            };
            // Unlocked first: the caller may be woken on the other thread
            // and go straight back to the lock for its next call.
            drop(guard);
            // A caller that left meanwhile drops the future, which ends the
            // request's in-flight count.
            let _ = message.respond.send(reply);
        }
    }
}

impl<B, Req, Rsp> Drop for Driver<B, Req, Rsp> {
    /// Drops the balancer (and with it the connections and the discovery
    /// stream) with the driver, as when the driver owned it: handles that
    /// outlive an aborted driver get [`BalanceError::Closed`], never a
    /// balancer that nobody drives.
    fn drop(&mut self) {
        drop(self.shared.close());
    }
}

/// One queued call less: the driver answered it or skipped it.
fn answered(queued: &mut usize) {
    debug_assert!(*queued > 0, "every queued call was counted");
    *queued = queued.saturating_sub(1);
}

/// A panic poisoned the balancer's lock: end, and the handles get `Closed`.
fn poisoned() -> Poll<()> {
    tracing::error!("a panic while the shared balancer was in use; driver ends");
    Poll::Ready(())
}
