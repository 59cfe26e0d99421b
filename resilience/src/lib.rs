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
//! | all of them, in order | [`stack`] | as above |
#![forbid(unsafe_code)]

mod classify;
mod clock;
mod config;
mod deadline;
mod error;
mod intern;
mod label;
mod safety;
mod shard;

pub mod breaker;
pub mod bulkhead;
pub mod fallback;
pub mod hedge;
pub mod rate_limit;
pub mod retry;
pub mod stack;
pub mod timeout;

pub use breaker::{
    BreakerMetrics, BreakerPermit, BreakerRegistry, BreakerState, CircuitBreaker, CircuitBreakerConfig,
    CircuitBreakerLayer, CircuitBreakerService, OwnedBreakerPermit, SlidingWindow,
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
pub use stack::{ResilienceBuilder, ResilienceLayer};
pub use timeout::{Timeout, TimeoutConfig, TimeoutLayer};
