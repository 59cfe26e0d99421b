//! The response future of [`Retry`](super::Retry): the attempt loop of one call.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use super::{
    extra::{Cut, Extra, cut_for, fits},
    give_up::{GiveUp, give_up},
    policy::{Policy, Reach, Route},
    replay::{Prepared, Replay},
};
use crate::{
    classify::{Classify, Outcome, Pushback},
    deadline::later,
    error::{BoxError, NotRetriedReason, ResilienceError, TimeoutKind},
};

pin_project! {
    /// The response future of [`Retry`](super::Retry): makes the attempts of
    /// one call, sleeping between them, until a result is final.
    #[project = AttemptsProj]
    pub struct ResponseFuture<Req, S, C, P, R>
    where
        R: Replay<Req>,
        S: Service<R::Request>,
    {
        #[pin]
        state: State<R::Prepare, S::Future, R::Request>,
        // The timer and the retry state, made when first needed (see
        // `extra`).
        extra: Extra<S::Response>,
        service: S,
        policy: Reach<C, P, R>,
        source: Option<R::Source>,
        attempts: u32,
        replayable: bool,
    }
}

pin_project! {
    // One state at a time, so the future is as large as the largest of the
    // body reader, the attempt and a request, not their sum.
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<Prepare, Call, Request> {
        // Reading the body of a request that needs buffering.
        Preparing { #[pin] prepare: Prepare },
        // An attempt is in flight; the timer's `cut` says what it means.
        Calling { #[pin] call: Call },
        // Sleeping before the next attempt, whose request is ready.
        BackingOff { next: Request },
        // Waiting for the service to be ready for the next attempt.
        Readying { next: Request },
        Done,
    }
}

impl<Req, S, C, P, R> ResponseFuture<Req, S, C, P, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    #[inline(always)]
    pub(crate) fn new(
        mut service: S,
        policy: &Policy<C, P, R>,
        route: &Route<C, P, R>,
        prepared: Prepared<R::Request, R::Source, R::Prepare>,
        replayable: bool,
    ) -> Self
    where
        C: Clone,
        R: Clone,
    {
        // Only a call with a timeout reads the clock, out of line, so that
        // `call` without one stays small enough to be inlined.
        let extra = Extra::for_call(
            route.timed(policy),
            &policy.plan,
            policy.overall_timeout,
            matches!(prepared, Prepared::Ready(..)),
        );
        let (state, source, attempts) = match prepared {
            // The request is at hand: the first attempt goes out now, from
            // `call`, as it would without this layer.
            Prepared::Ready(request, source) => (
                State::Calling {
                    call: service.call(request),
                },
                source,
                1,
            ),
            Prepared::Reading(prepare) => (State::Preparing { prepare }, None, 0),
        };
        // The future is written once, whole: built field by field and then
        // moved, its narrow stores were read back by the move's wide loads,
        // which stalls store forwarding. The reach is made here, after the
        // attempt is sent, for the same reason: made before, it was spilled
        // across the service's `call` and read back wide.
        Self {
            state,
            extra,
            service,
            policy: Reach::enter(policy, route),
            source,
            attempts,
            replayable,
        }
    }
}

impl<Req, S, C, P, R> Future for ResponseFuture<Req, S, C, P, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError>,
{
    type Output = Result<S::Response, ResilienceError>;

    // Most calls end on their first attempt's result. That case is polled
    // and decided inline, so the caller gets the output in registers rather
    // than through memory; timers, retries and body reading are out of line.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        if let (StateProj::Calling { call }, true) = (this.state.as_mut().project(), this.extra.is_none()) {
            let Poll::Ready(result) = call.poll(cx) else {
                return Poll::Pending;
            };
            if let Some(output) = this.settle(result.map_err(ResilienceError::from_inner)) {
                return Poll::Ready(output);
            }
        }
        self.poll_attempts(cx)
    }
}

