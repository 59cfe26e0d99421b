//! The response future of a shared balancer: the endpoint's response,
//! polled in the caller's task, after the driver's answer when the call
//! had to wait for it.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::oneshot;

use super::super::BalanceError;

/// An endpoint's response future, boxed so the handle's type names only
/// the request and response types.
pub(crate) type BoxResponseFuture<Rsp> = Pin<Box<dyn Future<Output = Result<Rsp, BalanceError>> + Send>>;

/// The response future of a [`SharedBalancer`](super::SharedBalancer).
///
/// When the call went to the driver, it waits for the driver to send the
/// request to an endpoint (or to answer [`BalanceError::NoEndpoints`]);
/// then, or at once when the call was sent in the caller's task, for the
/// endpoint's response. Dropping it cancels the request: the driver skips
/// a request whose future is gone, and a request already sent is dropped
/// with it.
pub struct SharedResponseFuture<Rsp>(BoxResponseFuture<Rsp>);

impl<Rsp: Send + 'static> SharedResponseFuture<Rsp> {
    pub(crate) fn waiting(reply: oneshot::Receiver<Result<BoxResponseFuture<Rsp>, BalanceError>>) -> Self {
        Self(Box::pin(async move {
            // A dropped sender: the driver dropped the request unanswered.
            let future = reply.await.map_err(|_gone| BalanceError::Closed)??;
            future.await
        }))
    }

    /// Called in the caller's task: only the endpoint's response is left.
    pub(crate) fn sent(future: BoxResponseFuture<Rsp>) -> Self {
        Self(future)
    }

    pub(crate) fn failed(error: BalanceError) -> Self {
        Self(Box::pin(std::future::ready(Err(error))))
    }
}

impl<Rsp> Future for SharedResponseFuture<Rsp> {
    type Output = Result<Rsp, BalanceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.as_mut().poll(cx)
    }
}

impl<Rsp> fmt::Debug for SharedResponseFuture<Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedResponseFuture").finish_non_exhaustive()
    }
}
