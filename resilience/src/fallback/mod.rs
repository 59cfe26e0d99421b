//! Answers a failed call with a substitute response.
//!
//! When a dependency is down, a degraded answer (a cached value, a default,
//! an empty list, a friendly 503 carrying `Retry-After`) is often better than
//! an error. [`Fallback`] catches the errors of chosen [`ErrorClass`]es and
//! replaces them with the result of a user function, as Polly's fallback
//! strategy does; errors of other classes pass through unchanged.
//!
//! # Contract
//!
//! - The inner service's error is first converted with
//!   [`ResilienceError::from_inner`]; if its [`class`](ResilienceError::class)
//!   is in the layer's [`ErrorClasses`], the fallback is called with the
//!   error (by value) and its future's result, `Ok` or `Err`, is the call's
//!   result. An error from the fallback is returned as it is; the fallback is
//!   not applied to its own error.
//! - Otherwise the error is returned unchanged. Successful responses are never
//!   touched, whatever they contain (an HTTP 503 is a response, not an error;
//!   put the fallback outside a layer that turns such responses into errors,
//!   such as the retry layer or breaker, to catch them).
//! - Errors of `poll_ready` are passed through: a service that cannot take
//!   calls has no request to answer.
//! - The fallback is shared by all services of one layer and their clones
//!   (it lives in an `Arc`), so it need not be `Clone`.
//!
//! The class set defaults to [`ErrorClasses::ANY`]. Typical choices are
//! [`ErrorClasses::LOCAL_REJECTIONS`] (serve a default when the breaker is
//! open or the bulkhead full) or circuit-open plus timeout.
//!
//! # Observability
//!
//! | what | name | labels |
//! |---|---|---|
//! | counter, calls answered by the fallback | `orch_fallback_total` | `name`, `class` (`circuit_open`, `timeout`, `bulkhead_full`, `rate_limited`, `budget_exhausted`, `not_retried`, `inner`) |
//!
//! Each use also emits a `DEBUG` tracing event with the fields `name`, `class`
//! and `error`.

mod classes;
mod config;
pub mod future;
mod layer;

use std::{
    fmt,
    future::{Future, Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use tower_service::Service;

use self::future::ResponseFuture;
pub use self::{classes::ErrorClasses, config::FallbackConfig, layer::FallbackLayer};
use crate::error::{BoxError, ErrorClass, ResilienceError};

/// The name a fallback has when none is configured.
const DEFAULT_NAME: &str = "fallback";

/// Produces the substitute result for a failed call.
///
/// Implemented by every `Fn(ResilienceError) -> Fut` whose `Fut` resolves to
/// `Result<Res, ResilienceError>` (async closures and functions), and by
/// [`FallbackValue`] (a fixed value, see [`FallbackLayer::value`]).
pub trait FallbackFn<Res> {
    /// The future of the substitute result.
    type Future: Future<Output = Result<Res, ResilienceError>>;

    /// Starts producing the substitute for the call that failed with `error`.
    fn fallback(&self, error: ResilienceError) -> Self::Future;
}

impl<F, Fut, Res> FallbackFn<Res> for F
where
    F: Fn(ResilienceError) -> Fut,
    Fut: Future<Output = Result<Res, ResilienceError>>,
{
    type Future = Fut;

    fn fallback(&self, error: ResilienceError) -> Self::Future {
        self(error)
    }
}

/// A fallback that answers every matching error with a clone of one value.
#[derive(Debug, Clone)]
pub struct FallbackValue<T>(T);

impl<T> FallbackValue<T> {
    /// A fallback answering with clones of `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value.
    pub fn get_ref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> FallbackFn<T> for FallbackValue<T> {
    type Future = Ready<Result<T, ResilienceError>>;

    fn fallback(&self, _error: ResilienceError) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

/// What every clone of one [`Fallback`] shares.
pub(crate) struct Policy<F> {
    pub(crate) fallback: Arc<F>,
    pub(crate) on: ErrorClasses,
    pub(crate) name: Arc<str>,
}

impl<F> Policy<F> {
    /// Counts and reports one use of the fallback.
    fn record(&self, class: ErrorClass, error: &ResilienceError) {
        let class = classes::class_name(class);
        tracing::debug!(name = %self.name, class, %error, "fallback answered failed call");
        metrics::counter!("orch_fallback_total", "name" => Arc::clone(&self.name), "class" => class)
            .increment(1);
    }
}

/// Replaces errors of chosen classes with a fallback's result. Built by
/// [`FallbackLayer`]; see the [module docs](self) for the contract.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{CircuitRejection, ErrorClass, ErrorClasses, FallbackLayer, ResilienceError};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let open = service_fn(|_: ()| async {
///     Err::<&str, _>(ResilienceError::CircuitOpen {
///         name: "prices".into(),
///         rejection: CircuitRejection::Open,
///         remaining: Some(Duration::from_secs(3)),
///     })
/// });
/// let svc = ServiceBuilder::new()
///     .layer(FallbackLayer::new(|_err: ResilienceError| async { Ok("cached prices") })
///         .on(ErrorClasses::LOCAL_REJECTIONS.with(ErrorClass::Timeout)))
///     .service(open);
/// assert_eq!(svc.oneshot(()).await.unwrap(), "cached prices");
/// # }
/// ```
pub struct Fallback<S, F> {
    inner: S,
    policy: Arc<Policy<F>>,
}

// ===== impl Fallback =====

impl<S, F> Fallback<S, F> {
    fn new(inner: S, policy: Arc<Policy<F>>) -> Self {
        Self { inner, policy }
    }

    /// The classes of errors the fallback answers.
    pub fn classes(&self) -> ErrorClasses {
        self.policy.on
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the fallback service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, F> fmt::Debug for Fallback<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("name", &self.policy.name)
            .field("on", &self.policy.on)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, F> Clone for Fallback<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S, F, Req> Service<Req> for Fallback<S, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: FallbackFn<S::Response>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S::Future, F, F::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), Arc::clone(&self.policy))
    }
}
