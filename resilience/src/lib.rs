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

// Limits: timeout, bulkhead, rate limit, fallback.
pub mod bulkhead;
pub mod fallback;
pub mod rate_limit;
pub mod timeout;
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer};
pub use fallback::{ErrorClasses, Fallback, FallbackConfig, FallbackFn, FallbackLayer, FallbackValue};
pub use rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer, RateLimiter};
pub use timeout::{Timeout, TimeoutConfig, TimeoutLayer};

pub use classify::{
    Classify, ClassifyFn, DefaultClassifier, GrpcClassifier, GrpcCode, HttpClassifier, Outcome, Pushback,
    classify_error, classify_fn, grpc_pushback, grpc_status, retry_after,
};
pub use config::ConfigError;
pub use error::{BoxError, CircuitRejection, ErrorClass, NotRetriedReason, ResilienceError, TimeoutKind};
pub use safety::{
    AlwaysSafe, HttpSafety, IDEMPOTENCY_KEY, RequestSafety, SafetyFn, is_idempotent_method, safety_fn,
};

pub mod hedge;
pub use hedge::{Hedge, HedgeConfig, HedgeDelay, HedgeLayer, LatencyTracker};
// Retry with backoff, deadlines, pushback, budgets and replayable bodies.
pub mod retry;
pub use retry::{
    ReplayBody, Retry, RetryBudget, RetryBudgetConfig, RetryConfig, RetryLayer, RetryThrottle,
    RetryThrottleConfig,
};
