//! The response future of [`Hedge`](super::Hedge).
//!
//! The [contract](super#contract) of hedging is kept here: which attempt
//! wins, when the next hedge is sent, what is returned when none succeeds.
//! The future is a state machine: an unsafe request is sent `Once`; a safe
//! one is `Racing` its primary against hedges until one wins or none can;
//! then it is `Done`. While racing, the next hedge is `Due` at an instant,
//! `Readying` its service clone, or there is `NoMore`.

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

use super::LayerState;
use crate::{
    classify::{Classify, Outcome, Pushback},
    deadline::deadline_after,
    error::{BoxError, ResilienceError},
};

/// Label values of `orch_hedge_wins_total{attempt}`: the primary and up to
/// `HedgeConfig::MAX_HEDGED_ATTEMPTS` hedges.
const ATTEMPT_LABELS: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

pin_project! {
    /// The response future of [`Hedge`](super::Hedge): runs the primary
    /// attempt and the hedged ones, and resolves to the first success or,
    /// when none succeeds, to the last failure.
    ///
    /// Dropping it drops (cancels) every attempt still running.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
    {
        /// An unsafe request, sent once: its result is returned unclassified.
        Once { #[pin] future: S::Future },
        /// A safe request: the primary and its hedges race.
        Racing { race: Race<S, Req, C> },
        /// The result was returned and every attempt dropped.
        Done,
    }
}

/// What an attempt, and so a hedged call, resolves to.
type Answer<S, Req> = Result<<S as Service<Req>>::Response, ResilienceError>;

/// Everything a racing call holds: its attempts, its timer, what comes next.
struct Race<S, Req, C>
where
    S: Service<Req>,
{
    layer: Arc<LayerState>,
    classifier: C,
    /// Cloned to carry each hedge; never called itself.
    service: S,
    /// Cloned for each hedge.
    request: Req,
    delay: Duration,
    started: Instant,
    /// Hedges sent, counting those whose service clone failed to get ready.
    sent: u32,
    next: Next<S>,
    /// Attempts in flight, by attempt number (0 is the primary).
    attempts: Vec<(u32, Pin<Box<S::Future>>)>,
    /// The sleep until the next hedge is due, made on first use so that
    /// building the future needs no runtime, and moved when the time changes.
    timer: Option<Pin<Box<Sleep>>>,
    /// The result of the last attempt that finished without winning.
    last: Option<Answer<S, Req>>,
}

/// What happens next on a racing call, besides the attempts in flight.
enum Next<S> {
    /// The next hedge goes out at `at`; `reason` says why, for its event.
    Due { at: Instant, reason: &'static str },
    /// The next hedge is due and waits for its service clone to be ready.
    Readying { service: S, reason: &'static str },
    /// No further hedge: all were sent, or pushback or a rejection stopped them.
    NoMore,
}

// ===== impl ResponseFuture =====

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    /// The only attempt of an unsafe request.
    pub(crate) fn once(future: S::Future) -> Self {
        Self {
            state: State::Once { future },
        }
    }

    /// A safe request's race: `primary` was sent on the readied service, and
    /// each hedge goes to a fresh clone of `service`.
    pub(crate) fn racing(
        primary: S::Future,
        layer: Arc<LayerState>,
        classifier: C,
        service: S,
        request: Req,
    ) -> Self {
        let started = Instant::now();
        let delay = layer.delay_at(started);
        let race = Race {
            layer,
            classifier,
            service,
            request,
            delay,
            started,
            sent: 0,
            next: Next::after_delay(started, delay),
            attempts: vec![(0, Box::pin(primary))],
            timer: None,
            last: None,
        };
        Self {
            state: State::Racing { race },
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, ResilienceError>,
{
    type Output = Result<S::Response, ResilienceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let result = match state.as_mut().project() {
            StateProj::Once { future } => ready!(future.poll(cx)).map_err(ResilienceError::from_inner),
            StateProj::Racing { race } => ready!(race.poll(cx)),
            StateProj::Done => panic!("hedge ResponseFuture polled after completion"),
        };
        // Drops, and so cancels, every attempt still running.
        state.set(State::Done);
        Poll::Ready(result)
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Once { .. } => f.write_str("ResponseFuture::Once"),
            State::Racing { race } => f
                .debug_struct("ResponseFuture::Racing")
                .field("name", &race.layer.name)
                .field("delay", &race.delay)
                .field("hedges_sent", &race.sent)
                .field("attempts_running", &race.attempts.len())
                .finish(),
            State::Done => f.write_str("ResponseFuture::Done"),
        }
    }
}

// ===== impl Race =====

impl<S, Req, C> Race<S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, ResilienceError>,
{
    /// Ready with the winner's result, or the last failure once nothing can win.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Answer<S, Req>> {
        loop {
            // The clock is read where it is needed: a primary that wins at
            // once under a fixed delay reads none here.
            let (attempt, result) = match self.poll_attempts(cx) {
                Poll::Ready(finished) => finished,
                Poll::Pending => {
                    let now = Instant::now();
                    match self.poll_next_hedge(cx, now) {
                        // Sent: poll it at once.
                        Poll::Ready(Ok(())) => continue,
                        // Its service clone could not get ready: that is the attempt's result.
                        Poll::Ready(Err(error)) => (self.sent, Err(error)),
                        // Attempts in flight or a hedge to come: wait. Else nothing can win.
                        Poll::Pending if !self.attempts.is_empty() => return Poll::Pending,
                        Poll::Pending if !matches!(self.next, Next::NoMore) => return Poll::Pending,
                        Poll::Pending => return Poll::Ready(self.exhausted(now)),
                    }
                }
            };
            match self.classifier.classify(result.as_ref()) {
                Outcome::Success => return Poll::Ready(self.won(attempt, result)),
                Outcome::Retryable | Outcome::Failure => self.failed(attempt, &result, Instant::now()),
                Outcome::Rejected => self.stop(attempt, "rejected"),
            }
            self.last = Some(result);
        }
    }

    /// Polls every attempt in flight and takes out the first that finished.
    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> Poll<(u32, Answer<S, Req>)> {
        for i in 0..self.attempts.len() {
            if let Poll::Ready(result) = self.attempts[i].1.as_mut().poll(cx) {
                let (attempt, _) = self.attempts.swap_remove(i);
                return Poll::Ready((attempt, result.map_err(ResilienceError::from_inner)));
            }
        }
        Poll::Pending
    }

    /// Sends the next hedge once it is due and its service clone is ready.
    /// `Ready(Err)` is the clone's readiness error: that attempt's result.
    fn poll_next_hedge(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<Result<(), ResilienceError>> {
        if let Next::Due { at, reason } = self.next {
            if now < at {
                // Arms the sleep, or moves it, to wake the task at `at`.
                let sleep = self.timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                ready!(sleep.as_mut().poll(cx));
            }
            let service = self.service.clone();
            self.next = Next::Readying { service, reason };
        }
        let Next::Readying { service, reason } = &mut self.next else {
            return Poll::Pending;
        };
        let reason = *reason;
        let sent = ready!(service.poll_ready(cx))
            .map(|()| service.call(self.request.clone()))
            .map_err(ResilienceError::from_inner);
        self.sent += 1;
        let attempt = self.sent;
        self.next = if attempt < self.layer.config.max_hedged_attempts {
            Next::after_delay(now, self.delay)
        } else {
            Next::NoMore
        };
        let (name, elapsed) = (&self.layer.name, now.saturating_duration_since(self.started));
        match sent {
            Ok(future) => {
                self.attempts.push((attempt, Box::pin(future)));
                tracing::debug!(%name, attempt, reason, delay = ?self.delay, ?elapsed, "hedged attempt sent");
                metrics::counter!("orch_hedge_attempts_total", "name" => Arc::clone(name)).increment(1);
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                tracing::debug!(
                    %name, attempt, reason, %error,
                    "hedged attempt failed: its service could not get ready"
                );
                Poll::Ready(Err(error))
            }
        }
    }

    /// Attempt `attempt` failed: the next hedge goes now, when the server's
    /// pushback says, or never.
    fn failed(&mut self, attempt: u32, result: &Answer<S, Req>, now: Instant) {
        let (at, reason) = match self.classifier.pushback(result.as_ref()) {
            Pushback::None => (now, "attempt failed"),
            // A server's number: it may not fit on the clock.
            Pushback::After(wait) => (deadline_after(now, wait), "pushback elapsed"),
            Pushback::Stop => return self.stop(attempt, "pushback"),
        };
        // A hedge already waiting for its service clone goes when that is ready.
        if let Next::Due { .. } = self.next {
            self.next = Next::Due { at, reason };
        }
    }

    /// No further hedge will be sent.
    fn stop(&mut self, attempt: u32, reason: &'static str) {
        if !matches!(self.next, Next::NoMore) {
            let (name, hedges_sent) = (&self.layer.name, self.sent);
            tracing::debug!(%name, attempt, reason, hedges_sent, "no further hedged attempts");
        }
        // Drops a service clone still getting ready: it would never be used.
        self.next = Next::NoMore;
    }

    /// Reports the win of `attempt` and returns its result; the caller drops
    /// every other attempt.
    fn won(&self, attempt: u32, result: Answer<S, Req>) -> Answer<S, Req> {
        // One sample per call that the primary did not lose by failing: its
        // latency when it won, or, when a hedge won while it ran, the time it
        // had run (at least the delay), so that it counts as slow.
        let primary_running = self.attempts.iter().any(|&(attempt, _)| attempt == 0);
        let tracker = (self.layer.tracker.as_ref()).filter(|_| attempt == 0 || primary_running);
        if tracker.is_none() && self.sent == 0 {
            // Nothing to record or report: no clock read.
            return result;
        }
        let now = Instant::now();
        let (name, elapsed) = (&self.layer.name, now.saturating_duration_since(self.started));
        if let Some(tracker) = tracker {
            tracker.record_at(now, elapsed);
        }
        if self.sent > 0 {
            tracing::debug!(%name, attempt, hedges_sent = self.sent, ?elapsed, "hedged call won");
            let label = ATTEMPT_LABELS.get(attempt as usize).copied().unwrap_or("other");
            metrics::counter!("orch_hedge_wins_total", "name" => Arc::clone(name), "attempt" => label)
                .increment(1);
        }
        result
    }

    /// The result of a call on which no attempt succeeded: the last failure.
    fn exhausted(&mut self, now: Instant) -> Answer<S, Req> {
        let (name, elapsed) = (&self.layer.name, now.saturating_duration_since(self.started));
        let attempts = self.sent + 1;
        tracing::debug!(%name, attempts, ?elapsed, "no hedged attempt succeeded; returning the last failure");
        metrics::counter!("orch_hedge_exhausted_total", "name" => Arc::clone(name)).increment(1);
        // Every attempt that finishes without winning stores its result, and
        // the race is exhausted only once every attempt has finished.
        (self.last.take()).unwrap_or_else(|| unreachable!("a hedged call ended without any attempt result"))
    }
}

// ===== impl Next =====

impl<S> Next<S> {
    /// The next hedge, `delay` after `from`. A zero delay sends every hedge
    /// at once (Polly's parallel mode).
    fn after_delay(from: Instant, delay: Duration) -> Self {
        let reason = if delay.is_zero() {
            "parallel"
        } else {
            "delay elapsed"
        };
        Self::Due {
            at: deadline_after(from, delay),
            reason,
        }
    }
}
