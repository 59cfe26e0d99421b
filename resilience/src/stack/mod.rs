//! Every layer in the recommended order, assembled and validated by one call.
//!
//! The order of resilience layers changes what they mean: a retry outside the
//! breaker stops retrying when the circuit opens, a breaker outside the
//! attempt timeout counts timeouts as failures, a bulkhead inside the breaker
//! keeps an open circuit from queueing calls. [`ResilienceLayer::builder`]
//! puts the layers a user enables in this order, outermost first (Polly v8's
//! recommended pipeline, with Resilience4j's placement of the rate limiter and
//! bulkhead inside the breaker):
//!
//! | # | layer | why there |
//! |---|---|---|
//! | 1 | [fallback](crate::fallback) | sees every error, including the overall timeout |
//! | 2 | overall [timeout](crate::timeout) | bounds the whole call, all attempts and waits included |
//! | 3 | [retry](crate::retry) or [hedging](crate::hedge) | repeats attempts, each through everything below |
//! | 4 | [circuit breaker](crate::breaker) | judges every attempt; when open, nothing below runs |
//! | 5 | [rate limiter](crate::rate_limit) | spends permits only on calls the breaker admits |
//! | 6 | [bulkhead](crate::bulkhead) | caps concurrency of calls that will really be sent |
//! | 7 | attempt [timeout](crate::timeout) | bounds one attempt; the breaker above counts it as a failure |
//!
//! When retry is enabled, the overall timeout is given to the retry layer as
//! its deadline (in place of the separate layer, so one timer bounds the
//! call), and the attempt timeout's length for planning, so it never starts
//! an attempt that cannot finish in time. Set timeouts on the builder, not in the
//! [`RetryConfig`](crate::RetryConfig): setting one in both places is refused. Retry and hedging cannot both be enabled:
//! each repeats requests, and together they multiply load.
//!
//! One classifier (what a result means) and one set of safety rules (which
//! requests may be repeated) are shared by the breaker, retry and hedging,
//! so they agree. Every config is validated by [`ResilienceBuilder::build`];
//! the first bad field is returned, with its path, and no layer is built.
//!
//! The service of the stack requires the inner service to be `Clone` (retry,
//! hedging and the bulkhead each need a fresh ready copy for later work):
//! wrap a non-`Clone` client in `tower::buffer::Buffer`. A tonic `Channel`
//! and a hyper-util `Client` are `Clone` already.
//!
//! The builder records which layers are enabled in its type: a layer that is
//! not enabled is `tower_layer::Identity` and costs nothing, not even a
//! branch, and the service type names each enabled layer once.
//!
//! # HTTP and gRPC
//!
//! Retry keeps a copy of each request for the next attempt, by cloning it.
//! An `http::Request` whose body is a stream (tonic's `Body`, hyper's
//! `Incoming`, boxed bodies) is not `Clone`:
//! [`buffer_bodies`](ResilienceBuilder::buffer_bodies) reads such a body
//! into memory up to a limit and replays it, and the inner service receives
//! the caller's body type again, so a stack fits around a tonic `Channel`
//! as it is. Hedging works over buffered bodies too: a safe request's body
//! is read before the primary attempt and each hedge gets a copy (see
//! [`HedgeBuffer`]); with
//! [`buffer_bodies_raw`](ResilienceBuilder::buffer_bodies_raw) it is
//! refused (a compile error saying so).
//!
//! With the default safety rules ([`HttpSafety`](crate::HttpSafety)), the
//! default classifier is [`ProtocolClassifier`](crate::ProtocolClassifier):
//! HTTP statuses (429, 502, 503 and 504 retryable, other 5xx failures), or
//! the `grpc-status` of gRPC responses (`UNAVAILABLE` retryable), so the
//! breaker and retry agree with the safety rules about what `http` traffic
//! means. [`ResilienceLayer::http`] and [`ResilienceLayer::grpc`] choose
//! classifier, safety and body buffering together.
//!
//! # From configuration
//!
//! [`StackConfig`] is the whole stack as plain `serde` data (timeouts and
//! every layer's config, each optional);
//! [`build_from_config`](ResilienceBuilder::build_from_config) builds it
//! over the builder's classifier, safety and body handling, each layer
//! present or not at run time (an [`OptionalLayer`]: one branch per call).
//!
//! # When it does not compile
//!
//! The traits a stack needs carry diagnostics that name what to choose: a
//! classifier that cannot read the responses ([`Classify`](crate::Classify)),
//! safety rules that cannot judge the requests
//! ([`RequestSafety`](crate::RequestSafety)), safety rules with no default
//! classifier ([`DefaultClassifierOf`]), a body `buffer_bodies` cannot hand
//! back ([`RebuildBody`](crate::retry::RebuildBody)), a layer the stack
//! cannot hold ([`Slot`]). `build` reports them where it is called. A
//! method call on the built service (`oneshot`, `ready`) only says that
//! "its trait bounds were not satisfied"; passing the service where a
//! `Service` is required (a generated client's constructor, a function
//! with a `Service<Req>` bound) shows the message. A streaming body without
//! `buffer_bodies` shows as "`Body: Clone` is not satisfied, required for
//! `CloneRequest` to implement `Replay<..>`": call
//! [`buffer_bodies`](ResilienceBuilder::buffer_bodies).

