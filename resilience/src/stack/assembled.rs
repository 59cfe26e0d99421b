//! The shape of a built stack: the same layers, in the same order, whatever
//! the builder enabled.

use tower_layer::{Identity, Stack};

use super::{OptionalLayer, RepeatChoice, SendOnce};
use crate::{BulkheadLayer, CircuitBreakerLayer, RateLimitLayer, TimeoutLayer};

/// The layer chain of a built stack, innermost first, as nested
/// `tower_layer::Stack`s: attempt timeout, bulkhead, rate limit, breaker
/// (each an [`OptionalLayer`], present or not as the builder said), the
/// repeat slot `P` chooses (a [`RepeatLayer`](super::RepeatLayer) for retry
/// or hedging with the overall timeout, or only the overall timeout for a
/// stack that sends once), then the fallback `F` ([`Identity`] when none).
///
/// `C` is the classifier, `Q` the safety rules, `R` how requests are kept
/// for another attempt. The service type depends on these, on the
/// fallback and on whether the stack may repeat, not on which other layers
/// are enabled.
pub type Assembled<C, Q, R, F = Identity, P = SendOnce> = Stack<
    OptionalLayer<TimeoutLayer>,
    Stack<
        OptionalLayer<BulkheadLayer>,
        Stack<
            OptionalLayer<RateLimitLayer>,
            Stack<OptionalLayer<CircuitBreakerLayer<C>>, Stack<<P as RepeatChoice>::Layer<C, Q, R>, F>>,
        >,
    >,
>;
