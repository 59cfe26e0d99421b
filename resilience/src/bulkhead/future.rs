//! The response future of [`Bulkhead`](super::Bulkhead).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::state::{Slot, SlotWait};
use crate::error::{BoxError, ResilienceError};

pin_project! {
    /// Waits for a slot if the call was queued, then calls the inner service
    /// and holds the slot until its response future completes.
    ///
    /// Dropping it at any point gives back what it holds: its queue place
    /// while waiting, its slot while running.
    pub struct ResponseFuture<F, S, Req> {
        #[pin]
        state: State<F, S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, S, Req> {
        /// Queued: `service` is the inner service that was ready when the call
        /// was made; it is called only once `wait` yields a slot.
        Waiting {
            wait: SlotWait,
            service: S,
            request: Req,
        },
        /// Running with a slot, released as soon as `response` completes.
        Running {
            #[pin]
            response: F,
            slot: Option<Slot>,
        },
        /// Rejected when the call was made.
        Rejected {
            error: ResilienceError,
        },
        /// Finished; polling again is a contract violation.
        Done,
    }
}

impl<F, S, Req> ResponseFuture<F, S, Req> {
    pub(crate) fn running(response: F, slot: Slot) -> Self {
        Self {
            state: State::Running {
                response,
                slot: Some(slot),
            },
        }
    }

    pub(crate) fn waiting(wait: SlotWait, service: S, request: Req) -> Self {
        Self {
            state: State::Waiting {
                wait,
                service,
                request,
            },
        }
    }

    pub(crate) fn rejected(error: ResilienceError) -> Self {
        Self {
            state: State::Rejected { error },
        }
    }
}

impl<F, S, Req, T, E> Future for ResponseFuture<F, S, Req>
where
    S: Service<Req, Future = F, Response = T, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, ResilienceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Running { response, slot } => {
                    let result = ready!(response.poll(cx));
                    // Free the slot now rather than when the future is dropped:
                    // the caller may hold a finished future for a while.
                    drop(slot.take());
                    return Poll::Ready(result.map_err(ResilienceError::from_inner));
                }
                StateProj::Waiting { wait, .. } => {
                    let admitted = ready!(wait.as_mut().poll(cx));
                    let StateReplace::Waiting {
                        mut service, request, ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was just matched as Waiting");
                    };
                    match admitted {
                        Ok(slot) => {
                            let response = service.call(request);
                            state.set(State::Running {
                                response,
                                slot: Some(slot),
                            });
                        }
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
                StateProj::Rejected { .. } => {
                    let StateReplace::Rejected { error } = state.as_mut().project_replace(State::Done) else {
                        unreachable!("the state was just matched as Rejected");
                    };
                    return Poll::Ready(Err(error));
                }
                StateProj::Done => panic!("bulkhead response future polled after completion"),
            }
        }
    }
}

impl<F, S, Req> fmt::Debug for ResponseFuture<F, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
            State::Rejected { .. } => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
