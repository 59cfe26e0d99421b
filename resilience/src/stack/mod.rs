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
//! wrap a non-`Clone` client in `tower::buffer::Buffer`.
//!
//! The builder records which layers are enabled in its type: a layer that is
//! not enabled is `tower_layer::Identity` and costs nothing, not even a
//! branch, and the service type names each enabled layer once.

mod overall;

use std::time::Duration;

use tower_layer::{Identity, Layer, Stack};

pub use overall::{OverallTimeoutLayer, OverallTimeoutService, future::OverallTimeoutFuture};

use crate::{
    BulkheadConfig, BulkheadLayer, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ConfigError,
    DefaultClassifier, ErrorClasses, FallbackLayer, HedgeConfig, HedgeLayer, HttpSafety, RateLimitConfig,
    RateLimitLayer, RetryConfig, RetryLayer, TimeoutLayer, config::check,
};

/// A slot of the builder whose layer is not enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Off;

/// The overall timeout slot, once set.
#[derive(Debug, Clone, Copy)]
pub struct OverallTimeout(Duration);

/// The attempt timeout slot, once set.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeout(Duration);

/// The breaker slot, once set: a config (validated at build) or a shared breaker.
#[derive(Debug, Clone)]
pub enum BreakerChoice {
    /// A new breaker from this config.
    Config(CircuitBreakerConfig),
    /// An existing breaker, shared.
    Shared(CircuitBreaker),
}

/// What [`ResilienceBuilder::build`] knows when it turns slots into layers.
#[derive(Debug)]
pub struct Plan<C, Q> {
    classifier: C,
    safety: Q,
    overall_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    /// Retry is enabled and enforces the overall timeout as its deadline.
    retry_holds_deadline: bool,
}

/// A builder slot: either [`Off`] or the config of one layer.
///
/// Implemented for the slot types of [`ResilienceBuilder`]; not meant to be
/// implemented elsewhere.
pub trait Slot<C, Q> {
    /// The layer the slot becomes ([`Identity`] when off).
    type Layer;

    /// Checks the config, building nothing.
    fn validate(&self, plan: &Plan<C, Q>) -> Result<(), ConfigError>;

    /// Builds the layer; called only after every slot validated.
    fn into_layer(self, plan: &Plan<C, Q>) -> Result<Self::Layer, ConfigError>;

    /// Whether the slot enables a layer.
    fn is_on(&self) -> bool {
        true
    }

    /// The duration of a timeout slot.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The breaker of a breaker slot's layer.
    fn breaker_of(layer: &Self::Layer) -> Option<CircuitBreaker> {
        let _ = layer;
        None
    }
}

impl<C, Q> Slot<C, Q> for Off {
    type Layer = Identity;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn into_layer(self, _: &Plan<C, Q>) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }

    fn is_on(&self) -> bool {
        false
    }
}

impl<C, Q> Slot<C, Q> for OverallTimeout {
    type Layer = OverallTimeoutLayer;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        check::non_zero_duration("stack.overall_timeout", self.0)
    }

    fn into_layer(self, plan: &Plan<C, Q>) -> Result<OverallTimeoutLayer, ConfigError> {
        // With retry, its deadline (the same duration) bounds the call.
        Ok(OverallTimeoutLayer(
            (!plan.retry_holds_deadline).then(|| TimeoutLayer::overall(self.0)),
        ))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
}

impl<C, Q> Slot<C, Q> for AttemptTimeout {
    type Layer = TimeoutLayer;

    fn validate(&self, plan: &Plan<C, Q>) -> Result<(), ConfigError> {
        check::non_zero_duration("stack.attempt_timeout", self.0)?;
        if plan.overall_timeout.is_some_and(|overall| self.0 > overall) {
            return Err(ConfigError::field(
                "stack.attempt_timeout",
                "must not be longer than the overall timeout",
            ));
        }
        Ok(())
    }

