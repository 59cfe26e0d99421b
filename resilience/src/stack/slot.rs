//! The builder's slots: what each enabled layer is before the stack is built.
//!
//! Each slot type turns into its layer when [`ResilienceBuilder::build`]
//! runs, after every slot validated against the [`BuildContext`] (what the stack as
//! a whole knows: its classifier, safety rules, replay and timeouts). An
//! `Option` of a slot is a layer that a [`StackConfig`](super::StackConfig)
//! may or may not enable at run time.
//!
//! [`ResilienceBuilder::build`]: super::ResilienceBuilder::build

use std::time::Duration;

use tower_layer::Identity;

#[allow(unused_imports)] // for doc links
use super::ResilienceBuilder;
use super::{
    OverallTimeoutLayer,
    hedge_bodies::{BufferedOnly, HedgeBodiesLayer},
    optional::OptionalLayer,
};
use crate::{
    BulkheadConfig, BulkheadLayer, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ConfigError,
    FallbackLayer, HedgeConfig, HedgeLayer, RateLimitConfig, RateLimitLayer, RetryConfig, RetryLayer,
    TimeoutLayer,
    config::check,
    retry::{BufferBodies, CloneRequest, RebuildBodies},
};

/// A slot of the builder whose layer is not enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Off;

/// The overall timeout slot, once set.
#[derive(Debug, Clone, Copy)]
pub struct OverallTimeout(pub(super) Duration);

/// The attempt timeout slot, once set.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeout(pub(super) Duration);

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
pub struct BuildContext<C, Q, R = CloneRequest> {
    pub(super) classifier: C,
    pub(super) safety: Q,
    /// How retry makes each attempt's request.
    pub(super) replay: R,
    pub(super) overall_timeout: Option<Duration>,
    pub(super) attempt_timeout: Option<Duration>,
    /// Retry is enabled and enforces the overall timeout as its deadline.
    pub(super) retry_holds_deadline: bool,
}

/// A builder slot: either [`Off`] or the config of one layer.
///
/// A slot that cannot be part of the stack is named by the compiler, with
/// what to change; hedging over bodies handed on as `ReplayBody`s, for example:
///
/// ```compile_fail,E0277
/// use orch_resilience::{HedgeConfig, ResilienceLayer};
///
/// // error: `HedgeConfig` cannot be a layer of this stack (.., requests replayed by `BufferBodies`)
/// let stack = ResilienceLayer::builder().hedge(HedgeConfig::default()).buffer_bodies_raw(1024).build();
/// ```
///
/// Implemented for the slot types of [`ResilienceBuilder`] (and `Option`s of
/// them, for stacks built from a [`StackConfig`](super::StackConfig)); not
/// meant to be implemented elsewhere. `R` is how retry makes each attempt's
/// request ([`CloneRequest`], or a body buffer).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a layer of this stack (classifier `{C}`, safety `{Q}`, requests replayed by `{R}`)",
    label = "not a layer of this stack",
    note = "hedging (`HedgeConfig`) sends copies of `Clone` requests or of bodies buffered by `.buffer_bodies(..)`, and cannot be combined with `.buffer_bodies_raw(..)`: use `.buffer_bodies(..)`, or retry",
    note = "the classifier and the safety rules must be `Clone`"
)]
pub trait Slot<C, Q, R = CloneRequest> {
    /// The layer the slot becomes ([`Identity`] when off).
    type Layer;

    /// Checks the config, building nothing.
    fn validate(&self, context: &BuildContext<C, Q, R>) -> Result<(), ConfigError>;

    /// Builds the layer; called only after every slot validated.
    fn into_layer(self, context: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError>;

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

impl<C, Q, R> Slot<C, Q, R> for Off {
    type Layer = Identity;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn into_layer(self, _: &BuildContext<C, Q, R>) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }

    fn is_on(&self) -> bool {
        false
    }
}

impl<C, Q, R> Slot<C, Q, R> for OverallTimeout {
    type Layer = OverallTimeoutLayer;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        check::non_zero_duration("stack.overall_timeout", self.0)
    }

    fn into_layer(self, context: &BuildContext<C, Q, R>) -> Result<OverallTimeoutLayer, ConfigError> {
        // With retry, its deadline (the same duration) bounds the call.
        Ok(OverallTimeoutLayer(
            (!context.retry_holds_deadline).then(|| TimeoutLayer::overall(self.0)),
        ))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
}

impl<C, Q, R> Slot<C, Q, R> for AttemptTimeout {
    type Layer = TimeoutLayer;

    fn validate(&self, context: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        check::non_zero_duration("stack.attempt_timeout", self.0)?;
        if context.overall_timeout.is_some_and(|overall| self.0 > overall) {
            return Err(ConfigError::field(
                "stack.attempt_timeout",
                "must not be longer than the overall timeout",
            ));
        }
        Ok(())
    }

    fn into_layer(self, _: &BuildContext<C, Q, R>) -> Result<TimeoutLayer, ConfigError> {
        Ok(TimeoutLayer::attempt(self.0))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.0)
    }
}

impl<F, C, Q, R> Slot<C, Q, R> for FallbackLayer<F> {
    type Layer = FallbackLayer<F>;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        Ok(())
    }

    fn into_layer(self, _: &BuildContext<C, Q, R>) -> Result<Self, ConfigError> {
        Ok(self)
    }
}

