//! Every layer in the recommended order, assembled and validated by one call.
//!
//! The order of resilience layers changes what they mean: a retry outside the
//! breaker stops retrying when the circuit opens, a breaker outside the
//! attempt timeout counts timeouts as failures, a bulkhead inside the breaker
//! keeps an open circuit from queueing calls. [`ResilienceLayer::builder`]
//! puts the layers a user enables in this order, outermost first (Polly v8's
//! recommended pipeline, with Resilience4j's placement of the rate limiter and
//! bulkhead inside the breaker):
//!
//! | # | layer | why there |
//! |---|---|---|
//! | 1 | [fallback](crate::fallback) | sees every error, including the overall timeout |
//! | 2 | overall [timeout](crate::timeout) | bounds the whole call, all attempts and waits included |
//! | 3 | [retry](crate::retry) or [hedging](crate::hedge) | repeats attempts, each through everything below |
//! | 4 | [circuit breaker](crate::breaker) | judges every attempt; when open, nothing below runs |
//! | 5 | [rate limiter](crate::rate_limit) | spends permits only on calls the breaker admits |
//! | 6 | [bulkhead](crate::bulkhead) | caps concurrency of calls that will really be sent |
//! | 7 | attempt [timeout](crate::timeout) | bounds one attempt; the breaker above counts it as a failure |
//!
//! When retry is enabled, the overall timeout is given to the retry layer as
//! its deadline (in place of the separate layer, so one timer bounds the
//! call), and the attempt timeout's length for planning, so it never starts
//! an attempt that cannot finish in time. Set timeouts on the builder, not in the
//! [`RetryConfig`]: setting one in both places is refused. Retry and hedging cannot both be enabled:
//! each repeats requests, and together they multiply load.
//!
//! One classifier (what a result means) and one set of safety rules (which
//! requests may be repeated) are shared by the breaker, retry and hedging,
//! so they agree. Every config is validated by [`ResilienceBuilder::build`];
//! the first bad field is returned, with its path, and no layer is built.
//!
//! The service of the stack requires the inner service to be `Clone` (retry,
//! hedging and the bulkhead each need a fresh ready copy for later work):
//! wrap a non-`Clone` client in `tower::buffer::Buffer`. A tonic `Channel`
//! and a hyper-util `Client` are `Clone` already.
//!
//! # HTTP and gRPC
//!
//! Retry keeps a copy of each request for the next attempt, by cloning it.
//! An `http::Request` whose body is a stream (tonic's `Body`, hyper's
//! `Incoming`, boxed bodies) is not `Clone`:
//! [`buffer_bodies`](ResilienceBuilder::buffer_bodies) reads such a body
//! into memory up to a limit and replays it, and the inner service receives
//! the caller's body type again, so a stack fits around a tonic `Channel`
//! as it is. Hedging sends copies of `Clone` requests and is refused with
//! buffered bodies (a compile error naming `.buffer_bodies`).
//!
//! With the default safety rules ([`HttpSafety`](crate::HttpSafety)) the
//! default classifier is [`ProtocolClassifier`](crate::ProtocolClassifier):
//! HTTP statuses (429, 502, 503 and 504 retryable, other 5xx failures), or
//! the `grpc-status` of gRPC responses (`UNAVAILABLE` retryable), so the
//! breaker and retry agree with the safety rules about what `http` traffic
//! means. [`ResilienceLayer::http`] and [`ResilienceLayer::grpc`] choose
//! classifier, safety and body buffering together.
//!
//! # From configuration
//!
//! [`StackConfig`] is the whole stack as plain `serde` data (timeouts and
//! every layer's config, each optional);
//! [`build_from_config`](ResilienceBuilder::build_from_config) builds it
//! over the builder's classifier, safety and body handling, each layer
//! present or not at run time.
//!
//! The builder records which layers are enabled in its type: a layer that is
//! not enabled is `tower_layer::Identity` and costs nothing, not even a
//! branch, and the service type names each enabled layer once.

// The builder is type-state: its types name every slot, and are long by design.
#![allow(clippy::type_complexity)]

mod choice;
mod config;
mod optional;
mod overall;
mod presets;
mod slot;

