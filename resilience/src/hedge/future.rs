//! The response future of [`Hedge`](super::Hedge).

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

use super::Shared;
use crate::{
    classify::{Classify, Outcome, Pushback},
    deadline::later,
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
        primary: Slot<S::Future>,
        #[pin]
        timer: Timer,
        // `None` for an unsafe request: the primary is the only attempt.
        hedging: Option<Hedging<S, Req, C>>,
    }
}

pin_project! {
    /// The primary attempt, kept inline so that a call that is never hedged
    /// allocates nothing.
    #[project = SlotProj]
    enum Slot<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// The timer of the next launch, created on first use so that building
    /// the future needs no runtime.
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

/// The state of a hedged call besides the primary.
pub(crate) struct Hedging<S, Req, C>
where
    S: Service<Req>,
{
    shared: Arc<Shared>,
    classifier: C,
    /// Cloned for every hedge; never polled itself.
    launcher: S,
    /// Cloned for every hedge.
    request: Req,
    delay: Duration,
    started: Instant,
    /// Hedged attempts sent (or whose service failed to get ready).
    launched: u32,
    /// When the next hedge is due, if attempts remain and none stopped them.
    next_launch: Instant,
    /// Why the next hedge is sent, for its event.
    next_reason: &'static str,
    /// A pushback or a local rejection ruled out further attempts.
    stopped: bool,
    /// The future has returned its result.
    finished: bool,
    /// A service clone being polled ready for the next hedge.
    pending: Option<S>,
    /// Hedges in flight. Boxed because they come and go; hedging is the rare path.
    attempts: Vec<Attempt<S::Future>>,
    /// The result of the last attempt that finished without winning.
    last: Option<Result<S::Response, ResilienceError>>,
}

struct Attempt<F> {
    index: u32,
    future: Pin<Box<F>>,
}

/// What a finished attempt did to the call.
enum Settled<T> {
    Won(T),
    Lost,
}

// ===== impl ResponseFuture =====

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn once(future: S::Future) -> Self {
        Self {
            primary: Slot::Running { future },
            timer: Timer::Idle,
            hedging: None,
        }
    }

    pub(crate) fn hedged(primary: S::Future, hedging: Hedging<S, Req, C>) -> Self {
        Self {
            primary: Slot::Running { future: primary },
            timer: Timer::Idle,
            hedging: Some(hedging),
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
        let mut this = self.project();
        let Some(hedging) = this.hedging.as_mut() else {
            let SlotProj::Running { future } = this.primary.as_mut().project() else {
                panic!("hedge ResponseFuture polled after completion");
            };
            let result = ready!(future.poll(cx));
            this.primary.set(Slot::Done);
            return Poll::Ready(result.map_err(ResilienceError::from_inner));
        };

        if hedging.finished {
            panic!("hedge ResponseFuture polled after completion");
        }
        let mut timer_fired = false;
        loop {
            let now = Instant::now();

            // The primary.
            if let SlotProj::Running { future } = this.primary.as_mut().project()
                && let Poll::Ready(result) = future.poll(cx)
            {
                this.primary.set(Slot::Done);
                let result = result.map_err(ResilienceError::from_inner);
                if let Settled::Won(response) = hedging.settle(0, result, now) {
                    if let Some(tracker) = &hedging.shared.tracker {
                        tracker.record(now.saturating_duration_since(hedging.started));
                    }
                    hedging.won(0, now);
                    return Poll::Ready(response);
                }
            }

            // The hedges. A finished one is removed before it is settled, so
            // the order of the rest may change; nothing depends on it.
            let mut i = 0;
            while i < hedging.attempts.len() {
                let Poll::Ready(result) = hedging.attempts[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let index = hedging.attempts.swap_remove(i).index;
                let result = result.map_err(ResilienceError::from_inner);
                if let Settled::Won(response) = hedging.settle(index, result, now) {
                    if let SlotProj::Running { .. } = this.primary.as_mut().project() {
                        // The primary ran at least the delay without answering:
                        // record that much, so it counts as slow (see module docs).
                        if let Some(tracker) = &hedging.shared.tracker {
                            tracker.record(now.saturating_duration_since(hedging.started));
                        }
                        this.primary.set(Slot::Done);
                    }
                    hedging.won(index, now);
                    return Poll::Ready(response);
                }
            }

            // The next hedge, when due (or already waiting for readiness).
            if hedging.can_launch()
                && (hedging.pending.is_some() || timer_fired || now >= hedging.next_launch)
            {
                timer_fired = false;
                if let Poll::Ready(launched) = hedging.poll_launch(cx, now) {
                    if let Err(error) = launched {
                        let index = hedging.launched;
                        if let Settled::Won(response) = hedging.settle(index, Err(error), now) {
                            // A classifier may call an error a success.
                            this.primary.set(Slot::Done);
                            hedging.won(index, now);
                            return Poll::Ready(response);
                        }
                    }
                    // Poll the new attempt, or act on the failed launch, at once.
                    continue;
                }
            }

            let running = matches!(*this.primary, Slot::Running { .. }) || !hedging.attempts.is_empty();
            if !running && hedging.pending.is_none() && !hedging.can_launch() {
                return Poll::Ready(hedging.exhausted(now));
            }

            // Wake up when the next hedge is due.
            if hedging.can_launch() && hedging.pending.is_none() {
                let deadline = hedging.next_launch;
                match this.timer.as_mut().project() {
                    TimerProj::Idle => this.timer.set(Timer::Armed {
                        sleep: sleep_until(deadline),
                    }),
                    TimerProj::Armed { sleep } => {
                        if sleep.deadline() != deadline {
                            sleep.reset(deadline);
                        }
                    }
                }
                if let TimerProj::Armed { sleep } = this.timer.as_mut().project()
                    && sleep.poll(cx).is_ready()
                {
                    timer_fired = true;
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseFuture");
        debug.field("primary_running", &matches!(self.primary, Slot::Running { .. }));
        if let Some(hedging) = &self.hedging {
            debug
                .field("name", &hedging.shared.name)
                .field("delay", &hedging.delay)
                .field("hedges_sent", &hedging.launched)
                .field("hedges_running", &hedging.attempts.len());
        }
        debug.finish()
    }
}

// ===== impl Hedging =====

impl<S, Req, C> Hedging<S, Req, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, ResilienceError>,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        classifier: C,
        launcher: S,
        request: Req,
        delay: Duration,
    ) -> Self {
        let started = Instant::now();
        Self {
            shared,
            classifier,
            launcher,
            request,
            delay,
            started,
            launched: 0,
            next_launch: started + delay,
            next_reason: if delay.is_zero() {
                "parallel"
            } else {
                "delay elapsed"
            },
            stopped: false,
            finished: false,
            pending: None,
            attempts: Vec::new(),
            last: None,
        }
    }

    /// True while another hedge may still be sent.
    fn can_launch(&self) -> bool {
        !self.stopped && self.launched < self.shared.config.max_hedged_attempts
    }

    /// Takes the result of attempt `index`: a success wins; anything else is
    /// kept as the latest failure and decides when the next hedge is due.
    fn settle(
        &mut self,
        index: u32,
        result: Result<S::Response, ResilienceError>,
        now: Instant,
    ) -> Settled<Result<S::Response, ResilienceError>> {
        match self.classifier.classify(result.as_ref()) {
            Outcome::Success => return Settled::Won(result),
            Outcome::Retryable | Outcome::Failure => match self.classifier.pushback(result.as_ref()) {
                Pushback::None => {
                    self.next_launch = now;
                    self.next_reason = "attempt failed";
                }
                Pushback::After(wait) => {
                    // A server's number: it may not fit on the clock.
                    self.next_launch = later(now, wait);
                    self.next_reason = "pushback elapsed";
                }
                Pushback::Stop => self.stop(index, "pushback"),
            },
            Outcome::Rejected => self.stop(index, "rejected"),
        }
        self.last = Some(result);
        Settled::Lost
    }

    /// No further hedge will be sent.
    fn stop(&mut self, index: u32, reason: &'static str) {
        if self.can_launch() {
            tracing::debug!(
                name = %self.shared.name,
                attempt = index,
                reason,
                hedges_sent = self.launched,
                "no further hedged attempts"
            );
        }
        self.stopped = true;
        // A clone still getting ready would never be used.
        self.pending = None;
    }

    /// Drives a service clone ready and sends the next hedge on it. `Ready(Err)`
    /// is the clone's readiness error, already counted as an attempt.
    fn poll_launch(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<Result<(), ResilienceError>> {
        let mut service = match self.pending.take() {
            Some(service) => service,
            None => self.launcher.clone(),
        };
        let ready = match service.poll_ready(cx) {
            Poll::Pending => {
                self.pending = Some(service);
                return Poll::Pending;
            }
            Poll::Ready(ready) => ready,
        };
        self.launched += 1;
        let index = self.launched;
        let reason = std::mem::replace(&mut self.next_reason, "delay elapsed");
        self.next_launch = later(now, self.delay);
        if self.delay.is_zero() {
            self.next_reason = "parallel";
        }
        match ready {
            Ok(()) => {
                let future = service.call(self.request.clone());
                self.attempts.push(Attempt {
                    index,
                    future: Box::pin(future),
                });
                tracing::debug!(
                    name = %self.shared.name,
                    attempt = index,
                    reason,
                    delay = ?self.delay,
                    elapsed = ?now.saturating_duration_since(self.started),
                    "hedged attempt sent"
                );
                metrics::counter!("orch_hedge_attempts_total", "name" => Arc::clone(&self.shared.name))
                    .increment(1);
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                let error = ResilienceError::from_inner(error);
                tracing::debug!(
                    name = %self.shared.name,
                    attempt = index,
                    reason,
                    error = %error,
                    "hedged attempt failed: its service could not get ready"
                );
                Poll::Ready(Err(error))
            }
        }
    }

    /// Cancels every other attempt of a call that attempt `index` won.
    fn won(&mut self, index: u32, now: Instant) {
        self.finished = true;
        self.attempts.clear();
        self.pending = None;
        if self.launched == 0 {
            return;
        }
        tracing::debug!(
            name = %self.shared.name,
            attempt = index,
            hedges_sent = self.launched,
            elapsed = ?now.saturating_duration_since(self.started),
            "hedged call won"
        );
        let attempt = ATTEMPT_LABELS.get(index as usize).copied().unwrap_or("other");
        metrics::counter!(
            "orch_hedge_wins_total",
            "name" => Arc::clone(&self.shared.name),
            "attempt" => attempt
        )
        .increment(1);
    }

    /// The result of a call on which no attempt succeeded: the last failure.
    fn exhausted(&mut self, now: Instant) -> Result<S::Response, ResilienceError> {
        self.finished = true;
        tracing::debug!(
            name = %self.shared.name,
            attempts = self.launched + 1,
            stopped = self.stopped,
            elapsed = ?now.saturating_duration_since(self.started),
            "no hedged attempt succeeded; returning the last failure"
        );
        metrics::counter!("orch_hedge_exhausted_total", "name" => Arc::clone(&self.shared.name)).increment(1);
        match self.last.take() {
            Some(result) => result,
            // Every path that finishes an attempt without a win stores its result,
            // and this is reached only once every attempt has finished.
            None => unreachable!("a hedged call ended without any attempt result"),
        }
    }
}
