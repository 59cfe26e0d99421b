//! Caps the rate of calls with the Generic Cell Rate Algorithm.
//!
//! A client that calls a dependency faster than agreed (an API quota, a
//! database's capacity) gets throttled or banned; a server that accepts more
//! than it can handle collapses. [`RateLimit`] admits calls at a sustained
//! rate of `permits` per `per`, with bursts of up to `burst` calls, and
//! rejects (or briefly delays) the rest before they reach the service.
//!
//! The algorithm is GCRA, as implemented by `governor` and Redis-cell: the
//! whole state is one theoretical arrival time in an `AtomicU64`, updated by a
//! compare-exchange loop, so a check is O(1) and lock-free. It is written here
//! rather than taken from `governor` because `governor`'s clock does not
//! follow tokio's paused clock, and tests of code that uses the limiter must
//! run on paused time. The clock is a choice ([`RateLimitConfig::clock`]):
//! tokio's by default, or the CPU's time-stamp counter, which `governor`
//! reads too and which costs less than half as much per call (see
//! [`ClockSource`](crate::ClockSource)).
//!
//! # Contract
//!
//! - The check happens when the call is made
//!   ([`Service::call`]). With a permit, the
//!   inner service is called at once. Without one, if the next permit is at
//!   most `max_wait` away, it is reserved for the caller, who sleeps until it
//!   is due and then calls the inner service; waiting calls therefore run in
//!   the order they were made. Otherwise the call fails at once with
//!   [`ResilienceError::RateLimited`], whose `wait` is the time until a permit
//!   is available (also [`ResilienceError::retry_after`]); nothing is taken.
//! - A rejected call never reaches the inner service. A reserved permit is
//!   spent even if the caller drops the future while waiting.
//! - `poll_ready` forwards the inner service's readiness and takes no permit:
//!   a permit taken in `poll_ready` is lost if the caller never calls, and a
//!   limiter that pushes back in `poll_ready` cannot tell the caller how long
//!   to wait. A waiting call moves the inner service made ready with it into
//!   its future (leaving a clone), hence `S: Clone`.
//! - Unlike `tower::limit::RateLimit`, which is not `Clone`, the state lives in
//!   an `Arc`: every clone of the service, every service made by the same
//!   [`RateLimitLayer`], and every clone of its [`RateLimiter`] draw from one
//!   budget.
//!
//! # Guarantee
//!
//! With `T = per / permits` (rounded up to a whole nanosecond) and
//! `b = burst`, the calls admitted in any closed time window of length `w`
//! number at most `b + ⌊w / T⌋`; so any window of length `per` admits at most
//! `burst + permits` calls, and that bound is reached by a full burst at the
//! start of the window followed by one call every `T`. Conversely, a call
//! that finds `wait` in its rejection would be admitted `wait` later if no
//! other call took a permit in between. For calls that waited, the bound
//! holds for the instants their permits were due.
//!
//! # Observability
//!
//! | what | name | labels |
//! |---|---|---|
//! | counter, calls rejected | `orch_rate_limit_rejections_total` | `name` |
//!
//! The counter handle is registered when the limiter is created. Each
//! rejection emits a `DEBUG` tracing event with the fields `name`, `wait` and
//! `max_wait`; each delayed call a `TRACE` event with `name` and `wait`.
//! [`RateLimiter::try_acquire`] records nothing: its callers decide what a
//! rejection means.

mod config;
pub mod future;
mod gcra;
mod layer;
mod limiter;

use std::{
    mem,
    task::{Context, Poll},
};

use tower_service::Service;

use self::future::ResponseFuture;
pub use self::{config::RateLimitConfig, layer::RateLimitLayer, limiter::RateLimiter};
use crate::error::{BoxError, ResilienceError};

/// The name a rate limiter has when none is configured.
const DEFAULT_NAME: &str = "rate_limit";

/// Admits calls to the inner service at a configured rate. Built by
/// [`RateLimitLayer`]; see the [module docs](self) for the contract.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{RateLimitConfig, ResilienceError};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = RateLimitConfig::new(1, Duration::from_secs(1)).build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("ok") }));
///
/// assert_eq!(svc.clone().oneshot(()).await.unwrap(), "ok");
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert!(matches!(err, ResilienceError::RateLimited { .. }));
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
}

// ===== impl RateLimit =====

impl<S> RateLimit<S> {
    /// Wraps `inner`, drawing permits from `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self { inner, limiter }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the rate limit service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S::Future, S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.limiter.admit() {
            Ok(None) => ResponseFuture::called(self.inner.call(request)),
            Ok(Some(at)) => {
                // Take the service that `poll_ready` made ready; the clone left
                // behind is made ready by the caller's next `poll_ready`.
                let clone = self.inner.clone();
                let ready = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(tokio::time::sleep_until(at), ready, request)
            }
            Err(error) => ResponseFuture::rejected(error),
        }
    }
}
