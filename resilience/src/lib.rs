//! Resilience middleware for `tower`: retry with budgets, circuit breaker,
//! timeout, bulkhead, rate limit, hedging and fallback, each usable alone or
//! assembled in the recommended order by [`ResilienceLayer::builder`].
//!
//! Every layer is a `tower::Layer` whose service returns one error type,
//! [`ResilienceError`], so layers compose without nesting error types. What a
//! result means (success, retryable failure, failure, local rejection) is
//! decided by one [`Classify`] shared by the breaker, retry and hedging, and
//! which requests may be repeated by a [`RequestSafety`]. Every config is a
//! plain `serde` struct, validated when its layer is built: a bad value is a
//! [`ConfigError`] naming the field.
//!
//! | layer | module | state shared by clones |
//! |---|---|---|
//! | retry with budgets, pushback, body replay | [`retry`] | budget, throttle |
//! | circuit breaker, registry | [`breaker`] | the breaker |
//! | timeout (attempt, overall) | [`timeout`] | none |
//! | bulkhead | [`bulkhead`] | slots and queue |
//! | rate limit (GCRA) | [`rate_limit`] | the limiter |
//! | hedging | [`hedge`] | latency tracker |
//! | fallback | [`fallback`] | none |
//! | idempotency keys on the server: stores, HTTP and gRPC layers | [`idempotency`] | the store |
//! | all of them, in order | [`stack`] | as above |
//! | fault injection for chaos tests | [`chaos`] | the seeded draws |
//!
//! The [`idempotency`] module is the server side of idempotency keys: the
//! store that lets a keyed request run once.
//!
//! # HTTP and gRPC clients
//!
//! Over `http` types the stack's defaults agree: [`HttpSafety`] decides what
//! may be repeated and [`ProtocolClassifier`] what a response means (HTTP
//! statuses, or `grpc-status` for gRPC). [`ResilienceLayer::http`] and
//! [`ResilienceLayer::grpc`] choose classifier, safety rules and body
//! handling together; [`ResilienceBuilder::buffer_bodies`] lets retry and
//! hedging repeat requests whose bodies are streams (tonic's, boxed
//! bodies), so a stack
//! wraps a tonic `Channel` or a hyper client as it is:
//!
//! ```
//! # #[cfg(feature = "tonic")] fn main() -> Result<(), orch_resilience::ConfigError> {
//! use std::time::Duration;
//! use orch_resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
//! use tower::{Layer, Service};
//!
//! fn grpc_client<S>(channel: S) -> Result<impl Service<http::Request<tonic::body::Body>> + Clone, orch_resilience::ConfigError>
//! where
//!     S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
//!     S::Error: Into<orch_resilience::BoxError>,
//!     S::Future: Send,
//! {
//!     let stack = ResilienceLayer::grpc(AlwaysSafe) // every method of this service is a read
//!         .overall_timeout(Duration::from_secs(2))
//!         .retry(RetryConfig::default())
//!         .circuit_breaker(CircuitBreakerConfig::default().name("inventory"))
//!         .attempt_timeout(Duration::from_millis(500))
//!         .build()?;
//!     // `InventoryClient::new(stack.layer(channel))` with a generated client.
//!     Ok(stack.layer(channel))
//! }
//! # Ok(()) }
//! # #[cfg(not(feature = "tonic"))] fn main() {}
//! ```
//!
//! Retry and hedging need to know what the traffic is; a wrong or missing
//! choice is a compile error that names what to pick (a classifier that
//! cannot read the responses, safety rules that cannot judge the requests,
//! a body that cannot be replayed); hedging over `buffer_bodies_raw` is a
//! `ConfigError` from `build`.
//!
//! # Configuration
//!
//! [`StackConfig`] is the whole stack as `serde` data, built by
//! [`ResilienceBuilder::build_from_config`]; errors name the field's path
//! (`resilience.retry.max_attempts`) and unknown keys are rejected.
//!
//! # Features
//!
//! - `tonic`: replay `tonic::body::Body` request bodies
//!   ([`retry::RebuildBody`]), for the `grpc` preset over a tonic `Channel`;
//!   the gRPC idempotency layer (`idempotency::grpc`).
#![forbid(unsafe_code)]

mod classify;
mod clock;
mod config;
mod deadline;
mod error;
mod label;
mod safety;
mod shard;

pub mod breaker;
pub mod bulkhead;
pub mod chaos;
pub mod fallback;
pub mod hedge;
pub mod idempotency;
pub mod rate_limit;
pub mod retry;
pub mod stack;
pub mod timeout;

pub use breaker::{
    BreakerMetrics, BreakerPermit, BreakerRegistry, BreakerState, BreakerTransition, CircuitBreaker,
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerService, OwnedBreakerPermit, SlidingWindow,
};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer};
pub use classify::{
    Classify, ClassifyFn, DefaultClassifier, GrpcClassifier, GrpcCode, HttpClassifier, Outcome,
    ProtocolClassifier, Pushback, classify_error, classify_fn, grpc_pushback, grpc_status, retry_after,
};
pub use clock::ClockSource;
pub use config::ConfigError;
pub use error::{BoxError, CircuitRejection, ErrorClass, NotRetriedReason, ResilienceError, TimeoutKind};
pub use fallback::{ErrorClasses, Fallback, FallbackConfig, FallbackFn, FallbackLayer, FallbackValue};
pub use hedge::{Hedge, HedgeConfig, HedgeDelay, HedgeLayer, LatencyTracker};
pub use rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer, RateLimiter};
pub use retry::{
    ReplayBody, Retry, RetryBudget, RetryBudgetConfig, RetryConfig, RetryLayer, RetryThrottle,
    RetryThrottleConfig,
};
pub use safety::{
    AlwaysSafe, HttpSafety, IDEMPOTENCY_KEY, RequestSafety, SafetyFn, is_idempotent_method, safety_fn,
};
pub use stack::{ResilienceBuilder, ResilienceLayer, StackConfig};
pub use timeout::{Timeout, TimeoutConfig, TimeoutLayer};
