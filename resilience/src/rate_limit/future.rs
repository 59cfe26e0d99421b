//! The response future of [`RateLimit`](super::RateLimit).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::{BoxError, ResilienceError};

pin_project! {
    /// Sleeps until the reserved permit's time if the call had to wait, then
    /// resolves to the inner response; or resolves to the rejection.
    ///
    /// Dropping it while it waits forfeits the reserved permit.
    pub struct ResponseFuture<F, S, Req> {
        #[pin]
        state: State<F, S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, S, Req> {
        /// A permit is reserved for when `sleep` ends; `service` was made
        /// ready by `poll_ready` and is called then.
        Waiting {
            #[pin]
            sleep: Sleep,
            service: S,
            request: Req,
        },
        /// The inner service was called.
        Called {
            #[pin]
            response: F,
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
    pub(crate) fn called(response: F) -> Self {
        Self {
            state: State::Called { response },
        }
    }

    pub(crate) fn waiting(sleep: Sleep, service: S, request: Req) -> Self {
        Self {
            state: State::Waiting {
                sleep,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Called { response } => {
                    return response.poll(cx).map_err(ResilienceError::from_inner);
                }
                StateProj::Waiting { sleep, .. } => {
                    ready!(sleep.poll(cx));
                    let StateReplace::Waiting {
                        mut service, request, ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was just matched as Waiting");
                    };
                    state.set(State::Called {
                        response: service.call(request),
                    });
                }
                StateProj::Rejected { .. } => {
                    let StateReplace::Rejected { error } = state.as_mut().project_replace(State::Done) else {
                        unreachable!("the state was just matched as Rejected");
                    };
                    return Poll::Ready(Err(error));
                }
                StateProj::Done => panic!("rate limit response future polled after completion"),
            }
        }
    }
}

impl<F, S, Req> fmt::Debug for ResponseFuture<F, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
