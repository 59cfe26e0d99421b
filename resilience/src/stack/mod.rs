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
//! The builder records the layers as settings, not types: each setter
//! returns the same builder, and the built stack has one shape whatever is
//! enabled ([`Assembled`]), its types named by the classifier, the safety
//! rules, how requests are kept ([`BodyReplay`]), the fallback, and
//! whether the stack may repeat requests ([`RepeatChoice`]: `retry` and
//! `hedge` turn the builder from [`SendOnce`] into [`MayRepeat`], the one
//! type change a layer makes). A layer that is not enabled costs one
//! branch per call and per `poll_ready` (an [`OptionalLayer`] calling the
//! inner service directly), and its variant's room in the response
//! future. In a stack that may repeat, retry or hedging and the overall
//! timeout share one slot ([`RepeatLayer`]), so a stack with retry runs no
//! separate overall-timeout layer at all; a stack that sends once holds
//! only the overall timeout there, and takes requests it could not repeat. Measured (benches/README.md,
//! "Instructions per call"), a stack of retry, breaker and attempt timeout
//! around an HTTP/1.1 client costs about 800 instructions a call more than
//! when the builder named each layer in its type, mostly in moving a
//! larger service and future and in the layers left out; its response
//! future is 1,240 bytes (1,048 before), and a stack from a
//! [`StackConfig`] is now the same stack (2,416 bytes before).
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
//! refused by `build` (`stack.hedge`). A stack without retry or hedging
//! ([`SendOnce`]) takes any request and hands it on as it is; a stack that
//! may repeat needs requests it can repeat (`Clone`, or a body kept by
//! `buffer_bodies`), also when it was built from a [`StackConfig`] that
//! enables neither, and under `buffer_bodies_raw` its inner service
//! receives `ReplayBody`s with retry or without.
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
//! over the builder's classifier, safety and body handling: it fills in the
//! same layer settings as the builder's setters (a builder that already
//! has a layer set is refused), so the stack is the one `build` makes.
//!
//! # When it does not compile
//!
//! The traits a stack needs carry diagnostics that name what to choose: a
//! classifier that cannot read the responses ([`Classify`](crate::Classify)),
//! safety rules that cannot judge the requests
//! ([`RequestSafety`](crate::RequestSafety)), safety rules with no default
//! classifier ([`DefaultClassifierOf`]), a body `buffer_bodies` cannot hand
//! back ([`RebuildBody`](crate::retry::RebuildBody)), a request that
//! cannot be repeated ([`Replay`](crate::retry::Replay)). `build` reports
//! a missing classifier where it is called; the others show where the
//! service is used, since only then is the request type known. A method call on the built service (`oneshot`, `ready`) only says that
//! "its trait bounds were not satisfied"; passing the service where a
//! `Service` is required (a generated client's constructor, a function
//! with a `Service<Req>` bound) shows the message. A streaming body without
//! `buffer_bodies` shows as "`Body: Clone` is not satisfied, required for
//! `CloneRequest` to implement `Replay<..>`": call
//! [`buffer_bodies`](ResilienceBuilder::buffer_bodies).

mod assembled;
mod builder;
mod choice;
mod config;
mod hedge_bodies;
mod layers;
mod optional;
mod presets;
mod repeat;
mod repeat_choice;

use tower_layer::Layer;

pub use assembled::Assembled;
pub use builder::ResilienceBuilder;
pub use choice::{BodyReplay, Chosen, ClassifierChoice, DefaultClassifierOf, SafetyDefault};
pub use config::StackConfig;
pub use hedge_bodies::{
    BufferedOnly, HedgeBodiesLayer, HedgeBody, HedgeBuffer, HedgeBufferFuture, UnwrapBody, UnwrapBodyFuture,
};
pub use layers::BreakerChoice;
pub use optional::{Optional, OptionalLayer, future::OptionalFuture};
pub use presets::{GRPC_BODY_BUFFER_LIMIT, GrpcBuilder, HttpBuilder};
pub use repeat::{Once, Repeat, RepeatFuture, RepeatLayer, Unhedged};
pub use repeat_choice::{MayRepeat, RepeatChoice, SendOnce};

use crate::{CircuitBreaker, ConfigError};

/// What [`ResilienceBuilder::build`] and
/// [`build_from_config`](ResilienceBuilder::build_from_config) return: the
/// stack over the classifier `C` chooses, or the first bad field.
pub type Built<C, Q, R, F, P> =
    Result<ResilienceLayer<Assembled<<C as ClassifierChoice<Q>>::Classifier, Q, R, F, P>>, ConfigError>;

impl<C, Q, R, F, P: RepeatChoice> ResilienceBuilder<C, Q, R, F, P> {
    /// Validates every enabled layer's config and assembles the stack.
    ///
    /// Errors name the field with the layer's prefix (`retry.max_attempts`,
    /// `breaker.failure_rate_threshold`); the stack's own rules are reported
    /// as `stack.<field>` (`stack.hedge` for retry and hedging together, or
    /// hedging with `buffer_bodies_raw`). Layers are checked outermost
    /// first, and nothing is built unless everything is valid (building a
    /// breaker or a limiter registers its metrics).
    pub fn build(self) -> Built<C, Q, R, F, P>
    where
        C: ClassifierChoice<Q>,
        Q: Clone,
        R: BodyReplay,
    {
        self.layers.validate(&self.replay)?;
        self.layers.assemble::<_, _, _, _, P>(
            self.classifier.into_classifier(),
            self.safety,
            self.replay,
            self.fallback,
        )
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
