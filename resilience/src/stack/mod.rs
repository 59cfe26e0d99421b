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
//! its deadline (instead of a separate timer), so it never starts an attempt
//! that cannot finish in time. Retry and hedging cannot both be enabled:
//! each repeats requests, and together they multiply load.
//!
//! One classifier (what a result means) and one set of safety rules (which
//! requests may be repeated) are shared by the breaker, retry and hedging,
//! so they agree. Every config is validated by [`ResilienceBuilder::build`];
//! the first bad field is returned, with its path, and no layer is built.
//!
//! The service of the stack requires the inner service to be `Clone` (retry,
//! hedging and the bulkhead each need a fresh ready copy for later work):
//! wrap a non-`Clone` client in `tower::buffer::Buffer`.

mod maybe;

use std::{future::Ready, time::Duration};

use tower_layer::Layer;

pub use maybe::{Maybe, MaybeFuture, MaybeLayer};

use crate::{
    BulkheadConfig, BulkheadLayer, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ConfigError,
    DefaultClassifier, ErrorClasses, FallbackFn, FallbackLayer, HedgeConfig, HedgeLayer, HttpSafety,
    RateLimitConfig, RateLimitLayer, ResilienceError, RetryConfig, RetryLayer, TimeoutLayer,
    breaker::CircuitBreakerService, bulkhead::Bulkhead, fallback::Fallback, hedge::Hedge,
    rate_limit::RateLimit, retry::Retry, timeout::Timeout,
};

/// The fallback of a stack without one: returns the error unchanged. It is
/// never called; it only names the fallback type when none is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

impl<Res> FallbackFn<Res> for NoFallback {
    type Future = Ready<Result<Res, ResilienceError>>;

    fn fallback(&self, error: ResilienceError) -> Self::Future {
        std::future::ready(Err(error))
    }
}

/// Collects the layers to enable; [`build`](Self::build) validates them all
/// and assembles a [`ResilienceLayer`].
///
/// `C` is the classifier shared by breaker, retry and hedging, `Q` the
/// request safety rules of retry and hedging (default [`HttpSafety`]: a stack
/// with retry or hedging over non-HTTP requests needs
/// [`safety`](Self::safety)), `F` the fallback.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{
///     AlwaysSafe, CircuitBreakerConfig, ResilienceError, ResilienceLayer, RetryConfig,
/// };
/// use tower::{Layer, Service, ServiceExt};
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
pub struct ResilienceBuilder<C = DefaultClassifier, Q = HttpSafety, F = NoFallback> {
    fallback: Option<FallbackLayer<F>>,
    overall_timeout: Option<Duration>,
    retry: Option<RetryConfig>,
    hedge: Option<HedgeConfig>,
    breaker: Option<BreakerChoice>,
    rate_limit: Option<RateLimitConfig>,
    bulkhead: Option<BulkheadConfig>,
    attempt_timeout: Option<Duration>,
    classifier: C,
    safety: Q,
}

/// A breaker from a config (validated at build) or an existing shared one.
#[derive(Debug, Clone)]
enum BreakerChoice {
    Config(CircuitBreakerConfig),
    Shared(CircuitBreaker),
}

impl ResilienceBuilder {
    fn new() -> Self {
        Self {
            fallback: None,
            overall_timeout: None,
            retry: None,
            hedge: None,
            breaker: None,
            rate_limit: None,
            bulkhead: None,
            attempt_timeout: None,
            classifier: DefaultClassifier,
            safety: HttpSafety::default(),
        }
    }
}

impl<C, Q, F> ResilienceBuilder<C, Q, F> {
    /// Answers errors of the given classes with `fallback` (outermost layer).
    pub fn fallback<F2>(self, on: impl Into<ErrorClasses>, fallback: F2) -> ResilienceBuilder<C, Q, F2> {
        ResilienceBuilder {
            fallback: Some(FallbackLayer::new(fallback).on(on)),
            overall_timeout: self.overall_timeout,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            classifier: self.classifier,
            safety: self.safety,
        }
    }

