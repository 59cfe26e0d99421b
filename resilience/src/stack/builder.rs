//! The builder: collects the layers to enable, each in its slot, with the
//! choices the stack makes as a whole (classifier, safety rules, how
//! requests are kept for another attempt).

use std::time::Duration;

use super::{AttemptTimeout, BreakerChoice, Chosen, Off, OverallTimeout, SafetyDefault};
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
    pub(super) classifier: C,
    pub(super) safety: Q,
    pub(super) fallback: Fb,
    pub(super) overall: Ov,
    pub(super) retry: Rt,
    pub(super) hedge: Hd,
    pub(super) breaker: Br,
    pub(super) rate_limit: Rl,
    pub(super) bulkhead: Bh,
    pub(super) attempt: At,
    pub(super) replay: R,
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
    /// uses its safety rules' default (see [`DefaultClassifierOf`](super::DefaultClassifierOf)).
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
    pub fn buffer_bodies(
        self,
        max_bytes: u64,
    ) -> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, RebuildBodies> {
        self.with_replay(RebuildBodies::new(max_bytes))
    }

    /// Like [`buffer_bodies`](Self::buffer_bodies), for bodies that cannot be
    /// rebuilt (hyper's `Incoming`): the services below retry receive
    /// `http::Request<ReplayBody<B>>` (build the client for that body type).
    /// Without retry, they receive the caller's request unchanged. Hedging
    /// cannot be enabled with it (a compile error): a request sent once
    /// would reach the service as another type.
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
