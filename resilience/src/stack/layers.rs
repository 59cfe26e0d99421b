//! The layers a builder enables, as plain data: what the setters fill in,
//! and what `build` validates, in stack order, and then assembles.
//!
//! Each layer is an `Option`; only `retry` and `hedge` change the
//! builder's type (see [`RepeatChoice`]). The stack built from them has
//! one shape whatever is enabled (see [`Assembled`]): a layer left out is
//! a branch that calls the inner service directly.

use std::time::Duration;

use tower_layer::Stack;

use super::{
    Assembled, BodyReplay, OptionalLayer, RepeatChoice, ResilienceLayer, choice::no_hedge, repeat::RepeatKind,
};
use crate::{
    BulkheadConfig, BulkheadLayer, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ConfigError,
    HedgeConfig, RateLimitConfig, RateLimitLayer, RetryConfig, RetryLayer, TimeoutLayer, config::check,
};

/// What [`Layers::assemble`] returns: the stack over the classifier `C`.
type Assembly<C, Q, R, F, P> = Result<ResilienceLayer<Assembled<C, Q, R, F, P>>, ConfigError>;

/// The breaker of a stack: a config (validated at build) or a shared breaker.
#[derive(Debug, Clone)]
pub enum BreakerChoice {
    /// A new breaker from this config.
    Config(CircuitBreakerConfig),
    /// An existing breaker, shared.
    Shared(CircuitBreaker),
}

/// Every layer of a stack but the fallback, each off until set.
#[derive(Debug, Clone, Default)]
pub(super) struct Layers {
    pub(super) overall_timeout: Option<Duration>,
    pub(super) retry: Option<RetryConfig>,
    pub(super) hedge: Option<HedgeConfig>,
    pub(super) breaker: Option<BreakerChoice>,
    pub(super) rate_limit: Option<RateLimitConfig>,
    pub(super) bulkhead: Option<BulkheadConfig>,
    pub(super) attempt_timeout: Option<Duration>,
}

impl Layers {
    /// The first layer that is set, in stack order, by its field's name.
    pub(super) fn first_set(&self) -> Option<&'static str> {
        [
            ("overall_timeout", self.overall_timeout.is_some()),
            ("retry", self.retry.is_some()),
            ("hedge", self.hedge.is_some()),
            ("breaker", self.breaker.is_some()),
            ("rate_limit", self.rate_limit.is_some()),
            ("bulkhead", self.bulkhead.is_some()),
            ("attempt_timeout", self.attempt_timeout.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// Checks every layer, outermost first, building nothing: the first bad
    /// field is the error.
    pub(super) fn validate<R: BodyReplay>(&self, replay: &R) -> Result<(), ConfigError> {
        if self.retry.is_some() && self.hedge.is_some() {
            return Err(ConfigError::field(
                "stack.hedge",
                "cannot be combined with retry: both repeat requests; choose one",
            ));
        }
        if self.hedge.is_some() && !replay.can_hedge() {
            return Err(no_hedge());
        }
        if let Some(overall) = self.overall_timeout {
            check::non_zero_duration("stack.overall_timeout", overall)?;
        }
        if let Some(retry) = &self.retry {
            self.retry_config(retry)?.validate()?;
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate()?;
        }
        if let Some(BreakerChoice::Config(breaker)) = &self.breaker {
            breaker.validate()?;
        }
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.validate()?;
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.validate()?;
        }
        if let Some(attempt) = self.attempt_timeout {
            check::non_zero_duration("stack.attempt_timeout", attempt)?;
            if self.overall_timeout.is_some_and(|overall| attempt > overall) {
                return Err(ConfigError::field(
                    "stack.attempt_timeout",
                    "must not be longer than the overall timeout",
                ));
            }
        }
        Ok(())
    }

    /// The retry config with the stack's timeouts: the overall timeout
    /// becomes the deadline; setting one here and on the stack is refused.
    fn retry_config(&self, retry: &RetryConfig) -> Result<RetryConfig, ConfigError> {
        let mut config = retry.clone();
        if let Some(deadline) = self.overall_timeout {
            if config.overall_timeout.is_some() {
                return Err(ConfigError::field(
                    "retry.overall_timeout",
                    "set either here or as the stack's overall timeout, not both",
                ));
            }
            config.overall_timeout = Some(deadline);
        }
        if self.attempt_timeout.is_some() && config.attempt_timeout.is_some() {
            return Err(ConfigError::field(
                "retry.attempt_timeout",
                "set either here or as the stack's attempt timeout, not both",
            ));
        }
        Ok(config)
    }

    /// Builds every layer; call only after [`validate`](Self::validate).
    pub(super) fn assemble<C: Clone, Q: Clone, R: BodyReplay, F, P: RepeatChoice>(
        self,
        classifier: C,
        safety: Q,
        replay: R,
        fallback: F,
    ) -> Assembly<C, Q, R, F, P> {
        let repeat = match (&self.retry, self.hedge.clone()) {
            (Some(retry), _) => {
                let layer = RetryLayer::new(self.retry_config(retry)?)?
                    .classifier(classifier.clone())
                    .safety(safety)
                    .replay(replay.clone());
                // The attempt timeout sits below the breaker; the retry
                // layer only needs its length to plan attempts.
                RepeatKind::Retry(match self.attempt_timeout {
                    Some(limit) => layer.plan_attempts(limit),
                    None => layer,
                })
            }
            (None, Some(hedge)) => RepeatKind::Hedge {
                hedge: replay.hedge_layer(hedge, classifier.clone(), safety)?,
                overall: self.overall_timeout.map(TimeoutLayer::overall),
            },
            (None, None) => match self.overall_timeout {
                Some(overall) => RepeatKind::Overall(TimeoutLayer::overall(overall)),
                None => RepeatKind::Once,
            },
        };
        let breaker = match self.breaker {
            Some(BreakerChoice::Config(config)) => Some(CircuitBreakerLayer::new(config)?),
            Some(BreakerChoice::Shared(breaker)) => Some(CircuitBreakerLayer::shared(breaker)),
            None => None,
        }
        .map(|layer| layer.classifier(classifier));
        let shared_breaker = breaker.as_ref().map(|layer| layer.breaker().clone());
        let chain = Stack::new(
            OptionalLayer(self.attempt_timeout.map(TimeoutLayer::attempt)),
            Stack::new(
                OptionalLayer(self.bulkhead.map(BulkheadLayer::new).transpose()?),
                Stack::new(
                    OptionalLayer(self.rate_limit.map(RateLimitLayer::new).transpose()?),
                    Stack::new(
                        OptionalLayer(breaker),
                        Stack::new(P::slot(repeat, replay)?, fallback),
                    ),
                ),
            ),
        );
        Ok(ResilienceLayer {
            chain,
            breaker: shared_breaker,
        })
    }
}
