//! The response future of [`Retry`](super::Retry): the attempts of one call.
//!
//! A state machine, as `tower::retry`'s is: an attempt is awaited
//! (`Waiting`); a retryable result is decided on by
//! `decision::next_attempt`; the next attempt waits
//! out its delay (`Backoff`) and the service's readiness (`Retrying`), then
//! is sent. A request whose body must be buffered first starts in
//! `ReadingBody`. One timer serves every state: the attempt's cutoff while
//! waiting, the delay while backing off, the overall deadline otherwise.

use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use super::{
    decision::{Cutoff, GiveUp, NextAttempt, fits, give_up, next_attempt, report_retry},
    policy::{CallPolicy, Policy},
    replay::{Prepared, Replay},
    timer::CallTimer,
};
use crate::{
    classify::{Classify, Outcome},
    deadline::deadline_after,
    error::{BoxError, NotRetriedReason, ResilienceError, TimeoutKind},
};

pin_project! {
    /// The response future of [`Retry`](super::Retry): makes the attempts of
    /// one call, sleeping between them, until a result is final.
    #[project = Proj]
    pub struct ResponseFuture<Req, S, C, R>
    where
        R: Replay<Req>,
        S: Service<R::Request>,
    {
        #[pin]
        state: State<R::Prepare, S::Future, R::Request>,
        // The call's one timer and deadline (see the module docs), and the
        // result kept while the next attempt waits.
        timer: CallTimer<Result<S::Response, ResilienceError>>,
        policy: CallPolicy<C, R>,
        // The service of later attempts; `None` for a call that cannot be
        // retried, which so clones nothing.
        service: Option<S>,
        // What later attempts are made from; `None` when there are none.
        source: Option<R::Source>,
        attempts: u32,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<Prepare, Call, Request> {
        // Reading the body of a request that must be buffered first.
        ReadingBody { #[pin] prepare: Prepare },
        // Waiting for an attempt's result.
        Waiting { #[pin] call: Call },
        // Sleeping before the next attempt.
        Backoff { next: Request },
        // Waiting for the service to be ready for the next attempt.
        Retrying { next: Request },
        Done,
    }
}

impl<Req, S, C, R> ResponseFuture<Req, S, C, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    /// The future of one call of `inner`, which is ready. A request at hand
    /// goes to it at once, as it would without this layer, and a clone is
    /// kept for later attempts only if there can be any. A body to read
    /// first takes the ready service along and leaves the clone.
    ///
    /// Always inlined: out of line, 26 more instructions a call (165
    /// against 139 without a budget, `benches/instructions.rs`).
    #[inline(always)]
    pub(crate) fn new<P>(
        inner: &mut S,
        policy: &Policy<C, P, R>,
        prepared: Prepared<R::Request, R::Source, R::Prepare>,
    ) -> Self
    where
        S: Clone,
        C: Clone,
        R: Clone,
    {
        let limits = &policy.limits;
        let timer = match limits.attempt_timeout.is_some() || limits.overall_timeout.is_some() {
            true => CallTimer::start(limits, matches!(prepared, Prepared::Ready(..))),
            false => CallTimer::NONE,
        };
        match prepared {
            Prepared::Ready(request, source) => {
                let call = inner.call(request);
                Self {
                    state: State::Waiting { call },
                    timer,
                    policy: policy.for_call(),
                    service: source.is_some().then(|| inner.clone()),
                    source,
                    attempts: 1,
                }
            }
            Prepared::Reading(prepare) => {
                let clone = inner.clone();
                Self {
                    state: State::ReadingBody { prepare },
                    timer,
                    policy: policy.for_call(),
                    service: Some(mem::replace(inner, clone)),
                    source: None,
                    attempts: 0,
                }
            }
        }
    }
}

impl<Req, S, C, R> Future for ResponseFuture<Req, S, C, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError>,
{
    type Output = Result<S::Response, ResilienceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::ReadingBody { prepare } => {
                    if let Some(deadline) = this.timer.deadline() {
                        if !this.timer.is_armed() {
                            this.timer.arm(deadline.at, None);
                        }
                        if this.timer.poll(cx).is_ready() {
                            return this.finish(Err(overall(deadline.after)));
                        }
                    }
                    match ready!(prepare.poll(cx)) {
                        Ok((request, source)) => {
                            *this.source = source;
                            if let Err(error) = this.send(request) {
                                return this.finish(Err(error));
                            }
                        }
                        Err(error) => return this.finish(Err(ResilienceError::from_inner(error))),
                    }
                    continue;
                }
                StateProj::Waiting { call } => match call.poll(cx) {
                    Poll::Ready(result) => result.map_err(ResilienceError::from_inner),
                    Poll::Pending => {
                        // Polled after the call, so a response that is ready
                        // at the cutoff instant wins over the timeout.
                        let Some(cutoff) = this.timer.cutoff() else {
                            return Poll::Pending;
                        };
                        ready!(this.timer.poll(cx));
                        match cutoff {
                            Cutoff::Attempt(after) => Err(ResilienceError::Timeout {
                                kind: TimeoutKind::Attempt,
                                after,
                            }),
                            Cutoff::Overall(after) => {
                                tracing::debug!(
                                    name = %this.policy.settings.label.name(),
                                    attempt = *this.attempts,
                                    timeout = ?after,
                                    "overall retry deadline passed; cancelling the attempt",
                                );
                                return this.finish(Err(overall(after)));
                            }
                        }
                    }
                },
                StateProj::Backoff { .. } => {
                    ready!(this.timer.poll(cx));
                    if let StateOwned::Backoff { next } = this.state.as_mut().project_replace(State::Done) {
                        this.state.set(State::Retrying { next });
                    }
                    if let Some(deadline) = this.timer.deadline() {
                        this.timer.arm(deadline.at, None);
                    }
                    continue;
                }
                StateProj::Retrying { .. } => {
                    if let Some(deadline) = this.timer.deadline()
                        && this.timer.poll(cx).is_ready()
                    {
                        return this.finish(Err(overall(deadline.after)));
                    }
                    let Some(service) = this.service.as_mut() else {
                        return this.finish(Err(no_service()));
                    };
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return this.finish(Err(ResilienceError::from_inner(error)));
                    }
                    let StateOwned::Retrying { next } = this.state.as_mut().project_replace(State::Done)
                    else {
                        return this.finish(Err(polled_after_completion()));
                    };
                    // Waiting for the service may have eaten the time the
                    // attempt needs: then it must not start.
                    if let (Some(deadline), Some(limit)) =
                        (this.timer.deadline(), this.timer.planned_attempt())
                        && !fits(Instant::now(), Duration::ZERO, Some(limit), deadline.at)
                    {
                        let last = this
                            .timer
                            .take_last()
                            .unwrap_or_else(|| Err(overall(deadline.after)));
                        let why = GiveUp::NotRetried(NotRetriedReason::DeadlineTooClose);
                        let output = give_up(this.policy.settings.label, *this.attempts, why, last);
                        return this.finish(output);
                    }
                    // The kept result is for giving up before this attempt starts.
                    this.timer.take_last();
                    if let Err(error) = this.send(next) {
                        return this.finish(Err(error));
                    }
                    continue;
                }
                StateProj::Done => return Poll::Ready(Err(polled_after_completion())),
            };
            if let Some(output) = this.settle(result) {
                return this.finish(output);
            }
        }
    }
}