use std::{fmt, time::Duration};

use tower_layer::{Layer, Stack};

pub use choice::{BodyReplay, Chosen, ClassifierChoice, DefaultClassifierOf, SafetyDefault};
pub use config::StackConfig;
pub use optional::{Optional, OptionalLayer, future::OptionalFuture};
pub use overall::{OverallTimeoutLayer, OverallTimeoutService, future::OverallTimeoutFuture};
pub use presets::{GRPC_BODY_BUFFER_LIMIT, GrpcBuilder, HttpBuilder};
pub use slot::{AttemptTimeout, BreakerChoice, Off, OverallTimeout, Plan, Slot};

use crate::{
    BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, ConfigError, ErrorClasses, FallbackLayer,
    HedgeConfig, HttpSafety, RateLimitConfig, RetryConfig,
    retry::{BufferBodies, CloneRequest, RebuildBodies},
};

/// Collects the layers to enable; [`build`](Self::build) validates them all
/// and assembles a [`ResilienceLayer`].
///
/// `C` is the classifier shared by breaker, retry and hedging (default
/// [`SafetyDefault`]: the safety rules' own, [`ProtocolClassifier`](crate::ProtocolClassifier)
/// under [`HttpSafety`], [`DefaultClassifier`](crate::DefaultClassifier)
/// under `AlwaysSafe` or `safety_fn`), `Q` the request safety rules of retry
/// and hedging (default [`HttpSafety`]: a stack over non-HTTP types needs
/// [`safety`](Self::safety) or [`classifier`](Self::classifier)). The
/// parameters after it are the slots, in stack order; each is [`Off`] until
/// its method is called. `R` is how retry keeps requests for another
/// attempt: [`CloneRequest`] until [`buffer_bodies`](Self::buffer_bodies).
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = ResilienceLayer::builder()
///     .overall_timeout(Duration::from_secs(2))
///     .retry(RetryConfig::default().max_attempts(3))
///     .circuit_breaker(CircuitBreakerConfig::default().name("inventory"))
///     .attempt_timeout(Duration::from_millis(300))
///     .safety(AlwaysSafe) // every request of this service is a read
///     .build()?;
/// let service = layer.layer(tower::service_fn(|sku: u32| async move {
///     Ok::<_, std::io::Error>(sku * 2)
/// }));
/// assert_eq!(service.oneshot(21).await?, 42);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call build() to get the layer"]
pub struct ResilienceBuilder<
    C = SafetyDefault,
    Q = HttpSafety,
    Fb = Off,
    Ov = Off,
    Rt = Off,
    Hd = Off,
    Br = Off,
    Rl = Off,
    Bh = Off,
    At = Off,
    R = CloneRequest,
> {
    classifier: C,
    safety: Q,
    fallback: Fb,
    overall: Ov,
    retry: Rt,
    hedge: Hd,
    breaker: Br,
    rate_limit: Rl,
    bulkhead: Bh,
    attempt: At,
    replay: R,
}

impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
    /// Answers errors of the given classes with `fallback` (outermost layer).
    pub fn fallback<F>(
        self,
        on: impl Into<ErrorClasses>,
        fallback: F,
    ) -> ResilienceBuilder<C, Q, FallbackLayer<F>, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: FallbackLayer::new(fallback).on(on),
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// Bounds the whole call, all attempts included
    /// ([`TimeoutKind::Overall`](crate::TimeoutKind::Overall)).
    pub fn overall_timeout(
        self,
        timeout: Duration,
    ) -> ResilienceBuilder<C, Q, Fb, OverallTimeout, Rt, Hd, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: OverallTimeout(timeout),
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// Retries retryable failures of safe requests.
    pub fn retry(
        self,
        config: RetryConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, RetryConfig, Hd, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: config,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// Hedges slow safe requests (instead of retrying them).
    pub fn hedge(
        self,
        config: HedgeConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, HedgeConfig, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: config,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// A circuit breaker built from `config`.
    pub fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, BreakerChoice, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: BreakerChoice::Config(config),
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// An existing breaker, shared with every other user of it (for example
    /// one from a [`BreakerRegistry`](crate::BreakerRegistry)).
    pub fn shared_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, BreakerChoice, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: BreakerChoice::Shared(breaker),
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// A GCRA rate limit shared by all clones of the service.
    pub fn rate_limit(
        self,
        config: RateLimitConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, RateLimitConfig, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: config,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// A bulkhead shared by all clones of the service.
    pub fn bulkhead(
        self,
        config: BulkheadConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, BulkheadConfig, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: config,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// Bounds each attempt ([`TimeoutKind::Attempt`](crate::TimeoutKind::Attempt));
    /// inside the breaker, so a timed-out attempt counts as a failure.
    pub fn attempt_timeout(
        self,
        timeout: Duration,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, AttemptTimeout, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: AttemptTimeout(timeout),
            replay: self.replay,
        }
    }

    /// The classifier of breaker, retry and hedging. Without one, the stack
    /// uses its safety rules' default (see [`DefaultClassifierOf`]).
    pub fn classifier<C2>(
        self,
        classifier: C2,
    ) -> ResilienceBuilder<Chosen<C2>, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: Chosen(classifier),
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }

    /// The rules saying which requests retry and hedging may repeat.
    pub fn safety<Q2>(self, safety: Q2) -> ResilienceBuilder<C, Q2, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay: self.replay,
        }
    }
}

impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
    /// Retries `http::Request`s whose bodies are streams (not `Clone`:
    /// tonic's `Body`, `BoxBody`, `UnsyncBoxBody`) by buffering bodies of up
    /// to `max_bytes` in memory and replaying them; the inner service
    /// receives each attempt's request with the caller's body type
    /// ([`RebuildBody`](crate::retry::RebuildBody)), so the stack wraps a
    /// tonic `Channel` as it is.
    ///
    /// A body larger than `max_bytes` is sent once, intact, and the call is
    /// not retried (`NotRetried { reason: BodyTooLarge }`); an unsafe
    /// request is never buffered. See [`BufferBodies`] for the exact rules.
    /// Without retry, nothing is buffered. Hedging cannot be combined with
    /// it: hedges are copies of `Clone` requests.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
    /// use orch_resilience::{ResilienceLayer, RetryConfig};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = ResilienceLayer::builder()
    ///     .retry(RetryConfig::default())
    ///     .buffer_bodies(64 * 1024)
    ///     .build()?;
    /// // The client takes the same body type the caller sends.
    /// let client = service_fn(|request: http::Request<Body>| async move {
    ///     let sent = request.into_body().collect().await.unwrap().to_bytes();
    ///     Ok::<_, std::io::Error>(http::Response::new(sent))
    /// });
    /// let request = http::Request::put("/items/7").body(Full::new(Bytes::from("x")).boxed_unsync())?;
    /// let response = stack.layer(client).oneshot(request).await?;
    /// assert_eq!(response.into_body(), "x");
    /// # Ok(()) }
    /// ```
    pub fn buffer_bodies(
        self,
        max_bytes: u64,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, RebuildBodies> {
        self.with_replay(RebuildBodies::new(max_bytes))
    }

    /// Like [`buffer_bodies`](Self::buffer_bodies), for bodies that cannot be
    /// rebuilt (hyper's `Incoming`): the services below retry receive
    /// `http::Request<ReplayBody<B>>` (build the client for that body type).
    /// Without retry, they receive the caller's request unchanged.
    pub fn buffer_bodies_raw(
        self,
        max_bytes: u64,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, BufferBodies> {
        self.with_replay(BufferBodies::new(max_bytes))
    }

    fn with_replay<R2>(self, replay: R2) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R2> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
            replay,
        }
    }
}

/// The layer chain of a built stack, innermost first.
type Chain<Fb, Ov, Rt, Hd, Br, Rl, Bh, At> =
    Stack<At, Stack<Bh, Stack<Rl, Stack<Br, Stack<Hd, Stack<Rt, Stack<Ov, Fb>>>>>>>;

