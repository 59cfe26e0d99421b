//! A circuit breaker: stop calling a dependency that is failing, give it
//! time to recover, and probe it with a few trial calls before trusting it again.
//!
//! Without a breaker, every caller of a failing dependency waits for its own
//! timeout and retries, which keeps the dependency overloaded and ties up the
//! caller's own capacity. The breaker watches the outcomes of recent calls
//! and, when too many fail or are slow, *opens*: calls are rejected at once,
//! without touching the dependency, with [`ResilienceError::CircuitOpen`].
//!
//! # Algorithm
//!
//! The state machine and the sliding windows are Resilience4j's
//! (`CircuitBreakerStateMachine`, `SlidingTimeWindowMetrics`,
//! `FixedSizeSlidingWindowMetrics`); the consecutive-failure rule is that of
//! Polly's basic breaker and failsafe; the growing open wait is an
//! exponential backoff on consecutive re-opens.
//!
//! - **Closed.** Every call passes. Its outcome is recorded in a sliding
//!   window: the last `size` calls ([`SlidingWindow::Count`]) or the calls
//!   of the last `length` ([`SlidingWindow::Time`]), with running totals so
//!   a record is O(1). After each record, once the window holds at least
//!   `minimum_calls` calls (capped at a count window's size), the breaker
//!   opens when `failures / calls >= failure_rate_threshold` or, with
//!   slow-call detection (`slow_call_duration`, a call slower than it *strictly*),
//!   `slow / calls >= slow_call_rate_threshold`. It also opens after
//!   `consecutive_failures` failures in a row, whatever `minimum_calls` says.
//! - **Open.** Every call is rejected with [`CircuitRejection::Open`] and the
//!   remaining open time. The open wait is `open_wait` the first time, and
//!   is multiplied by `open_wait_multiplier` (up to `open_wait_max`) each
//!   time the trials fail and the breaker opens again; it goes back to
//!   `open_wait` once the breaker closes. The first call after the wait makes
//!   the breaker half-open (there is no timer task; see below).
//! - **Half-open.** Exactly `half_open_permits` trial calls pass, also
//!   under concurrency (a compare-and-swap on the trial slots); other calls
//!   are rejected with [`CircuitRejection::HalfOpenFull`]. The breaker closes,
//!   with an empty window, when every trial is recorded and the trials'
//!   failure and slow-call rates stay below the thresholds. It opens again
//!   as soon as the failures (or slow calls) among the trials reach the
//!   threshold as a share of *all* `half_open_permits` trials (then no
//!   outcome of the remaining trials can change the decision; Resilience4j
//!   waits for them). `minimum_calls` and `consecutive_failures` do not apply
//!   to trials. With `max_half_open_wait`, a breaker still undecided that
//!   long after it became half-open opens again.
//! - **Modes**, switched at run time on the shared handle:
//!   [`force_open`](CircuitBreaker::force_open) (reject everything with
//!   [`CircuitRejection::ForcedOpen`]), [`disable`](CircuitBreaker::disable)
//!   (admit everything, record nothing), [`metrics_only`](CircuitBreaker::metrics_only)
//!   (admit everything, record, report threshold crossings, never reject),
//!   [`normal`](CircuitBreaker::normal) (back to a fresh closed breaker from a
//!   mode) and [`reset`](CircuitBreaker::reset) (closed, window and backoff
//!   forgotten, from any state).
//!
//! # The contract at the edges
//!
//! - **Rejections touch nothing.** The tower service asks the breaker in
//!   `poll_ready` before it polls the inner service, and again in `call`
//!   before it calls it; a rejected call gets a ready service whose `call`
//!   returns an already-failed future without calling the inner service.
//! - **Stale outcomes are not counted.** Every state has an epoch; a permit
//!   remembers the epoch it was admitted in, and its outcome is dropped if the
//!   breaker has changed state since (a slow call admitted while closed that
//!   finishes while half-open is not a trial, and a trial that finishes after
//!   the breaker re-opened is ignored).
//! - **Permits dropped without an outcome record nothing.** A cancelled call
//!   (its future dropped), a service dropped between `poll_ready` and `call`,
//!   or [`Outcome::Rejected`] (an inner layer's local rejection) counts
//!   neither as success nor failure, and a half-open trial permit dropped that
//!   way gives its slot back, so another call can be the trial. A half-open
//!   breaker whose trials are never recorded stays half-open unless
//!   `max_half_open_wait` is set.
//! - **Time-based transitions are lazy.** Open → half-open happens when the
//!   first call arrives after the open wait, and half-open → open after
//!   `max_half_open_wait` when the next call or trial outcome arrives;
//!   [`CircuitBreaker::state`] reports the state as last changed.
//! - **A transition happens once.** Transitions are serialised and check the
//!   epoch they start from, so racing threads cannot open or close the
//!   breaker twice for one cause.
//! - **Time** is read with `tokio::time::Instant` (so tests run on paused
//!   time), only when needed: never on the closed path of a count window
//!   without slow-call detection; once per call (admission and record) with
//!   slow-call detection; once per record with a time window; on every
//!   call while open (for the remaining time) and, with
//!   `max_half_open_wait`, while half-open; and once per transition.
//!
//! # Threads
//!
//! A window shared by every thread would be written by every call and stop
//! scaling past one core. The breaker instead keeps one window per
//! *shard* (twice the available parallelism, rounded to a power of two, at
//! most 64, each on its own cache lines); a thread records into the shard
//! it was assigned, round-robin, on first use. Each shard's window is "the
//! last `size` calls recorded by its threads", and the trip decision sums
//! the totals of all shards. With one thread, one shard is used and the
//! behaviour is exactly the single window described above. With several,
//! the judged window holds up to `shards × size` calls (`minimum_calls`
//! applies to the sum), and the sum is judged when a record may have raised
//! a rate in a shard that holds a failure or a slow call: a failure, a slow
//! call, or any call while the shard's count window is still filling (or
//! any call in a time window). A success that replaces an older call in a
//! full count window can only lower the rates and is not judged. So a
//! crossing that only the sum of shards makes is seen at the next such
//! record, not at once. `consecutive_failures` counts across all threads.
//!
//! # Costs
//!
//! In the healthy steady state (a count window full of successes) a success
//! costs one atomic load of the shard's summary word and no write, so
//! [`try_acquire`](CircuitBreaker::try_acquire) +
//! [`record(Outcome::Success)`](BreakerPermit::record) is two loads and no
//! lock (`consecutive_failures` adds one load). While the window holds a
//! failure, a success also takes the shard's uncontended lock to slide the
//! window; a failure sums all shards. Slow-call detection and time windows
//! add the clock reads listed above and the shard lock on every record. The
//! `tower` service's `'static` response future owns an
//! [`OwnedBreakerPermit`]: a clone of the calling thread's shard handle, an `Arc`
//! to the breaker kept per shard, so the reference count it writes twice
//! per call is on a cache line of that shard's threads, not one that every
//! thread fights over. Rejections cost a clock read (when open), a
//! `tracing` event and a `metrics` counter increment.
//!
//! # Observability
//!
//! `tracing` events carry `name`, `from`, `to`, `reason` (`failure_rate`,
//! `slow_call_rate`, `consecutive_failures`, `open_wait_elapsed`,
//! `trials_passed`, `trials_failed`, `trials_slow`, `max_half_open_wait`,
//! `forced_open`, `disabled`, `metrics_only`, `normal`, `reset`) and, when
//! known, `calls`, `failure_rate`, `slow_call_rate` and `open_wait_ms`:
//! `WARN` when the breaker opens, `INFO` for other transitions, `DEBUG` for
//! each rejection (`reason`, `remaining_ms`). Code that must act on a
//! transition gets the same facts as a [`BreakerTransition`] from
//! [`CircuitBreaker::subscribe`], every change in the order it was made.
//! Metrics, through the `metrics` facade (nothing is recorded per admitted
//! call):
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `orch_breaker_transitions_total` | counter | `name`, `from`, `to` | state changes |
//! | `orch_breaker_rejections_total` | counter | `name`, `reason` (`open`, `half_open_full`, `forced_open`) | rejected calls |
//! | `orch_breaker_state` | gauge | `name` | the state, set on creation and every transition: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics only |
//! | `orch_breaker_threshold_exceeded_total` | counter | `name`, `reason` | metrics-only mode: the thresholds were crossed (once per crossing) |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use orch_resilience::breaker::{BreakerRegistry, CircuitBreakerConfig};
//! use orch_resilience::{ErrorClass, ResilienceError};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let registry = BreakerRegistry::new(
//!     CircuitBreakerConfig::default()
//!         .count_window(20)
//!         .minimum_calls(5)
//!         .open_wait(Duration::from_secs(10)),
//! )
//! .unwrap();
//!
//! let flaky = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("connection refused")) });
//! let svc = ServiceBuilder::new().layer(registry.layer("inventory")).service(flaky);
//!
//! for _ in 0..5 {
//!     let err = svc.clone().oneshot(()).await.unwrap_err();
//!     assert_eq!(err.class(), ErrorClass::Inner);
//! }
//! // The breaker is open: the service is no longer called.
//! let err = svc.clone().oneshot(()).await.unwrap_err();
//! assert!(matches!(err, ResilienceError::CircuitOpen { .. }));
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
//! # }
//! ```