impl<Req, S, C, R> Proj<'_, Req, S, C, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    C: Classify<S::Response, ResilienceError>,
{
    /// Sends `request` as the next attempt and arms its cutoff.
    fn send(&mut self, request: R::Request) -> Result<(), ResilienceError> {
        let service = self.service.as_mut().ok_or_else(no_service)?;
        let call = service.call(request);
        *self.attempts += 1;
        self.timer.start_attempt();
        self.state.set(State::Waiting { call });
        Ok(())
    }

    /// Decides on an attempt's result: the call's output, or `None` when
    /// the next attempt is scheduled.
    fn settle(
        &mut self,
        result: Result<S::Response, ResilienceError>,
    ) -> Option<Result<S::Response, ResilienceError>> {
        match self.policy.classifier.classify(result.as_ref()) {
            Outcome::Success => {
                if let Some(throttle) = self.policy.throttle() {
                    throttle.record_success();
                }
                Some(result)
            }
            Outcome::Failure | Outcome::Rejected => Some(result),
            Outcome::Retryable => self.retry(result),
        }
    }

    /// After a retryable result: the call's output, or `None` when the next
    /// attempt is scheduled.
    fn retry(
        &mut self,
        result: Result<S::Response, ResilienceError>,
    ) -> Option<Result<S::Response, ResilienceError>> {
        // Drop the finished (or cancelled) attempt before deciding.
        self.state.set(State::Done);
        let (label, attempts) = (self.policy.settings.label, *self.attempts);
        let next = next_attempt(
            self.policy,
            attempts,
            self.source.as_ref(),
            result.as_ref(),
            self.timer,
        );
        let NextAttempt {
            request,
            delay,
            reason,
        } = match next {
            Ok(next) => next,
            Err(why) => return Some(give_up(label, attempts, why, result)),
        };
        report_retry(label, attempts, delay, reason, result.as_ref().err());
        self.timer.keep_last(result);
        if delay.is_zero() {
            if let Some(deadline) = self.timer.deadline() {
                self.timer.arm(deadline.at, None);
            }
            self.state.set(State::Retrying { next: request });
        } else {
            self.timer.arm(deadline_after(Instant::now(), delay), None);
            self.state.set(State::Backoff { next: request });
        }
        None
    }

    fn finish(
        &mut self,
        output: Result<S::Response, ResilienceError>,
    ) -> Poll<Result<S::Response, ResilienceError>> {
        self.state.set(State::Done);
        Poll::Ready(output)
    }
}

fn overall(after: Duration) -> ResilienceError {
    ResilienceError::Timeout {
        kind: TimeoutKind::Overall,
        after,
    }
}

fn polled_after_completion() -> ResilienceError {
    ResilienceError::Inner("retry future polled after completion".into())
}

/// A later attempt of a call that kept no service. Cannot happen: `new`
/// keeps one whenever there is a source to make later attempts from.
fn no_service() -> ResilienceError {
    ResilienceError::Inner("retry kept no service for a call that was not to be retried".into())
}

impl<Req, S, C, R> fmt::Debug for ResponseFuture<Req, S, C, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("name", &self.policy.settings.label.name())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
