//! Retries with backoff, deadlines, server pushback and retry budgets.
//!
//! A transient failure (a replica restarting, a dropped connection, a 503
//! from an overloaded peer) often succeeds on a second try. Retrying blindly
//! does harm: it repeats requests that are not safe to repeat, waits past
//! the caller's deadline, and multiplies the load on a service that is
//! already failing. [`RetryLayer`] retries only what a [`Classify`] calls
//! retryable, only requests a [`RequestSafety`] calls safe, within a
//! deadline, and within a budget shared by all calls. Use it on the client
//! side of a call, outside a circuit breaker and per-attempt timeout.
//!
//! Sources: the retry budget is Finagle's `RetryBudget` (as in tower's
//! `TpsBudget`); throttling, pushback and the backoff restart after a
//! pushback are gRFC A6 ("gRPC Retry Design"); full and decorrelated jitter
//! are from the AWS Architecture Blog's *Exponential Backoff and Jitter*;
//! constant and exponential schedules are computed by `backon`.
//!
//! # The contract
//!
//! A call goes through these steps.
//!
//! 1. **Deposit.** Each call deposits in the budget (if any), once, from
//!    `call`: it earns `percent_can_retry` of a retry.
//! 2. **Safety.** When `max_attempts > 1`, the request is asked
//!    [`RequestSafety::is_safe`]; if it is not,
//!    [`RequestSafety::make_safe`] may make it safe (with
//!    `HttpSafety::add_idempotency_key(true)`, a UUID v7 `Idempotency-Key`
//!    is added once, so every attempt carries the same key). A request that
//!    stays unsafe is sent once.
//! 3. **Prepare.** The [`Replay`] keeps what later attempts need: a clone
//!    of the request ([`CloneRequest`]), or the buffered body
//!    ([`BufferBodies`]; [`RebuildBodies`] also hands the service the
//!    caller's body type back). Nothing is kept for a request sent once.
//! 4. **Attempt.** The request is sent. With `attempt_timeout`, an attempt
//!    still running after it is cancelled and its result is
//!    `Timeout { kind: Attempt }`. With `overall_timeout`, the call ends with
//!    `Timeout { kind: Overall }` as soon as the deadline passes, whatever it
//!    is doing (reading the body, waiting for the service, or an attempt:
//!    the first attempt, which always starts, is cut at the deadline).
//! 5. **Classify.** The classifier sees the result (the inner service's
//!    errors as `ResilienceError::Inner`, attempt timeouts as
//!    `Timeout { kind: Attempt }`). `Success`, `Failure` and `Rejected`
//!    results are returned as they are. A `Retryable` result takes a
//!    throttle token and goes on.
//! 6. **Decide.** The first of these that applies stops the retries:
//!
//!    | condition | reason |
//!    |---|---|
//!    | `max_attempts` attempts made | `MaxAttempts` |
//!    | the request is not safe | `UnsafeRequest` |
//!    | the server said not to retry (`Pushback::Stop`) | `Pushback` |
//!    | the backoff schedule ended (custom schedules only) | `MaxAttempts` |
//!    | with `overall_timeout`: the next attempt cannot finish in time | `DeadlineTooClose` |
//!    | the body was too large to buffer | `BodyTooLarge` |
//!    | the throttle's tokens are at or below half | budget exhausted |
//!    | the budget refuses the withdrawal | budget exhausted |
//!
//!    "Cannot finish in time": with an attempt timeout, `delay +
//!    attempt_timeout` must fit in the remaining time; without one, the
//!    delay must end before the deadline. The delay is the server's
//!    pushback (`Retry-After`, `grpc-retry-pushback-ms`) when there is one,
//!    after which the backoff schedule starts over (gRFC A6); otherwise the
//!    schedule's next delay. The budget is asked last, so a refused retry
//!    for any other reason spends nothing.
//!
//!    When the retries stop, a response (`Ok`, for example a 503 after the
//!    last attempt) is returned as it is, with a `tracing` event giving the
//!    reason; an error is wrapped: `NotRetried { reason, attempts, last }`,
//!    or `BudgetExhausted { attempts, last }` for the budget and the
//!    throttle. `last` keeps the error, so `downcast_inner_ref` still finds
//!    the service's own error.
//! 7. **Retry.** Otherwise the layer sleeps for the delay, waits for the
//!    service to be ready (if waiting ate the time the attempt needs, the
//!    call stops with `DeadlineTooClose`), and goes back to step 4.
//!
//! Results of inner layers of this crate keep their meaning: a breaker's
//! `CircuitOpen` is `Rejected` and returned at once, an inner retry's
//! `NotRetried` or `BudgetExhausted` is a final `Failure`.
//!
//! # Costs
//!
//! A call that succeeds at once deposits in the budget (if any: an atomic
//! load and a compare-and-swap on the calling thread's shard; the budget
//! reads the clock on one deposit in 32), and, only when it could be
//! retried, clones the request and the inner service once each. Its future
//! owns a copy of what deciding a retry needs (the layer's name, attempt
//! limit and backoff settings), the classifier and the replay, and, when
//! the layer has a budget, a throttle or a custom backoff, a clone of the
//! calling thread's shard's `Arc` of them, so threads calling one layer do
//! not write one cache line (see `policy.rs`). Without a timeout a call
//! neither reads the clock nor creates a timer; with one, a request sent
//! at once reads the clock once, for the deadline and the first attempt's
//! cut-off, and boxes one timer, which also holds the time limits. Beyond that, only retries read the clock
//! and allocate (a custom `backon` schedule is boxed).
//!
//! # Observability
//!
//! `tracing` events (targets under `orch_resilience::retry`, level
//! `DEBUG`) for every retry (`name`, `attempt`, `next_attempt`, `delay`,
//! `reason` = `backoff` | `pushback`, `error`) and every decision to stop
//! (`name`, `attempts`, `reason`, `why`, `error`). Metrics, through the
//! `metrics` facade:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `orch_retry_attempts_total` | `name` | retries made (attempts after the first) |
//! | `orch_retry_gave_up_total` | `name`, `reason` | retryable results not retried; `reason` is `max_attempts`, `unsafe_request`, `pushback`, `deadline_too_close`, `body_too_large`, `budget_exhausted` or `throttled` |
//! | `orch_retry_budget_exhausted_total` | `name` | retries refused by the budget or the throttle |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use orch_resilience::{RetryConfig, RetryLayer, retry::BackoffConfig};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = RetryConfig::default()
//!     .max_attempts(4)
//!     .backoff(BackoffConfig::exponential(Duration::from_millis(10), Duration::from_millis(200)))
//!     .attempt_timeout(Duration::from_millis(300))
//!     .overall_timeout(Duration::from_secs(1));
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::http(config).unwrap())
//!     .service_fn(|req: http::Request<String>| async move {
//!         Ok::<_, std::io::Error>(http::Response::new(format!("{} {}", req.method(), req.uri())))
//!     });
//! let response = client.oneshot(http::Request::get("/items").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(response.body(), "GET /items");
//! # }
//! ```