impl<Req, S, C, P, R> ResponseFuture<Req, S, C, P, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError>,
{
    /// The attempt loop: every state, every timer.
    #[inline(never)]
    fn poll_attempts(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, ResilienceError>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Preparing { prepare } => {
                    if let Some(deadline) = this.extra.deadline() {
                        if !this.extra.is_armed() {
                            this.extra.arm(deadline.at, None);
                        }
                        if this.extra.poll_timer(cx).is_ready() {
                            return Poll::Ready(this.finish(Err(overall(deadline.after))));
                        }
                    }
                    match ready!(prepare.poll(cx)) {
                        Ok((request, source)) => {
                            *this.source = source;
                            this.start(request);
                        }
                        Err(error) => {
                            return Poll::Ready(this.finish(Err(ResilienceError::from_inner(error))));
                        }
                    }
                }
                StateProj::Calling { call } => {
                    let cut = this.extra.cut();
                    let result = match call.poll(cx) {
                        Poll::Ready(result) => result.map_err(ResilienceError::from_inner),
                        Poll::Pending => {
                            // Polled after the call, so a response that is ready
                            // at the cut-off instant wins over the timeout.
                            let Some(cut) = cut else { return Poll::Pending };
                            ready!(this.extra.poll_timer(cx));
                            match cut {
                                Cut::Overall(after) => {
                                    tracing::debug!(
                                        name = %this.policy.plan().label.name(),
                                        attempt = *this.attempts,
                                        timeout = ?after,
                                        "overall retry deadline passed; cancelling the attempt",
                                    );
                                    return Poll::Ready(this.finish(Err(overall(after))));
                                }
                                Cut::Attempt(after) => Err(ResilienceError::Timeout {
                                    kind: TimeoutKind::Attempt,
                                    after,
                                }),
                            }
                        }
                    };
                    if let Some(output) = this.settle(result) {
                        return Poll::Ready(output);
                    }
                }
                StateProj::BackingOff { .. } => {
                    ready!(this.extra.poll_timer(cx));
                    if let StateOwned::BackingOff { next } = this.state.as_mut().project_replace(State::Done)
                    {
                        this.state.set(State::Readying { next });
                    }
                    if let Some(deadline) = this.extra.deadline() {
                        this.extra.arm(deadline.at, None);
                    }
                }
                StateProj::Readying { .. } => {
                    if let Some(deadline) = this.extra.deadline()
                        && this.extra.poll_timer(cx).is_ready()
                    {
                        return Poll::Ready(this.finish(Err(overall(deadline.after))));
                    }
                    if let Err(error) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(this.finish(Err(ResilienceError::from_inner(error))));
                    }
                    // Waiting for the service may have eaten the time the
                    // attempt needs: then it must not start.
                    if let (Some(deadline), Some(limit)) =
                        (this.extra.deadline(), this.policy.plan().planned_attempt)
                        && !fits(Instant::now(), Duration::ZERO, Some(limit), deadline.at)
                    {
                        let last = this
                            .extra
                            .take_last()
                            .unwrap_or_else(|| Err(overall(deadline.after)));
                        let output = give_up(
                            this.policy.plan().label,
                            *this.attempts,
                            GiveUp::NotRetried(NotRetriedReason::DeadlineTooClose),
                            last,
                        );
                        return Poll::Ready(this.finish(output));
                    }
                    match this.state.as_mut().project_replace(State::Done) {
                        StateOwned::Readying { next } => this.start(next),
                        _ => return Poll::Ready(this.finish(Err(polled_after_completion()))),
                    }
                }
                StateProj::Done => return Poll::Ready(Err(polled_after_completion())),
            }
        }
    }
}