/// The layers a builder's slots become, innermost first: what
/// [`ResilienceBuilder::build`] assembles, inside the [`ResilienceLayer`].
///
/// Its parameters are the builder's; it names each layer through its slot.
pub struct Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
{
    chain: Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>,
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
{
    /// The layers, innermost first, as nested `tower_layer::Stack`s.
    #[allow(clippy::type_complexity)]
    pub fn get_ref(
        &self,
    ) -> &Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer> {
        &self.chain
    }
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Clone for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
        }
    }
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> fmt::Debug
    for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembled").field("chain", &self.chain).finish()
    }
}

impl<S, C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Layer<S>
    for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: Layer<S>,
{
    type Service = <Chain<
        Fb::Layer,
        Ov::Layer,
        Rt::Layer,
        Hd::Layer,
        Br::Layer,
        Rl::Layer,
        Bh::Layer,
        At::Layer,
    > as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.chain.layer(inner)
    }
}

// The bounds sit on the method, not the impl, so that a slot that cannot be
// built is reported with its trait's diagnostic rather than as "`build`
// exists but its trait bounds were not satisfied".
impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
    /// Validates every enabled layer's config and assembles the stack.
    ///
    /// Errors name the field with the layer's prefix (`retry.max_attempts`,
    /// `breaker.failure_rate_threshold`); the stack's own rules are reported
    /// as `stack.<field>`. Nothing is built unless everything is valid
    /// (building a breaker or a limiter registers its metrics).
    #[allow(clippy::type_complexity)]
    pub fn build(
        self,
    ) -> Result<ResilienceLayer<Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>>, ConfigError>
    where
        C: ClassifierChoice<Q>,
        Fb: Slot<C::Classifier, Q, R>,
        Ov: Slot<C::Classifier, Q, R>,
        Rt: Slot<C::Classifier, Q, R>,
        Hd: Slot<C::Classifier, Q, R>,
        Br: Slot<C::Classifier, Q, R>,
        Rl: Slot<C::Classifier, Q, R>,
        Bh: Slot<C::Classifier, Q, R>,
        At: Slot<C::Classifier, Q, R>,
    {
        let plan = Plan {
            classifier: self.classifier.into_classifier(),
            safety: self.safety,
            replay: self.replay,
            overall_timeout: self.overall.timeout(),
            attempt_timeout: self.attempt.timeout(),
            retry_holds_deadline: self.retry.is_on(),
        };
        if self.retry.is_on() && self.hedge.is_on() {
            return Err(ConfigError::field(
                "stack.hedge",
                "cannot be combined with retry: both repeat requests; choose one",
            ));
        }
        self.fallback.validate(&plan)?;
        self.overall.validate(&plan)?;
        self.retry.validate(&plan)?;
        self.hedge.validate(&plan)?;
        self.breaker.validate(&plan)?;
        self.rate_limit.validate(&plan)?;
        self.bulkhead.validate(&plan)?;
        self.attempt.validate(&plan)?;
        let breaker_layer = self.breaker.into_layer(&plan)?;
        let breaker = Br::breaker_of(&breaker_layer);
        let chain = Stack::new(
            self.attempt.into_layer(&plan)?,
            Stack::new(
                self.bulkhead.into_layer(&plan)?,
                Stack::new(
                    self.rate_limit.into_layer(&plan)?,
                    Stack::new(
                        breaker_layer,
                        Stack::new(
                            self.hedge.into_layer(&plan)?,
                            Stack::new(
                                self.retry.into_layer(&plan)?,
                                Stack::new(self.overall.into_layer(&plan)?, self.fallback.into_layer(&plan)?),
                            ),
                        ),
                    ),
                ),
            ),
        );
        Ok(ResilienceLayer {
            chain: Assembled { chain },
            breaker,
        })
    }
}

/// The assembled stack: a `tower::Layer` applying every enabled layer in the
/// recommended order (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ResilienceLayer<L> {
    chain: L,
    breaker: Option<CircuitBreaker>,
}

impl<L> ResilienceLayer<L> {
    /// The assembled layers ([`Assembled`] for a built stack).
    pub fn get_ref(&self) -> &L {
        &self.chain
    }

    /// The circuit breaker of the stack, if one is enabled, to read its state
    /// or force it open.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for ResilienceLayer<L> {
    type Service = L::Service;

    fn layer(&self, service: S) -> Self::Service {
        self.chain.layer(service)
    }
}