    /// Bounds the whole call, all attempts included
    /// ([`TimeoutKind::Overall`](crate::TimeoutKind::Overall)).
    pub fn overall_timeout(mut self, timeout: Duration) -> Self {
        self.overall_timeout = Some(timeout);
        self
    }

    /// Retries retryable failures of safe requests.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
        self
    }

    /// Hedges slow safe requests (instead of retrying them).
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.hedge = Some(config);
        self
    }

    /// A circuit breaker built from `config`.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.breaker = Some(BreakerChoice::Config(config));
        self
    }

    /// An existing breaker, shared with every other user of it (for example
    /// one from a [`BreakerRegistry`](crate::BreakerRegistry)).
    pub fn shared_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(BreakerChoice::Shared(breaker));
        self
    }

    /// A GCRA rate limit shared by all clones of the service.
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.rate_limit = Some(config);
        self
    }

    /// A bulkhead shared by all clones of the service.
    pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.bulkhead = Some(config);
        self
    }

    /// Bounds each attempt ([`TimeoutKind::Attempt`](crate::TimeoutKind::Attempt));
    /// inside the breaker, so a timed-out attempt counts as a failure.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The classifier of breaker, retry and hedging.
    pub fn classifier<C2>(self, classifier: C2) -> ResilienceBuilder<C2, Q, F> {
        ResilienceBuilder {
            fallback: self.fallback,
            overall_timeout: self.overall_timeout,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            classifier,
            safety: self.safety,
        }
    }

    /// The rules saying which requests retry and hedging may repeat.
    pub fn safety<Q2>(self, safety: Q2) -> ResilienceBuilder<C, Q2, F> {
        ResilienceBuilder {
            fallback: self.fallback,
            overall_timeout: self.overall_timeout,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            classifier: self.classifier,
            safety,
        }
    }
}

impl<C: Clone, Q: Clone, F> ResilienceBuilder<C, Q, F> {
    /// Validates every enabled layer's config and assembles the stack.
    ///
    /// Errors name the field with the layer's prefix (`retry.max_attempts`,
    /// `breaker.failure_rate_threshold`); the stack's own rules are reported
    /// as `stack.<field>`.
    pub fn build(self) -> Result<ResilienceLayer<C, Q, F>, ConfigError> {
        if self.retry.is_some() && self.hedge.is_some() {
            return Err(ConfigError::field(
                "stack.hedge",
                "cannot be combined with retry: both repeat requests; choose one",
            ));
        }
        for (field, timeout) in [
            ("stack.overall_timeout", self.overall_timeout),
            ("stack.attempt_timeout", self.attempt_timeout),
        ] {
            if timeout.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::field(field, "must be greater than zero"));
            }
        }
        if let (Some(overall), Some(attempt)) = (self.overall_timeout, self.attempt_timeout)
            && attempt > overall
        {
            return Err(ConfigError::field(
                "stack.attempt_timeout",
                "must not be longer than the overall timeout",
            ));
        }

        let mut overall = self.overall_timeout.map(TimeoutLayer::overall);
        let retry = match self.retry {
            Some(mut config) => {
                if let Some(deadline) = self.overall_timeout {
                    if config.overall_timeout.is_some() {
                        return Err(ConfigError::field(
                            "retry.overall_timeout",
                            "set either here or as the stack's overall timeout, not both",
                        ));
                    }
                    // The retry layer enforces the deadline itself and plans
                    // attempts around it; a second timer would add nothing.
                    config.overall_timeout = Some(deadline);
                    overall = None;
                }
                Some(
                    RetryLayer::new(config)?
                        .classifier(self.classifier.clone())
                        .safety(self.safety.clone()),
                )
            }
            None => None,
        };
        let hedge = match self.hedge {
            Some(config) => Some(
                HedgeLayer::new(config)?
                    .classifier(self.classifier.clone())
                    .safety(self.safety.clone()),
            ),
            None => None,
        };
        let breaker = match self.breaker {
            Some(BreakerChoice::Config(config)) => Some(CircuitBreakerLayer::new(config)?),
            Some(BreakerChoice::Shared(breaker)) => Some(CircuitBreakerLayer::shared(breaker)),
            None => None,
        }
        .map(|layer| layer.classifier(self.classifier.clone()));
        let rate_limit = self.rate_limit.as_ref().map(RateLimitLayer::new).transpose()?;
        let bulkhead = self.bulkhead.as_ref().map(BulkheadLayer::new).transpose()?;

        Ok(ResilienceLayer {
            fallback: MaybeLayer(self.fallback),
            overall: MaybeLayer(overall),
            retry: MaybeLayer(retry),
            hedge: MaybeLayer(hedge),
            breaker: MaybeLayer(breaker),
            rate_limit: MaybeLayer(rate_limit),
            bulkhead: MaybeLayer(bulkhead),
            attempt: MaybeLayer(self.attempt_timeout.map(TimeoutLayer::attempt)),
        })
    }
}