impl<'a, Req, S, C, P, R> AttemptsProj<'a, Req, S, C, P, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
    ResponseFuture<Req, S, C, P, R>: 'a,
{
    /// Sends `request` as the next attempt and arms its cut-off.
    fn start(&mut self, request: R::Request) {
        *self.attempts += 1;
        // The last result is for giving up before this attempt starts.
        drop(self.extra.take_last());
        let call = self.service.call(request);
        match cut_for(
            Instant::now(),
            self.policy.plan().attempt_timeout,
            self.extra.deadline(),
        ) {
            Some((at, cut)) => self.extra.arm(at, Some(cut)),
            // No deadline and no attempt timeout.
            None => self.extra.uncut(),
        }
        self.state.set(State::Calling { call });
    }

    /// Decides an attempt's result: the call's output, or `None` when the
    /// next attempt is scheduled.
    #[inline(always)]
    fn settle(
        &mut self,
        result: Result<S::Response, ResilienceError>,
    ) -> Option<Result<S::Response, ResilienceError>>
    where
        C: Classify<S::Response, ResilienceError>,
    {
        // A final result leaves through `finish`, which drops the attempt.
        let policy: &Reach<C, P, R> = self.policy;
        match policy.classifier().classify(result.as_ref()) {
            Outcome::Success => {
                if let Some(throttle) = policy.throttle() {
                    throttle.record_success();
                }
                Some(self.finish(result))
            }
            Outcome::Failure | Outcome::Rejected => Some(self.finish(result)),
            Outcome::Retryable => self.retry_or_give_up(result).map(|output| self.finish(output)),
        }
    }

    fn finish(
        &mut self,
        output: Result<S::Response, ResilienceError>,
    ) -> Result<S::Response, ResilienceError> {
        self.state.set(State::Done);
        self.extra.clear();
        output
    }

    /// After a retryable result: either returns the call's output or
    /// schedules the next attempt (and returns `None`).
    #[cold]
    fn retry_or_give_up(
        &mut self,
        result: Result<S::Response, ResilienceError>,
    ) -> Option<Result<S::Response, ResilienceError>>
    where
        C: Classify<S::Response, ResilienceError>,
    {
        // Drop the finished (or cancelled) attempt before deciding.
        self.state.set(State::Done);
        let policy: &Reach<C, P, R> = self.policy;
        let plan = policy.plan();
        let label = plan.label;
        let attempts = *self.attempts;
        if let Some(throttle) = policy.throttle() {
            throttle.record_failure();
        }
        let not_retried = |reason| GiveUp::NotRetried(reason);
        if attempts >= plan.max_attempts {
            return Some(give_up(
                label,
                attempts,
                not_retried(NotRetriedReason::MaxAttempts),
                result,
            ));
        }
        let source = match (*self.replayable, self.source.as_ref()) {
            (true, Some(source)) => source,
            _ => {
                return Some(give_up(
                    label,
                    attempts,
                    not_retried(NotRetriedReason::UnsafeRequest),
                    result,
                ));
            }
        };
        let (delay, reason) = match policy.classifier().pushback(result.as_ref()) {
            Pushback::Stop => {
                return Some(give_up(
                    label,
                    attempts,
                    not_retried(NotRetriedReason::Pushback),
                    result,
                ));
            }
            Pushback::After(delay) => {
                // gRFC A6: after a pushback the backoff starts over from its
                // initial delay.
                self.extra.restart_backoff();
                (delay, "pushback")
            }
            Pushback::None => {
                let backoff = self.extra.backoff(|| policy.start_backoff());
                match backoff.next_delay() {
                    Some(delay) => (delay, "backoff"),
                    // A custom schedule that ends is a limit on attempts.
                    None => {
                        return Some(give_up(
                            label,
                            attempts,
                            not_retried(NotRetriedReason::MaxAttempts),
                            result,
                        ));
                    }
                }
            }
        };
        if let Some(deadline) = self.extra.deadline()
            && !fits(Instant::now(), delay, plan.planned_attempt, deadline.at)
        {
            return Some(give_up(
                label,
                attempts,
                not_retried(NotRetriedReason::DeadlineTooClose),
                result,
            ));
        }
        let request = match policy.replay().replay(source) {
            Ok(request) => request,
            Err(reason) => return Some(give_up(label, attempts, not_retried(reason), result)),
        };
        if let Some(throttle) = policy.throttle()
            && !throttle.allows_retry()
        {
            return Some(give_up(label, attempts, GiveUp::Throttled, result));
        }
        if let Some(budget) = policy.budget()
            && !budget.try_withdraw()
        {
            return Some(give_up(label, attempts, GiveUp::Budget, result));
        }

        let name = label.name();
        metrics::counter!("orch_retry_attempts_total", "name" => Arc::clone(&name)).increment(1);
        tracing::debug!(
            name = %name,
            attempt = attempts,
            next_attempt = attempts + 1,
            delay = ?delay,
            reason,
            outcome = "retryable",
            error = result.as_ref().err().map(tracing::field::display),
            "retrying",
        );
        self.extra.keep_last(result);
        if delay.is_zero() {
            self.state.set(State::Readying { next: request });
            if let Some(deadline) = self.extra.deadline() {
                self.extra.arm(deadline.at, None);
            }
        } else {
            self.extra.arm(later(Instant::now(), delay), None);
            self.state.set(State::BackingOff { next: request });
        }
        None
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

impl<Req, S, C, P, R> fmt::Debug for ResponseFuture<Req, S, C, P, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("name", &self.policy.plan().label.name())
            .field("attempts", &self.attempts)
            .finish()
    }
}