    fn into_layer(self, _: &Plan<C, Q>) -> Result<TimeoutLayer, ConfigError> {
        Ok(TimeoutLayer::attempt(self.0))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
}

impl<F, C, Q> Slot<C, Q> for FallbackLayer<F> {
    type Layer = FallbackLayer<F>;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn into_layer(self, _: &Plan<C, Q>) -> Result<Self, ConfigError> {
        Ok(self)
    }
}

impl RetryConfig {
    /// This config with the stack's timeouts: the overall timeout becomes the
    /// deadline; setting one here and on the stack is refused.
    fn with_plan<C, Q>(&self, plan: &Plan<C, Q>) -> Result<RetryConfig, ConfigError> {
        let mut config = self.clone();
        if let Some(deadline) = plan.overall_timeout {
            if config.overall_timeout.is_some() {
                return Err(ConfigError::field(
                    "retry.overall_timeout",
                    "set either here or as the stack's overall timeout, not both",
                ));
            }
            config.overall_timeout = Some(deadline);
        }
        if plan.attempt_timeout.is_some() && config.attempt_timeout.is_some() {
            return Err(ConfigError::field(
                "retry.attempt_timeout",
                "set either here or as the stack's attempt timeout, not both",
            ));
        }
        Ok(config)
    }
}

impl<C: Clone, Q: Clone> Slot<C, Q> for RetryConfig {
    type Layer = RetryLayer<C, Q>;

    fn validate(&self, plan: &Plan<C, Q>) -> Result<(), ConfigError> {
        self.with_plan(plan)?.validate()
    }

    fn into_layer(self, plan: &Plan<C, Q>) -> Result<Self::Layer, ConfigError> {
        let layer = RetryLayer::new(self.with_plan(plan)?)?
            .classifier(plan.classifier.clone())
            .safety(plan.safety.clone());
        // The attempt timeout sits below the breaker; the retry layer only
        // needs its length to plan attempts against the deadline.
        Ok(match plan.attempt_timeout {
            Some(limit) => layer.plan_attempts(limit),
            None => layer,
        })
    }
}

impl<C: Clone, Q: Clone> Slot<C, Q> for HedgeConfig {
    type Layer = HedgeLayer<C, Q>;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        HedgeConfig::validate(self)
    }

    fn into_layer(self, plan: &Plan<C, Q>) -> Result<Self::Layer, ConfigError> {
        Ok(HedgeLayer::new(self)?
            .classifier(plan.classifier.clone())
            .safety(plan.safety.clone()))
    }
}

impl<C: Clone, Q> Slot<C, Q> for BreakerChoice {
    type Layer = CircuitBreakerLayer<C>;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        match self {
            BreakerChoice::Config(config) => config.validate(),
            BreakerChoice::Shared(_) => Ok(()),
        }
    }

    fn into_layer(self, plan: &Plan<C, Q>) -> Result<Self::Layer, ConfigError> {
        let layer = match self {
            BreakerChoice::Config(config) => CircuitBreakerLayer::new(config)?,
            BreakerChoice::Shared(breaker) => CircuitBreakerLayer::shared(breaker),
        };
        Ok(layer.classifier(plan.classifier.clone()))
    }

    fn breaker_of(layer: &Self::Layer) -> Option<CircuitBreaker> {
        Some(layer.breaker().clone())
    }
}

impl<C, Q> Slot<C, Q> for RateLimitConfig {
    type Layer = RateLimitLayer;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        RateLimitConfig::validate(self)
    }

    fn into_layer(self, _: &Plan<C, Q>) -> Result<Self::Layer, ConfigError> {
        RateLimitLayer::new(self)
    }
}

impl<C, Q> Slot<C, Q> for BulkheadConfig {
    type Layer = BulkheadLayer;

    fn validate(&self, _: &Plan<C, Q>) -> Result<(), ConfigError> {
        BulkheadConfig::validate(self)
    }

    fn into_layer(self, _: &Plan<C, Q>) -> Result<Self::Layer, ConfigError> {
        BulkheadLayer::new(self)
    }
}

/// Collects the layers to enable; [`build`](Self::build) validates them all
/// and assembles a [`ResilienceLayer`].
///
/// `C` is the classifier shared by breaker, retry and hedging, `Q` the
/// request safety rules of retry and hedging (default [`HttpSafety`]: a stack
/// with retry or hedging over non-HTTP requests needs
/// [`safety`](Self::safety)). The other parameters are the slots, in stack
/// order; each is [`Off`] until its method is called.
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
    C = DefaultClassifier,
    Q = HttpSafety,
    Fb = Off,
    Ov = Off,
    Rt = Off,
    Hd = Off,
    Br = Off,
    Rl = Off,
    Bh = Off,
    At = Off,
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
}

impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> {
    /// Answers errors of the given classes with `fallback` (outermost layer).
    pub fn fallback<F>(
        self,
        on: impl Into<ErrorClasses>,
        fallback: F,
    ) -> ResilienceBuilder<C, Q, FallbackLayer<F>, Ov, Rt, Hd, Br, Rl, Bh, At> {
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
        }
    }

    /// Bounds the whole call, all attempts included
    /// ([`TimeoutKind::Overall`](crate::TimeoutKind::Overall)).
    pub fn overall_timeout(
        self,
        timeout: Duration,
    ) -> ResilienceBuilder<C, Q, Fb, OverallTimeout, Rt, Hd, Br, Rl, Bh, At> {
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
        }
    }

    /// Retries retryable failures of safe requests.
    pub fn retry(
        self,
        config: RetryConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, RetryConfig, Hd, Br, Rl, Bh, At> {
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
        }
    }

    /// Hedges slow safe requests (instead of retrying them).
    pub fn hedge(
        self,
        config: HedgeConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, HedgeConfig, Br, Rl, Bh, At> {
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
        }
    }

    /// A circuit breaker built from `config`.
    pub fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, BreakerChoice, Rl, Bh, At> {
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
        }
    }

    /// An existing breaker, shared with every other user of it (for example
    /// one from a [`BreakerRegistry`](crate::BreakerRegistry)).
    pub fn shared_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, BreakerChoice, Rl, Bh, At> {
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
        }
    }

    /// A GCRA rate limit shared by all clones of the service.
    pub fn rate_limit(
        self,
        config: RateLimitConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, RateLimitConfig, Bh, At> {
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
        }
    }

    /// A bulkhead shared by all clones of the service.
    pub fn bulkhead(
        self,
        config: BulkheadConfig,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, BulkheadConfig, At> {
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
        }
    }

    /// Bounds each attempt ([`TimeoutKind::Attempt`](crate::TimeoutKind::Attempt));
    /// inside the breaker, so a timed-out attempt counts as a failure.
    pub fn attempt_timeout(
        self,
        timeout: Duration,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, AttemptTimeout> {
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
        }
    }

    /// The classifier of breaker, retry and hedging.
    pub fn classifier<C2>(self, classifier: C2) -> ResilienceBuilder<C2, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> {
        ResilienceBuilder {
            classifier,
            safety: self.safety,
            fallback: self.fallback,
            overall: self.overall,
            retry: self.retry,
            hedge: self.hedge,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
            bulkhead: self.bulkhead,
            attempt: self.attempt,
        }
    }

    /// The rules saying which requests retry and hedging may repeat.
    pub fn safety<Q2>(self, safety: Q2) -> ResilienceBuilder<C, Q2, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> {
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
        }
    }
}

/// The layer chain of a built stack, innermost first.
type Chain<Fb, Ov, Rt, Hd, Br, Rl, Bh, At> =
    Stack<At, Stack<Bh, Stack<Rl, Stack<Br, Stack<Hd, Stack<Rt, Stack<Ov, Fb>>>>>>>;

impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    Fb: Slot<C, Q>,
    Ov: Slot<C, Q>,
    Rt: Slot<C, Q>,
    Hd: Slot<C, Q>,
    Br: Slot<C, Q>,
    Rl: Slot<C, Q>,
    Bh: Slot<C, Q>,
    At: Slot<C, Q>,
{
    /// Validates every enabled layer's config and assembles the stack.
    ///
    /// Errors name the field with the layer's prefix (`retry.max_attempts`,
    /// `breaker.failure_rate_threshold`); the stack's own rules are reported
    /// as `stack.<field>`. Nothing is built unless everything is valid
    /// (building a breaker or a limiter registers its metrics).
    #[allow(clippy::type_complexity)]
    pub fn build(
        self,
    ) -> Result<
        ResilienceLayer<
            Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>,
        >,
        ConfigError,
    > {
        let plan = Plan {
            classifier: self.classifier,
            safety: self.safety,
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
        Ok(ResilienceLayer { chain, breaker })
    }
}

/// The assembled stack: a `tower::Layer` applying every enabled layer in the
/// recommended order (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ResilienceLayer<L> {
    chain: L,
    breaker: Option<CircuitBreaker>,
}

impl ResilienceLayer<Identity> {
    /// Starts a stack with no layer enabled, the default classifier and HTTP
    /// safety rules.
    pub fn builder() -> ResilienceBuilder {
        ResilienceBuilder {
            classifier: DefaultClassifier,
            safety: HttpSafety::default(),
            fallback: Off,
            overall: Off,
            retry: Off,
            hedge: Off,
            breaker: Off,
            rate_limit: Off,
            bulkhead: Off,
            attempt: Off,
        }
    }
}

impl<L> ResilienceLayer<L> {
    /// The layers, innermost first, as nested `tower_layer::Stack`s.
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
