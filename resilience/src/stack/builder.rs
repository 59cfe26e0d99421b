//! The builder: collects the layers to enable, as plain data, with the
//! choices the stack makes as a whole (classifier, safety rules, how
//! requests are kept for another attempt, the fallback), which are types.

use std::time::Duration;

use tower_layer::Identity;

use super::{BreakerChoice, Chosen, MayRepeat, SafetyDefault, SendOnce, layers::Layers};
use crate::{
    BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, ErrorClasses, FallbackLayer, HedgeConfig,
    HttpSafety, RateLimitConfig, RetryConfig,
    retry::{BufferBodies, CloneRequest, RebuildBodies},
};

/// Collects the layers to enable; [`build`](Self::build) validates them all
/// and assembles a [`ResilienceLayer`](super::ResilienceLayer).
///
/// `C` is the classifier shared by breaker, retry and hedging (default
/// [`SafetyDefault`]: the safety rules' own, [`ProtocolClassifier`](crate::ProtocolClassifier)
/// under [`HttpSafety`], [`DefaultClassifier`](crate::DefaultClassifier)
/// under `AlwaysSafe` or `safety_fn`), `Q` the request safety rules of retry
/// and hedging (default [`HttpSafety`]: a stack over non-HTTP types needs
/// [`safety`](Self::safety) or [`classifier`](Self::classifier)). `R` is
/// how retry keeps requests for another attempt: [`CloneRequest`] until
/// [`buffer_bodies`](Self::buffer_bodies). `F` is the fallback layer,
/// [`Identity`] until [`fallback`](Self::fallback). `P` says whether the
/// stack may repeat requests: [`SendOnce`] until [`retry`](Self::retry) or
/// [`hedge`](Self::hedge) make it [`MayRepeat`] (see
/// [`RepeatChoice`](super::RepeatChoice): a stack that sends once takes
/// requests that cannot be repeated). The other layers are settings, not
/// types: each setter records one and returns the same builder, and
/// setting a layer again replaces it.
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
pub struct ResilienceBuilder<C = SafetyDefault, Q = HttpSafety, R = CloneRequest, F = Identity, P = SendOnce>
{
    pub(super) classifier: C,
    pub(super) safety: Q,
    pub(super) replay: R,
    pub(super) fallback: F,
    pub(super) layers: Layers,
    pub(super) repeat: P,
}

impl<C, Q, R, F, P> ResilienceBuilder<C, Q, R, F, P> {
    /// Answers errors of the given classes with `fallback` (outermost layer).
    pub fn fallback<G>(
        self,
        on: impl Into<ErrorClasses>,
        fallback: G,
    ) -> ResilienceBuilder<C, Q, R, FallbackLayer<G>, P> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            replay: self.replay,
            fallback: FallbackLayer::new(fallback).on(on),
            layers: self.layers,
            repeat: self.repeat,
        }
    }

    /// Bounds the whole call, all attempts included
    /// ([`TimeoutKind::Overall`](crate::TimeoutKind::Overall)).
    pub fn overall_timeout(mut self, timeout: Duration) -> Self {
        self.layers.overall_timeout = Some(timeout);
        self
    }

    /// Retries retryable failures of safe requests. The stack may then
    /// repeat requests ([`MayRepeat`]): they must be `Clone`, or their
    /// bodies kept by [`buffer_bodies`](Self::buffer_bodies).
    pub fn retry(self, config: RetryConfig) -> ResilienceBuilder<C, Q, R, F, MayRepeat> {
        let mut builder = self.may_repeat();
        builder.layers.retry = Some(config);
        builder
    }

    /// Hedges slow safe requests (instead of retrying them: `build` refuses
    /// both). Like [`retry`](Self::retry), makes the stack [`MayRepeat`].
    pub fn hedge(self, config: HedgeConfig) -> ResilienceBuilder<C, Q, R, F, MayRepeat> {
        let mut builder = self.may_repeat();
        builder.layers.hedge = Some(config);
        builder
    }

    /// The same builder, as one whose stack may repeat requests.
    pub(super) fn may_repeat(self) -> ResilienceBuilder<C, Q, R, F, MayRepeat> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            replay: self.replay,
            fallback: self.fallback,
            layers: self.layers,
            repeat: MayRepeat,
        }
    }

    /// A circuit breaker built from `config`.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.layers.breaker = Some(BreakerChoice::Config(config));
        self
    }

    /// An existing breaker, shared with every other user of it (for example
    /// one from a [`BreakerRegistry`](crate::BreakerRegistry)).
    pub fn shared_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.layers.breaker = Some(BreakerChoice::Shared(breaker));
        self
    }

    /// A GCRA rate limit shared by all clones of the service.
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.layers.rate_limit = Some(config);
        self
    }

    /// A bulkhead shared by all clones of the service.
    pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.layers.bulkhead = Some(config);
        self
    }

    /// Bounds each attempt ([`TimeoutKind::Attempt`](crate::TimeoutKind::Attempt));
    /// inside the breaker, so a timed-out attempt counts as a failure.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.layers.attempt_timeout = Some(timeout);
        self
    }

    /// The classifier of breaker, retry and hedging. Without one, the stack
    /// uses its safety rules' default (see [`DefaultClassifierOf`](super::DefaultClassifierOf)).
    pub fn classifier<C2>(self, classifier: C2) -> ResilienceBuilder<Chosen<C2>, Q, R, F, P> {
        ResilienceBuilder {
            classifier: Chosen(classifier),
            safety: self.safety,
            replay: self.replay,
            fallback: self.fallback,
            layers: self.layers,
            repeat: self.repeat,
        }
    }

    /// The rules saying which requests retry and hedging may repeat.
    pub fn safety<Q2>(self, safety: Q2) -> ResilienceBuilder<C, Q2, R, F, P> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety,
            replay: self.replay,
            fallback: self.fallback,
            layers: self.layers,
            repeat: self.repeat,
        }
    }

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
    /// Without retry or hedging, nothing is buffered. With hedging, a safe
    /// request's body is read before the primary attempt and each hedge
    /// sends a copy; an unsafe request or a body over the limit is sent
    /// once and not hedged ([`HedgeBuffer`](super::HedgeBuffer)).
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
    pub fn buffer_bodies(self, max_bytes: u64) -> ResilienceBuilder<C, Q, RebuildBodies, F, P> {
        self.with_replay(RebuildBodies::new(max_bytes))
    }

    /// Like [`buffer_bodies`](Self::buffer_bodies), for bodies that cannot be
    /// rebuilt (hyper's `Incoming`): the services below the retry slot
    /// receive `http::Request<ReplayBody<B>>` (build the client for that
    /// body type), with retry or without (then the body is handed on
    /// unbuffered). Hedging cannot be enabled with it: `build` returns a
    /// `ConfigError` for `stack.hedge`.
    pub fn buffer_bodies_raw(self, max_bytes: u64) -> ResilienceBuilder<C, Q, BufferBodies, F, P> {
        self.with_replay(BufferBodies::new(max_bytes))
    }

    fn with_replay<R2>(self, replay: R2) -> ResilienceBuilder<C, Q, R2, F, P> {
        ResilienceBuilder {
            classifier: self.classifier,
            safety: self.safety,
            replay,
            fallback: self.fallback,
            layers: self.layers,
            repeat: self.repeat,
        }
    }
}
