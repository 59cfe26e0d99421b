//! Resilience middleware for `tower`: retry with budgets, circuit breaker,
//! timeout, bulkhead, rate limit, hedging and fallback.
//!
//! Every layer is a `tower::Layer` whose service returns one error type,
//! [`ResilienceError`], so layers compose without nesting error types. What a
//! result means (success, retryable failure, failure, local rejection) is
//! decided by one [`Classify`] shared by the breaker, retry and hedging, and
//! which requests may be repeated by a [`RequestSafety`].
#![forbid(unsafe_code)]

mod classify;
mod config;
mod error;
mod safety;

pub use classify::{
    Classify, ClassifyFn, DefaultClassifier, GrpcClassifier, GrpcCode, HttpClassifier, Outcome, Pushback,
    classify_error, classify_fn, grpc_pushback, grpc_status, retry_after,
};
pub use config::ConfigError;
pub use error::{BoxError, CircuitRejection, ErrorClass, NotRetriedReason, ResilienceError, TimeoutKind};
pub use safety::{
    AlwaysSafe, HttpSafety, IDEMPOTENCY_KEY, RequestSafety, SafetyFn, is_idempotent_method, safety_fn,
};

// Circuit breaker: the module (for its docs) and its main types at the root.
pub mod breaker;
pub use breaker::{
    BreakerMetrics, BreakerPermit, BreakerRegistry, BreakerState, CircuitBreaker, CircuitBreakerConfig,
    CircuitBreakerLayer, CircuitBreakerService, OwnedBreakerPermit, SlidingWindow,
};
