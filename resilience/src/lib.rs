//! Tower resilience layers (retry with budgets, circuit breaker, timeout, bulkhead, rate limit, hedging) and idempotency-key stores; not yet built.
#![forbid(unsafe_code)]
