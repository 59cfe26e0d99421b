//! The response future: wait out the injected delay, then either run the
//! call or hand over the injected outcome; or, dropped, never finish.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::BoxError;

/// What happens once the delay is over.
pub(super) enum Fate<F, R> {
    Call(F),
    Inject(Result<R, BoxError>),
}

pin_project! {
    /// The response future of [`Faulty`](super::Faulty).
    pub struct FaultFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

pin_project! {
    #[project = Projected]
    enum State<F, R> {
        // Waiting out the injected latency; the call is not polled yet.
        Delayed { sleep: Pin<Box<Sleep>>, fate: Option<Fate<F, R>> },
        // The call runs.
        Calling { #[pin] future: F },
        // The injected outcome, once.
        Injected { outcome: Option<Result<R, BoxError>> },
        // Never answers.
        Dropped,
    }
}

impl<F, R> FaultFuture<F, R> {
    pub(super) fn after(delay: Duration, fate: Fate<F, R>) -> Self {
        let state = if delay.is_zero() {
            match fate {
                Fate::Call(future) => State::Calling { future },
                Fate::Inject(outcome) => State::Injected {
                    outcome: Some(outcome),
                },
            }
        } else {
            State::Delayed {
                sleep: Box::pin(tokio::time::sleep(delay)),
                fate: Some(fate),
            }
        };
        Self { state }
    }

    pub(super) fn dropped() -> Self {
        Self {
            state: State::Dropped,
        }
    }
}

impl<F, R, E> Future for FaultFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                Projected::Delayed { sleep, fate } => {
                    ready!(sleep.as_mut().poll(cx));
                    let next = match fate.take() {
                        Some(Fate::Call(future)) => State::Calling { future },
                        Some(Fate::Inject(outcome)) => State::Injected {
                            outcome: Some(outcome),
                        },
                        None => State::Dropped,
                    };
                    state.set(next);
                }
                Projected::Calling { future } => return future.poll(cx).map_err(Into::into),
                Projected::Injected { outcome } => {
                    return Poll::Ready(
                        outcome
                            .take()
                            .unwrap_or_else(|| Err("a FaultFuture polled after it completed".into())),
                    );
                }
                Projected::Dropped => return Poll::Pending,
            }
        }
    }
}