// The builder is type-state: its types name every slot, and are long by design.
#![allow(clippy::type_complexity)]

mod assembled;
mod builder;
mod choice;
mod config;
mod hedge_bodies;
mod optional;
mod overall;
mod presets;
mod slot;

use tower_layer::{Layer, Stack};

pub use assembled::Assembled;
pub use builder::ResilienceBuilder;
pub use choice::{BodyReplay, Chosen, ClassifierChoice, DefaultClassifierOf, SafetyDefault};
pub use config::{ConfiguredChain, StackConfig};
pub use hedge_bodies::{
    BufferedOnly, HedgeBodiesLayer, HedgeBody, HedgeBuffer, HedgeBufferFuture, UnwrapBody, UnwrapBodyFuture,
};
pub use optional::{Optional, OptionalLayer, future::OptionalFuture};
pub use overall::{OverallTimeoutLayer, OverallTimeoutService, future::OverallTimeoutFuture};
pub use presets::{GRPC_BODY_BUFFER_LIMIT, GrpcBuilder, HttpBuilder};
pub use slot::{AttemptTimeout, BreakerChoice, BuildContext, Off, OverallTimeout, Slot};

use crate::{CircuitBreaker, ConfigError};

// The bounds sit on the method, not the impl, so that a slot that cannot be
// built is reported with its trait's diagnostic rather than as "`build`
// exists but its trait bounds were not satisfied".
impl<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> ResilienceBuilder<C, Q, Fb, Ov, Rt, Hd, Br, Rl, Bh, At, R> {
    /// Validates every enabled layer's config and assembles the stack.
    ///
    /// Errors name the field with the layer's prefix (`retry.max_attempts`,
    /// `breaker.failure_rate_threshold`); the stack's own rules are reported
    /// as `stack.<field>`. Nothing is built unless everything is valid
    /// (building a breaker or a limiter registers its metrics).
    #[allow(clippy::type_complexity)]
    pub fn build(
        self,
    ) -> Result<ResilienceLayer<Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>>, ConfigError>
    where
        C: ClassifierChoice<Q>,
        Fb: Slot<C::Classifier, Q, R>,
        Ov: Slot<C::Classifier, Q, R>,
        Rt: Slot<C::Classifier, Q, R>,
        Hd: Slot<C::Classifier, Q, R>,
        Br: Slot<C::Classifier, Q, R>,
        Rl: Slot<C::Classifier, Q, R>,
        Bh: Slot<C::Classifier, Q, R>,
        At: Slot<C::Classifier, Q, R>,
    {
        let context = BuildContext {
            classifier: self.classifier.into_classifier(),
            safety: self.safety,
            replay: self.replay,
            overall_timeout: self.overall.timeout(),
            attempt_timeout: self.attempt.timeout(),
            retry_holds_deadline: self.retry.is_on(),
        };
        if self.retry.is_on() && self.hedge.is_on() {
            return Err(ConfigError::field(
                "stack.hedge",
                "cannot be combined with retry: both repeat requests; choose one",
            ));
        }
        self.fallback.validate(&context)?;
        self.overall.validate(&context)?;
        self.retry.validate(&context)?;
        self.hedge.validate(&context)?;
        self.breaker.validate(&context)?;
        self.rate_limit.validate(&context)?;
        self.bulkhead.validate(&context)?;
        self.attempt.validate(&context)?;
        let breaker_layer = self.breaker.into_layer(&context)?;
        let breaker = Br::breaker_of(&breaker_layer);
        let chain = Stack::new(
            self.attempt.into_layer(&context)?,
            Stack::new(
                self.bulkhead.into_layer(&context)?,
                Stack::new(
                    self.rate_limit.into_layer(&context)?,
                    Stack::new(
                        breaker_layer,
                        Stack::new(
                            self.hedge.into_layer(&context)?,
                            Stack::new(
                                self.retry.into_layer(&context)?,
                                Stack::new(
                                    self.overall.into_layer(&context)?,
                                    self.fallback.into_layer(&context)?,
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        );
        Ok(ResilienceLayer {
            chain: Assembled { chain },
            breaker,
        })
    }
}

/// The assembled stack: a `tower::Layer` applying every enabled layer in the
/// recommended order (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ResilienceLayer<L> {
    chain: L,
    breaker: Option<CircuitBreaker>,
}

impl<L> ResilienceLayer<L> {
    /// The assembled layers ([`Assembled`] for a built stack).
    pub fn get_ref(&self) -> &L {
        &self.chain
    }

    /// The circuit breaker of the stack, if one is enabled, to read its state
    /// or force it open.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for ResilienceLayer<L> {
    type Service = L::Service;

    fn layer(&self, service: S) -> Self::Service {
        self.chain.layer(service)
    }
}