mod backoff;
mod body;
mod budget;
mod config;
mod decision;
pub mod future;
mod layer;
mod policy;
mod rebuild;
mod replay;
mod throttle;
mod timer;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use tower_service::Service;

use self::policy::Policy;
pub use self::{
    backoff::{ConfigBackoff, DecorrelatedJitterBackoff, FullJitter, LinearBackoff},
    body::{BufferBodies, BufferRequest, ReplayBody, ReplaySource},
    budget::RetryBudget,
    config::{BackoffConfig, BackoffKind, Jitter, RetryBudgetConfig, RetryConfig, RetryThrottleConfig},
    future::ResponseFuture,
    layer::RetryLayer,
    rebuild::{RebuildBodies, RebuildBody, RebuildRequest},
    replay::{CloneRequest, Prepared, Replay},
    throttle::RetryThrottle,
};
use crate::{
    classify::{Classify, DefaultClassifier},
    error::{BoxError, ResilienceError},
    safety::{HttpSafety, RequestSafety},
};

/// A service that retries its inner service's retryable failures; made by
/// [`RetryLayer`], whose documentation (and this module's) gives the contract.
///
/// The inner service must be `Clone`: a call that could be retried keeps a
/// clone of it, as `tower::retry` does, so that its later attempts wait
/// for readiness on their own service without blocking other calls. The
/// first attempt goes to the ready service (`poll_ready` was called on
/// it), or, when a body is read first, the ready service goes with the
/// call and the clone stays. A call that cannot be retried clones nothing.
pub struct Retry<S, C = DefaultClassifier, P = HttpSafety, R = CloneRequest> {
    inner: S,
    policy: Arc<Policy<C, P, R>>,
}

// ===== impl Retry =====

impl<S, C, P, R> Retry<S, C, P, R> {
    fn from_policy(inner: S, policy: Policy<C, P, R>) -> Self {
        Self {
            inner,
            policy: Arc::new(policy),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// The budget shared by this service's clones, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.policy.budget()
    }

    /// The throttle shared by this service's clones, if any.
    pub fn throttle(&self) -> Option<&Arc<RetryThrottle>> {
        self.policy.throttle()
    }
}

impl<S: Clone, C, P, R> Clone for Retry<S, C, P, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S: fmt::Debug, C, P, R> fmt::Debug for Retry<S, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, C, P, R, Req> Service<Req> for Retry<S, C, P, R>
where
    R: Replay<Req> + Clone,
    S: Service<R::Request> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError> + Clone,
    P: RequestSafety<Req>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<Req, S, C, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    // Always inlined: out of line it saves and restores registers and
    // builds the future in its own frame, 13 more instructions a call (152
    // against 139 without a budget, 236 against 223 with one;
    // `benches/instructions.rs`, before the time limits moved to the timer).
    #[inline(always)]
    fn call(&mut self, mut request: Req) -> Self::Future {
        let policy = &*self.policy;
        if let Some(budget) = policy.budget() {
            budget.deposit();
        }
        let replayable = policy.settings.max_attempts > 1
            && (policy.safety.is_safe(&request) || policy.safety.make_safe(&mut request));
        let prepared = policy.replay.prepare(request, replayable);
        ResponseFuture::new(&mut self.inner, policy, prepared)
    }
}
