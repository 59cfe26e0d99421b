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
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::{
    backoff::ActiveBackoff,
    policy::{Plan, Policy, Reach, Route},
    replay::{Prepared, Replay},
};
use crate::{
    classify::{Classify, Outcome, Pushback},
    deadline::later,
    error::{BoxError, NotRetriedReason, ResilienceError, TimeoutKind},
    label::Label,
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
        // The timer and the retry state (see `Extra`). Made at `call` when
        // the call has a deadline or an attempt timeout, else when first
        // needed, so a call without timeouts that succeeds at once never
        // touches the timer wheel. Boxed: a `Sleep` is larger than the rest
        // of the future, which every call writes and moves, while only some
        // calls need one (and registering it costs more than the allocation).
        extra: OnDemand<Pin<Box<Extra<S::Response>>>>,
        service: S,
        policy: Reach<C, P, R>,
        source: Option<R::Source>,
        attempts: u32,
        replayable: bool,
    }
}

pin_project! {
    /// What only some calls need: the timer of a call with a timeout, the
    /// state of a retried call. In one box, so that the future of a call
    /// that needs neither is a word smaller and tests one field to find
    /// nothing to free.
    struct Extra<Res> {
        // The one timer of the call: the attempt's cut-off while calling,
        // the backoff while sleeping, the overall deadline while waiting
        // for the service or the body. `None` until first armed.
        #[pin]
        sleep: Option<Sleep>,
        // What the timer means while an attempt runs; `None` when the
        // attempt has no cut-off (the timer was armed for a backoff).
        cut: Option<Cut>,
        deadline: Option<Deadline>,
        // The last result, kept while sleeping in case the next attempt
        // cannot start before the deadline.
        last: Option<Result<Res, ResilienceError>>,
        backoff: Option<ActiveBackoff>,
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

/// A box made when first needed, whose drop is a test inline and the
/// freeing out of line: with the box's own drop glue, the compiler made it
/// (and the future's) an out-of-line call, paid by every call that needed
/// no box.
struct OnDemand<T>(Option<T>);

impl<T> Drop for OnDemand<T> {
    #[inline(always)]
    fn drop(&mut self) {
        // Tested before it is taken: `take` writes `None` back even when
        // there is nothing to take, a store every call would pay.
        if self.0.is_some() {
            free(self.0.take());
        }
    }
}

#[cold]
#[inline(never)]
fn free<T>(value: T) {
    drop(value);
}

/// What the timer means while an attempt runs.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Attempt(Duration),
    Overall(Duration),
}

/// The end of a call with an overall timeout, and that timeout.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    after: Duration,
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
        let extra = match route.timed(policy) {
            true => Extra::for_call(
                &policy.plan,
                policy.overall_timeout,
                matches!(prepared, Prepared::Ready(..)),
            ),
            false => None,
        };
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
            extra: OnDemand(extra),
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
        if let (StateProj::Calling { call }, None) = (this.state.as_mut().project(), &this.extra.0) {
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
                    if let Some(deadline) = deadline(this.extra)
                        && fired(&mut this.extra.0, cx)
                    {
                        return Poll::Ready(this.finish(Err(overall(deadline.after))));
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
                    let cut = this.extra.0.as_ref().and_then(|extra| extra.cut);
                    let result = match call.poll(cx) {
                        Poll::Ready(result) => result.map_err(ResilienceError::from_inner),
                        Poll::Pending => {
                            // Polled after the call, so a response that is ready
                            // at the cut-off instant wins over the timeout.
                            let Some(cut) = cut else { return Poll::Pending };
                            if !fired(&mut this.extra.0, cx) {
                                return Poll::Pending;
                            }
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
                    if let Some(sleep) = sleep(&mut this.extra.0) {
                        ready!(sleep.poll(cx));
                    }
                    if let StateOwned::BackingOff { next } = this.state.as_mut().project_replace(State::Done)
                    {
                        this.state.set(State::Readying { next });
                    }
                    if let Some(deadline) = deadline(this.extra) {
                        arm(&mut this.extra.0, deadline.at, None);
                    }
                }
                StateProj::Readying { .. } => {
                    if let Some(deadline) = deadline(this.extra)
                        && fired(&mut this.extra.0, cx)
                    {
                        return Poll::Ready(this.finish(Err(overall(deadline.after))));
                    }
                    if let Err(error) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(this.finish(Err(ResilienceError::from_inner(error))));
                    }
                    // Waiting for the service may have eaten the time the
                    // attempt needs: then it must not start.
                    if let (Some(deadline), Some(limit)) =
                        (deadline(this.extra), this.policy.plan().planned_attempt)
                        && !fits(Instant::now(), Duration::ZERO, Some(limit), deadline.at)
                    {
                        let last = this
                            .extra
                            .0
                            .as_mut()
                            .and_then(|extra| extra.as_mut().project().last.take())
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
        if let Some(extra) = self.extra.0.as_mut() {
            *extra.as_mut().project().last = None;
        }
        let call = self.service.call(request);
        match cut_for(
            Instant::now(),
            self.policy.plan().attempt_timeout,
            deadline(self.extra),
        ) {
            Some((at, cut)) => arm(&mut self.extra.0, at, Some(cut)),
            // No deadline and no attempt timeout: a timer left from a
            // backoff does not cut the attempt.
            None => {
                if let Some(extra) = self.extra.0.as_mut() {
                    *extra.as_mut().project().cut = None;
                }
            }
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
        // Tested first: most calls have nothing to free, and the drop glue
        // is an out-of-line call.
        if self.extra.0.is_some() {
            free(self.extra.0.take());
        }
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
                if let Some(extra) = self.extra.0.as_mut() {
                    *extra.as_mut().project().backoff = None;
                }
                (delay, "pushback")
            }
            Pushback::None => {
                let backoff = extra(&mut self.extra.0)
                    .project()
                    .backoff
                    .get_or_insert_with(|| policy.start_backoff());
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
        if let Some(deadline) = deadline(self.extra)
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
        *extra(&mut self.extra.0).project().last = Some(result);
        if delay.is_zero() {
            self.state.set(State::Readying { next: request });
            if let Some(deadline) = deadline(self.extra) {
                arm(&mut self.extra.0, deadline.at, None);
            }
        } else {
            arm(&mut self.extra.0, later(Instant::now(), delay), None);
            self.state.set(State::BackingOff { next: request });
        }
        None
    }
}

/// Why the layer stopped retrying a retryable result.
#[derive(Debug, Clone, Copy)]
enum GiveUp {
    NotRetried(NotRetriedReason),
    Budget,
    Throttled,
}

impl GiveUp {
    fn label(self) -> &'static str {
        match self {
            Self::NotRetried(NotRetriedReason::MaxAttempts) => "max_attempts",
            Self::NotRetried(NotRetriedReason::DeadlineTooClose) => "deadline_too_close",
            Self::NotRetried(NotRetriedReason::Pushback) => "pushback",
            Self::NotRetried(NotRetriedReason::UnsafeRequest) => "unsafe_request",
            Self::NotRetried(NotRetriedReason::BodyTooLarge) => "body_too_large",
            Self::Budget => "budget_exhausted",
            Self::Throttled => "throttled",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRetried(reason) => reason.fmt(f),
            Self::Budget => f.write_str("retry budget exhausted"),
            Self::Throttled => f.write_str("retries throttled: tokens at or below half of max_tokens"),
        }
    }
}

/// The call's output when no further attempt is made after a retryable
/// result: a response is returned as it is; an error is wrapped to say why.
fn give_up<Res>(
    label: Label,
    attempts: u32,
    why: GiveUp,
    result: Result<Res, ResilienceError>,
) -> Result<Res, ResilienceError> {
    let name = label.name();
    metrics::counter!(
        "orch_retry_gave_up_total",
        "name" => Arc::clone(&name),
        "reason" => why.label(),
    )
    .increment(1);
    if matches!(why, GiveUp::Budget | GiveUp::Throttled) {
        metrics::counter!("orch_retry_budget_exhausted_total", "name" => Arc::clone(&name)).increment(1);
    }
    match result {
        Ok(response) => {
            tracing::debug!(
                name = %name,
                attempts,
                reason = why.label(),
                why = %why,
                "not retrying; returning the last response although it is classified retryable",
            );
            Ok(response)
        }
        Err(error) => {
            tracing::debug!(
                name = %name,
                attempts,
                reason = why.label(),
                why = %why,
                error = %error,
                "not retrying",
            );
            let last = Box::new(error);
            Err(match why {
                GiveUp::NotRetried(reason) => ResilienceError::NotRetried {
                    reason,
                    attempts,
                    last,
                },
                GiveUp::Budget | GiveUp::Throttled => ResilienceError::BudgetExhausted { attempts, last },
            })
        }
    }
}

/// When the timer of an attempt starting now fires, and what that means:
/// the attempt's own cut-off, or the overall deadline when that comes first.
fn cut_for(
    now: Instant,
    attempt_timeout: Option<Duration>,
    deadline: Option<Deadline>,
) -> Option<(Instant, Cut)> {
    match (attempt_timeout, deadline) {
        (Some(limit), deadline) => match (now.checked_add(limit), deadline) {
            (Some(end), Some(d)) if end <= d.at => Some((end, Cut::Attempt(limit))),
            // Only the first attempt, or one delayed by the service's
            // readiness, can reach here: later attempts start only when
            // they fit.
            (_, Some(d)) => Some((d.at, Cut::Overall(d.after))),
            (Some(end), None) => Some((end, Cut::Attempt(limit))),
            (None, None) => None,
        },
        (None, Some(d)) => Some((d.at, Cut::Overall(d.after))),
        (None, None) => None,
    }
}

/// Whether an attempt started after `delay` from `now` can finish before
/// `deadline`: with an attempt timeout the whole attempt must fit; without
/// one, it must at least start before the deadline.
fn fits(now: Instant, delay: Duration, attempt_timeout: Option<Duration>, deadline: Instant) -> bool {
    let Some(start) = now.checked_add(delay) else {
        return false;
    };
    match attempt_timeout {
        Some(limit) => start.checked_add(limit).is_some_and(|end| end <= deadline),
        None => start < deadline,
    }
}

impl<Res> Extra<Res> {
    /// The timer of a call with a timeout, from the moment it is made: the
    /// overall deadline, and the first attempt's cut-off when that attempt
    /// starts now.
    #[inline(never)]
    fn for_call(
        plan: &Plan,
        overall_timeout: Option<Duration>,
        attempt_starts: bool,
    ) -> Option<Pin<Box<Self>>> {
        let now = Instant::now();
        let deadline = overall_timeout.map(|after| Deadline {
            at: later(now, after),
            after,
        });
        let (at, cut) = match attempt_starts {
            true => cut_for(now, plan.attempt_timeout, deadline).map(|(at, cut)| (at, Some(cut)))?,
            false => (deadline?.at, None),
        };
        Some(Self::pinned(Some(sleep_until(at)), cut, deadline))
    }

    fn pinned(sleep: Option<Sleep>, cut: Option<Cut>, deadline: Option<Deadline>) -> Pin<Box<Self>> {
        Box::pin(Self {
            sleep,
            cut,
            deadline,
            last: None,
            backoff: None,
        })
    }
}

/// The call's extra state, made now if it has none yet.
fn extra<Res>(extra: &mut Option<Pin<Box<Extra<Res>>>>) -> Pin<&mut Extra<Res>> {
    extra
        .get_or_insert_with(|| Extra::pinned(None, None, None))
        .as_mut()
}

/// The call's overall deadline, if it has one (then it has a timer).
fn deadline<Res>(extra: &OnDemand<Pin<Box<Extra<Res>>>>) -> Option<Deadline> {
    extra.0.as_ref().and_then(|extra| extra.deadline)
}

/// The call's timer, if it has been armed.
fn sleep<Res>(extra: &mut Option<Pin<Box<Extra<Res>>>>) -> Option<Pin<&mut Sleep>> {
    extra
        .as_mut()
        .and_then(|extra| extra.as_mut().project().sleep.as_pin_mut())
}

/// Sets the timer to fire at `at`, meaning `cut` if an attempt runs then.
fn arm<Res>(extra: &mut Option<Pin<Box<Extra<Res>>>>, at: Instant, cut: Option<Cut>) {
    let mut extra = self::extra(extra).project();
    match extra.sleep.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => extra.sleep.set(Some(sleep_until(at))),
    }
    *extra.cut = cut;
}

fn fired<Res>(extra: &mut Option<Pin<Box<Extra<Res>>>>, cx: &mut Context<'_>) -> bool {
    sleep(extra).is_some_and(|sleep| sleep.poll(cx).is_ready())
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
