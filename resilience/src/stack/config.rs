//! The whole stack as plain data, for services that read their settings from
//! a file or the environment.
//!
//! The builder fixes at compile time what a stack's types are: its
//! classifier, safety rules, body handling and fallback. A [`StackConfig`]
//! decides at run time which of the layers are enabled and how each is set,
//! so one binary serves every environment: it is mapped onto the same
//! layer settings as the builder's setters, validated and built the same
//! way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    BodyReplay, BreakerChoice, Built, ClassifierChoice, MayRepeat, ResilienceBuilder, layers::Layers,
};
use crate::{BulkheadConfig, CircuitBreakerConfig, ConfigError, HedgeConfig, RateLimitConfig, RetryConfig};

/// Every layer of a [`ResilienceLayer`](super::ResilienceLayer) stack, as `serde` data: each absent
/// layer is off, each present one is validated and built by
/// [`ResilienceBuilder::build_from_config`]. Unknown keys are rejected;
/// durations are human-readable (`"250ms"`, `"2s"`).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `overall_timeout` | none | bounds the whole call, all attempts included |
/// | `attempt_timeout` | none | bounds one attempt (inside the breaker, which counts it as a failure); at most `overall_timeout` |
/// | `retry` | off | a [`RetryConfig`]; set timeouts here at the top, not in it |
/// | `hedge` | off | a [`HedgeConfig`]; not with `retry`, nor with `buffer_bodies_raw` |
/// | `breaker` | off | a [`CircuitBreakerConfig`] |
/// | `rate_limit` | off | a [`RateLimitConfig`] |
/// | `bulkhead` | off | a [`BulkheadConfig`] |
/// | `body_buffer_limit` | the builder's | bytes of request body buffered for retries; only for a builder that buffers bodies ([`buffer_bodies`](ResilienceBuilder::buffer_bodies), [`ResilienceLayer::grpc`](super::ResilienceLayer::grpc)) |
///
/// The classifier, the safety rules and how bodies are kept are the
/// builder's (its presets [`ResilienceLayer::http`](super::ResilienceLayer::http) and
/// [`ResilienceLayer::grpc`](super::ResilienceLayer::grpc) choose them), as is a fallback: they are code,
/// not data.
///
/// ```
/// use orch_resilience::{AlwaysSafe, ResilienceLayer, stack::StackConfig};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: StackConfig = serde_json::from_str(r#"{
///     "overall_timeout": "2s",
///     "attempt_timeout": "300ms",
///     "retry": { "max_attempts": 3 },
///     "breaker": { "name": "inventory" }
/// }"#)?;
/// let stack = ResilienceLayer::builder().safety(AlwaysSafe).build_from_config(&config, "resilience")?;
/// let service = stack.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(service.oneshot(21).await?, 42);
///
/// let bad: StackConfig = serde_json::from_str(r#"{ "retry": { "max_attempts": 0 } }"#)?;
/// let err = ResilienceLayer::builder().safety(AlwaysSafe).build_from_config(&bad, "resilience").unwrap_err();
/// assert_eq!(err.field_name(), "resilience.retry.max_attempts");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// Bounds the whole call; none by default.
    #[serde(with = "humantime_serde::option")]
    pub overall_timeout: Option<Duration>,
    /// Bounds each attempt; none by default.
    #[serde(with = "humantime_serde::option")]
    pub attempt_timeout: Option<Duration>,
    /// Retry; off by default.
    pub retry: Option<RetryConfig>,
    /// Hedging; off by default.
    pub hedge: Option<HedgeConfig>,
    /// The circuit breaker; off by default.
    pub breaker: Option<CircuitBreakerConfig>,
    /// The rate limit; off by default.
    pub rate_limit: Option<RateLimitConfig>,
    /// The bulkhead; off by default.
    pub bulkhead: Option<BulkheadConfig>,
    /// Request body bytes buffered for retries; the builder's limit by default.
    pub body_buffer_limit: Option<u64>,
}

impl<C, Q, R, F, P> ResilienceBuilder<C, Q, R, F, P> {
    /// Builds the stack `config` describes over this builder's classifier,
    /// safety rules, body handling and fallback. Layers are in the order of
    /// the [module docs](super), each present or not as the config says;
    /// the stack is the same type as [`build`](Self::build)'s for a builder
    /// with retry or hedging ([`MayRepeat`]), whatever the config enables,
    /// so its requests must be ones retry could repeat.
    ///
    /// Every layer comes from the config: a builder with a layer already
    /// set is refused (the error names the first such layer, for example
    /// `resilience.retry`), rather than one silently overriding the other.
    ///
    /// Errors name the field's path in the configuration, under `path`
    /// (where the config sits in the service's configuration tree; `""` for
    /// the root): `resilience.retry.max_attempts`,
    /// `resilience.attempt_timeout`. Rules of the stack as a whole name
    /// their field too: `hedge` with `retry` or with `buffer_bodies_raw`,
    /// `body_buffer_limit` on a builder that clones requests.
    pub fn build_from_config(self, config: &StackConfig, path: &str) -> Built<C, Q, R, F, MayRepeat>
    where
        C: ClassifierChoice<Q>,
        Q: Clone,
        R: BodyReplay,
    {
        // The config may enable retry or hedging at run time, so the stack
        // is one that may repeat, whatever this config says.
        self.may_repeat()
            .configured(config)
            .and_then(ResilienceBuilder::build)
            .map_err(|error| at_path(error, path))
    }

    /// This builder with the config's layers and body buffer limit.
    fn configured(mut self, config: &StackConfig) -> Result<Self, ConfigError>
    where
        R: BodyReplay,
    {
        if let Some(field) = self.layers.first_set() {
            return Err(ConfigError::field(
                field,
                "already set on the builder; `build_from_config` takes every layer from the config",
            ));
        }
        self.replay = match config.body_buffer_limit {
            None => self.replay,
            Some(0) => return Err(ConfigError::field("body_buffer_limit", "must be greater than zero")),
            Some(limit) => self.replay.with_buffer_limit(limit).ok_or(ConfigError::field(
                "body_buffer_limit",
                "this stack clones requests and buffers no body; build it with `buffer_bodies` or `ResilienceLayer::grpc`",
            ))?,
        };
        self.layers = Layers {
            overall_timeout: config.overall_timeout,
            retry: config.retry.clone(),
            hedge: config.hedge.clone(),
            breaker: config.breaker.clone().map(BreakerChoice::Config),
            rate_limit: config.rate_limit.clone(),
            bulkhead: config.bulkhead.clone(),
            attempt_timeout: config.attempt_timeout,
        };
        Ok(self)
    }
}
/// `error` with its field named as in a [`StackConfig`] at `path`: the
/// stack's own rules (`stack.attempt_timeout`) are fields of the config.
fn at_path(error: ConfigError, path: &str) -> ConfigError {
    let field = error.field_name();
    let unprefixed = field.strip_prefix("stack.").unwrap_or(field).to_owned();
    let error = match error {
        ConfigError::InvalidField { reason, .. } => ConfigError::field(unprefixed, reason),
    };
    if path.is_empty() {
        error
    } else {
        error.within(path)
    }
}
