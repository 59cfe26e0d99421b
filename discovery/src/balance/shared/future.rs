//! The response future of a shared balancer: the endpoint's response,
//! polled in the caller's task, after the driver's answer when the call
//! had to wait for it.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
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
pub struct SharedResponseFuture<Rsp> {
    state: State<Rsp>,
}

enum State<Rsp> {
    Waiting(oneshot::Receiver<Result<BoxResponseFuture<Rsp>, BalanceError>>),
    Sent(BoxResponseFuture<Rsp>),
    Failed(Option<BalanceError>),
}

impl<Rsp> SharedResponseFuture<Rsp> {
    pub(crate) fn waiting(reply: oneshot::Receiver<Result<BoxResponseFuture<Rsp>, BalanceError>>) -> Self {
        Self {
            state: State::Waiting(reply),
        }
    }

    /// Called in the caller's task: only the endpoint's response is left.
    pub(crate) fn sent(future: BoxResponseFuture<Rsp>) -> Self {
        Self {
            state: State::Sent(future),
        }
    }

    pub(crate) fn failed(error: BalanceError) -> Self {
        Self {
            state: State::Failed(Some(error)),
        }
    }
}

impl<Rsp> Future for SharedResponseFuture<Rsp> {
    type Output = Result<Rsp, BalanceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every state is `Unpin` (a oneshot receiver, a box, an error).
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Waiting(reply) => match ready!(Pin::new(reply).poll(cx)) {
                    Ok(Ok(future)) => this.state = State::Sent(future),
                    Ok(Err(error)) => return Poll::Ready(Err(error)),
                    // The driver dropped the request unanswered: it is gone.
                    Err(_) => return Poll::Ready(Err(BalanceError::Closed)),
                },
                State::Sent(future) => return future.as_mut().poll(cx),
                State::Failed(error) => {
                    return Poll::Ready(Err(error.take().unwrap_or(BalanceError::NotReady)));
                }
            }
        }
    }
}

impl<Rsp> fmt::Debug for SharedResponseFuture<Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting(_) => "waiting for the driver",
            State::Sent(_) => "sent",
            State::Failed(_) => "failed",
        };
        f.debug_struct("SharedResponseFuture")
            .field("state", &state)
            .finish()
    }
}