use std::task::{Context, Poll};

use tower_service::Service;

#[cfg(doc)]
use crate::{classify::Outcome, error::CircuitRejection};
use crate::{
    classify::{Classify, DefaultClassifier},
    error::{BoxError, ResilienceError},
};

mod circuit_breaker;
mod config;
mod future;
mod layer;
mod permit;
mod registry;
mod state;
mod state_machine;
mod window;

pub use circuit_breaker::{BreakerMetrics, CircuitBreaker};
pub use config::{CircuitBreakerConfig, SlidingWindow};
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use permit::{BreakerPermit, OwnedBreakerPermit};
pub use registry::BreakerRegistry;
pub use state::{BreakerState, BreakerTransition, TransitionReason};

/// A `tower` service guarded by a [`CircuitBreaker`].
///
/// `poll_ready` asks the breaker first: when the call is rejected it returns
/// ready *without* polling the inner service, and `call` returns a future
/// that fails at once with [`ResilienceError::CircuitOpen`]. When admitted,
/// it polls the inner service, and the response future records the outcome
/// as the classifier `C` judges it (errors are first converted with
/// [`ResilienceError::from_inner`], so an inner layer's rejection is
/// [`Outcome::Rejected`] and records nothing). An inner `poll_ready` error is
/// recorded too.
///
/// A half-open trial permit is reserved in `poll_ready` and held until
/// `call` (or until the service is dropped, which gives it back), so the
/// trial slot stays taken while the inner service is not ready. A closed,
/// metrics-only or disabled breaker reserves nothing: `call` takes the
/// permit, and should the breaker have opened in between, `call` rejects,
/// still without touching the inner service. With slow-call detection a
/// call's duration is measured from `call`. `call` without `poll_ready` asks
/// the breaker then, and calls the inner service unpolled if admitted.
///
/// Clones share the breaker and start unpolled. The classifier is cloned
/// into every response future: prefer classifiers that are cheap to clone
/// (`DefaultClassifier` is free). Per call, the service costs the breaker's
/// admission and an [`OwnedBreakerPermit`] (see the module's costs).
#[derive(Debug)]
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    ready: Readiness,
}

