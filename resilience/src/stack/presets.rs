//! Starting points of a stack: the plain builder, and presets for HTTP and
//! gRPC clients that choose classifier, safety rules and body handling
//! together, so that retry, hedging and the breaker agree on what the
//! traffic means.

use tower_layer::Identity;

use super::{Chosen, ResilienceBuilder, ResilienceLayer, SafetyDefault, SendOnce, layers::Layers};
use crate::{
    GrpcClassifier, HttpClassifier, HttpSafety,
    retry::{CloneRequest, RebuildBodies},
};

/// The body buffer of [`ResilienceLayer::grpc`]: 1 MiB per call, grpc-java's
/// default per-RPC retry buffer limit. A larger request is sent once and not
/// retried.
pub const GRPC_BODY_BUFFER_LIMIT: u64 = 1 << 20;

/// The builder [`ResilienceLayer::http`] returns.
pub type HttpBuilder = ResilienceBuilder<Chosen<HttpClassifier>, HttpSafety>;

/// The builder [`ResilienceLayer::grpc`] returns.
pub type GrpcBuilder<Q> = ResilienceBuilder<Chosen<GrpcClassifier>, Q, RebuildBodies>;

impl ResilienceLayer<Identity> {
    /// Starts a stack with no layer enabled, [`HttpSafety`] and the safety
    /// rules' default classifier ([`ProtocolClassifier`](crate::ProtocolClassifier)
    /// for `HttpSafety`; see [`DefaultClassifierOf`](super::DefaultClassifierOf)).
    pub fn builder() -> ResilienceBuilder {
        ResilienceBuilder {
            classifier: SafetyDefault,
            safety: HttpSafety::default(),
            replay: CloneRequest,
            fallback: Identity::new(),
            layers: Layers::default(),
            repeat: SendOnce,
        }
    }

    /// Starts a stack for HTTP clients (hyper, reqwest-style services over
    /// `http` types), with no layer enabled yet:
    ///
    /// | choice | picked | why |
    /// |---|---|---|
    /// | classifier | [`HttpClassifier`] | 429, 502, 503, 504 retryable, other 5xx count against the breaker, `Retry-After` honoured |
    /// | safety | [`HttpSafety`] | idempotent methods (RFC 9110) and requests with an `Idempotency-Key` are retried; a `POST` without one is sent once |
    /// | bodies | cloned | the usual client bodies (`Full<Bytes>`, `String`) are `Clone`; for streams call [`buffer_bodies`](ResilienceBuilder::buffer_bodies) |
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_resilience::{CircuitBreakerConfig, ResilienceLayer, RetryConfig};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = ResilienceLayer::http()
    ///     .overall_timeout(Duration::from_secs(2))
    ///     .retry(RetryConfig::default())
    ///     .circuit_breaker(CircuitBreakerConfig::default().name("orders"))
    ///     .attempt_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// let client = service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new("ok"))
    /// });
    /// let request = http::Request::get("http://orders/1").body(String::new())?;
    /// assert_eq!(*stack.layer(client).oneshot(request).await?.body(), "ok");
    /// # Ok(()) }
    /// ```
    pub fn http() -> HttpBuilder {
        Self::builder().classifier(HttpClassifier::default())
    }

    /// Starts a stack for gRPC clients (a tonic `Channel`, or any
    /// `Service<http::Request<tonic::body::Body>>`), with no layer enabled yet:
    ///
    /// | choice | picked | why |
    /// |---|---|---|
    /// | classifier | [`GrpcClassifier`] | `UNAVAILABLE` retryable; `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `DATA_LOSS` count against the breaker; `grpc-retry-pushback-ms` honoured (gRFC A6) |
    /// | safety | `safety`, the caller's | every gRPC call is a `POST`: only the caller knows which methods may run twice (`AlwaysSafe`, `safety_fn` over the path, or `HttpSafety` for calls carrying an `idempotency-key`) |
    /// | bodies | buffered up to [`GRPC_BODY_BUFFER_LIMIT`] and rebuilt | tonic's request bodies are streams; the `Channel` gets `tonic::body::Body` back (feature `tonic`) |
    ///
    /// Hedging may be enabled instead of retry: safe requests' bodies are
    /// buffered before the primary attempt and copied for each hedge.
    /// Change the limit with [`buffer_bodies`](ResilienceBuilder::buffer_bodies).
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_resilience::{AlwaysSafe, ResilienceLayer, RetryConfig};
    ///
    /// // Every method of this service is a read: all may be retried.
    /// let stack = ResilienceLayer::grpc(AlwaysSafe)
    ///     .overall_timeout(Duration::from_secs(2))
    ///     .retry(RetryConfig::default())
    ///     .build();
    /// assert!(stack.is_ok());
    /// ```
    pub fn grpc<Q>(safety: Q) -> GrpcBuilder<Q> {
        Self::builder()
            .classifier(GrpcClassifier::default())
            .safety(safety)
            .buffer_bodies(GRPC_BODY_BUFFER_LIMIT)
    }
}