impl RetryConfig {
    /// This config with the stack's timeouts: the overall timeout becomes the
    /// deadline; setting one here and on the stack is refused.
    fn with_context<C, Q, R>(&self, context: &BuildContext<C, Q, R>) -> Result<RetryConfig, ConfigError> {
        let mut config = self.clone();
        if let Some(deadline) = context.overall_timeout {
            if config.overall_timeout.is_some() {
                return Err(ConfigError::field(
                    "retry.overall_timeout",
                    "set either here or as the stack's overall timeout, not both",
                ));
            }
            config.overall_timeout = Some(deadline);
        }
        if context.attempt_timeout.is_some() && config.attempt_timeout.is_some() {
            return Err(ConfigError::field(
                "retry.attempt_timeout",
                "set either here or as the stack's attempt timeout, not both",
            ));
        }
        Ok(config)
    }
}

impl<C: Clone, Q: Clone, R: Clone> Slot<C, Q, R> for RetryConfig {
    type Layer = RetryLayer<C, Q, R>;

    fn validate(&self, context: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        self.with_context(context)?.validate()
    }

    fn into_layer(self, context: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError> {
        let layer = RetryLayer::new(self.with_context(context)?)?
            .classifier(context.classifier.clone())
            .safety(context.safety.clone())
            .replay(context.replay.clone());
        // The attempt timeout sits below the breaker; the retry layer only
        // needs its length to plan attempts against the deadline.
        Ok(match context.attempt_timeout {
            Some(limit) => layer.plan_attempts(limit),
            None => layer,
        })
    }
}

// Over `Clone` requests, and over bodies buffered and rebuilt (the hedge
// then copies buffered bodies); not over `buffer_bodies_raw`, whose inner
// service takes another request type when a request is not hedged.
impl<C: Clone, Q: Clone> Slot<C, Q, CloneRequest> for HedgeConfig {
    type Layer = HedgeLayer<C, Q>;

    fn validate(&self, _: &BuildContext<C, Q, CloneRequest>) -> Result<(), ConfigError> {
        HedgeConfig::validate(self)
    }

    fn into_layer(self, context: &BuildContext<C, Q, CloneRequest>) -> Result<Self::Layer, ConfigError> {
        Ok(HedgeLayer::new(self)?
            .classifier(context.classifier.clone())
            .safety(context.safety.clone()))
    }
}

impl<C: Clone, Q: Clone> Slot<C, Q, RebuildBodies> for HedgeConfig {
    type Layer = HedgeBodiesLayer<C, Q>;

    fn validate(&self, _: &BuildContext<C, Q, RebuildBodies>) -> Result<(), ConfigError> {
        HedgeConfig::validate(self)
    }

    fn into_layer(self, context: &BuildContext<C, Q, RebuildBodies>) -> Result<Self::Layer, ConfigError> {
        Ok(HedgeBodiesLayer {
            hedge: HedgeLayer::new(self)?
                .classifier(context.classifier.clone())
                .safety(BufferedOnly),
            safety: context.safety.clone(),
            buffer: BufferBodies::new(context.replay.max_bytes()),
        })
    }
}

impl<C: Clone, Q, R> Slot<C, Q, R> for BreakerChoice {
    type Layer = CircuitBreakerLayer<C>;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        match self {
            BreakerChoice::Config(config) => config.validate(),
            BreakerChoice::Shared(_) => Ok(()),
        }
    }

    fn into_layer(self, context: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError> {
        let layer = match self {
            BreakerChoice::Config(config) => CircuitBreakerLayer::new(config)?,
            BreakerChoice::Shared(breaker) => CircuitBreakerLayer::shared(breaker),
        };
        Ok(layer.classifier(context.classifier.clone()))
    }

    fn breaker_of(layer: &Self::Layer) -> Option<CircuitBreaker> {
        Some(layer.breaker().clone())
    }
}

impl<C, Q, R> Slot<C, Q, R> for RateLimitConfig {
    type Layer = RateLimitLayer;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        RateLimitConfig::validate(self)
    }

    fn into_layer(self, _: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError> {
        RateLimitLayer::new(self)
    }
}

impl<C, Q, R> Slot<C, Q, R> for BulkheadConfig {
    type Layer = BulkheadLayer;

    fn validate(&self, _: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        BulkheadConfig::validate(self)
    }

    fn into_layer(self, _: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError> {
        BulkheadLayer::new(self)
    }
}

impl<T, C, Q, R> Slot<C, Q, R> for Option<T>
where
    T: Slot<C, Q, R>,
{
    type Layer = OptionalLayer<T::Layer>;

    fn validate(&self, context: &BuildContext<C, Q, R>) -> Result<(), ConfigError> {
        self.as_ref().map_or(Ok(()), |slot| slot.validate(context))
    }

    fn into_layer(self, context: &BuildContext<C, Q, R>) -> Result<Self::Layer, ConfigError> {
        Ok(OptionalLayer(
            self.map(|slot| slot.into_layer(context)).transpose()?,
        ))
    }

    fn is_on(&self) -> bool {
        self.as_ref().is_some_and(T::is_on)
    }

    fn timeout(&self) -> Option<Duration> {
        self.as_ref().and_then(T::timeout)
    }

    fn breaker_of(layer: &Self::Layer) -> Option<CircuitBreaker> {
        layer.0.as_ref().and_then(T::breaker_of)
    }
}