/// What `poll_ready` decided for the next `call`, read once by `call`.
#[derive(Debug)]
enum Readiness {
    /// Nothing yet (or `call` took the decision): `call` asks the breaker.
    Unpolled,
    /// Admitted by a breaker that needs no permit reserved (closed,
    /// metrics-only, disabled): `call` takes the permit.
    Admitted,
    /// A reserved permit: a half-open trial.
    Reserved(OwnedBreakerPermit),
    /// Rejected: `call` fails at once. Boxed, to keep the service small.
    Rejected(Box<ResilienceError>),
}

// ===== impl CircuitBreakerService =====

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` in `breaker`, judging results with `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            ready: Readiness::Unpolled,
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Records an inner `poll_ready` error against the breaker.
    fn poll_ready_failed<Res>(&mut self, error: impl Into<BoxError>) -> ResilienceError
    where
        C: Classify<Res, ResilienceError>,
    {
        let error = ResilienceError::from_inner(error);
        let outcome = self.classifier.classify(Err(&error));
        match std::mem::replace(&mut self.ready, Readiness::Unpolled) {
            Readiness::Reserved(permit) => permit.record(outcome),
            Readiness::Admitted => {
                if let Ok(permit) = self.breaker.try_acquire() {
                    permit.record(outcome);
                }
            }
            Readiness::Unpolled | Readiness::Rejected(_) => {}
        }
        error
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.breaker.clone(), self.classifier.clone())
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Asked again after a rejection too: the breaker may admit by now.
        if matches!(self.ready, Readiness::Unpolled | Readiness::Rejected(_)) {
            self.ready = if self.breaker.admits_everyone() {
                Readiness::Admitted
            } else {
                match self.breaker.try_acquire_owned() {
                    Ok(permit) => Readiness::Reserved(permit),
                    Err(rejection) => Readiness::Rejected(Box::new(rejection)),
                }
            };
            if let Readiness::Rejected(_) = self.ready {
                return Poll::Ready(Ok(()));
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.poll_ready_failed(error))),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.ready, Readiness::Unpolled) {
            Readiness::Reserved(mut permit) => {
                permit.restart_clock();
                let future = self.inner.call(request);
                return ResponseFuture::called(future, permit, self.classifier.clone());
            }
            Readiness::Rejected(rejection) => return ResponseFuture::rejected(*rejection),
            // Admitted without a reserved permit (or `poll_ready` was not
            // called): take it now, below. Should the breaker have opened
            // since `poll_ready`, the call is rejected there, still before
            // the inner service is touched.
            Readiness::Admitted | Readiness::Unpolled => {}
        }
        let admission = match self.breaker.machine.admit() {
            Ok(admission) => admission,
            Err(rejection) => return ResponseFuture::rejected(rejection),
        };
        if admission.phase.state == BreakerState::HalfOpen {
            // A trial's permit exists before the inner call, so that an
            // inner service that panics gives the trial slot back.
            let permit = self.breaker.owned_permit(admission);
            let future = self.inner.call(request);
            return ResponseFuture::called(future, permit, self.classifier.clone());
        }
        // Other calls have nothing to give back: the inner call first, then
        // the permit, which then goes straight from registers into the
        // future instead of being spilled around the call and copied
        // (`breaker/orch service`: 28.4 ns before, 17.9 ns after).
        let future = self.inner.call(request);
        ResponseFuture::called(
            future,
            self.breaker.owned_permit(admission),
            self.classifier.clone(),
        )
    }
}
