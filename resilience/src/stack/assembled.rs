//! The shape of a built stack: the same layers, in the same order, whatever
//! the builder enabled.

use tower_layer::{Identity, Stack};

use super::{OptionalLayer, repeat::RepeatLayer};
use crate::{BulkheadLayer, CircuitBreakerLayer, RateLimitLayer, TimeoutLayer};

/// The layer chain of a built stack, innermost first, as nested
/// `tower_layer::Stack`s: attempt timeout, bulkhead, rate limit, breaker
/// (each an [`OptionalLayer`], present or not as the builder said), the
/// [`RepeatLayer`] (retry or hedging, and the overall timeout), then the
/// fallback `F` ([`Identity`] when none).
///
/// `C` is the classifier, `Q` the safety rules, `R` how requests are kept
/// for another attempt. The service type depends on these and on the
/// fallback, not on which layers are enabled.
pub type Assembled<C, Q, R, F = Identity> = Stack<
    OptionalLayer<TimeoutLayer>,
    Stack<
        OptionalLayer<BulkheadLayer>,
        Stack<
            OptionalLayer<RateLimitLayer>,
            Stack<OptionalLayer<CircuitBreakerLayer<C>>, Stack<RepeatLayer<C, Q, R>, F>>,
        >,
    >,
>;