/// The assembled stack: a `tower::Layer` applying every enabled layer in the
/// recommended order (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ResilienceLayer<C = DefaultClassifier, Q = HttpSafety, F = NoFallback> {
    fallback: MaybeLayer<FallbackLayer<F>>,
    overall: MaybeLayer<TimeoutLayer>,
    retry: MaybeLayer<RetryLayer<C, Q>>,
    hedge: MaybeLayer<HedgeLayer<C, Q>>,
    breaker: MaybeLayer<CircuitBreakerLayer<C>>,
    rate_limit: MaybeLayer<RateLimitLayer>,
    bulkhead: MaybeLayer<BulkheadLayer>,
    attempt: MaybeLayer<TimeoutLayer>,
}

impl ResilienceLayer {
    /// Starts a stack with no layer enabled, the default classifier and HTTP
    /// safety rules.
    pub fn builder() -> ResilienceBuilder {
        ResilienceBuilder::new()
    }
}

impl<C, Q, F> ResilienceLayer<C, Q, F> {
    /// The circuit breaker of the stack, if one is enabled, to read its state
    /// or force it open.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.0.as_ref().map(CircuitBreakerLayer::breaker)
    }
}

/// The service type of a [`ResilienceLayer`] over `S`.
pub type ResilienceService<S, C = DefaultClassifier, Q = HttpSafety, F = NoFallback> =
    Maybe<Fallback<Overall<S, C, Q>, F>, Overall<S, C, Q>>;

/// Layers 2–7 of the stack.
pub type Overall<S, C, Q> = Maybe<Timeout<Retried<S, C, Q>>, Retried<S, C, Q>>;
/// Layers 3–7 of the stack.
pub type Retried<S, C, Q> = Maybe<Retry<Hedged<S, C, Q>, C, Q>, Hedged<S, C, Q>>;
/// Hedging and the layers below it.
pub type Hedged<S, C, Q> = Maybe<Hedge<Broken<S, C>, C, Q>, Broken<S, C>>;
/// Layers 4–7 of the stack.
pub type Broken<S, C> = Maybe<CircuitBreakerService<Limited<S>, C>, Limited<S>>;
/// Layers 5–7 of the stack.
pub type Limited<S> = Maybe<RateLimit<Bulkheaded<S>>, Bulkheaded<S>>;
/// Layers 6–7 of the stack.
pub type Bulkheaded<S> = Maybe<Bulkhead<AttemptTimed<S>>, AttemptTimed<S>>;
/// Layer 7 of the stack over the service.
pub type AttemptTimed<S> = Maybe<Timeout<S>, S>;

impl<S, C: Clone, Q: Clone, F> Layer<S> for ResilienceLayer<C, Q, F> {
    type Service = ResilienceService<S, C, Q, F>;

    fn layer(&self, service: S) -> Self::Service {
        let service = self.attempt.layer(service);
        let service = self.bulkhead.layer(service);
        let service = self.rate_limit.layer(service);
        let service = self.breaker.layer(service);
        let service = self.hedge.layer(service);
        let service = self.retry.layer(service);
        let service = self.overall.layer(service);
        self.fallback.layer(service)
    }
}
