//! The choices a stack makes as a whole: which classifier when none is
//! named, and how requests are kept for another attempt.
//!
//! The classifier defaults to the one that suits the safety rules: HTTP
//! rules ([`HttpSafety`]) mean `http` types, so [`ProtocolClassifier`]
//! (HTTP statuses, or `grpc-status` for gRPC); rules for any request type
//! ([`AlwaysSafe`], [`safety_fn`](crate::safety_fn)) mean nothing is known
//! of the responses, so [`DefaultClassifier`] (every `Ok` a success). The
//! choice is made when the stack is built, so calling
//! [`safety`](super::ResilienceBuilder::safety) after
//! [`classifier`](super::ResilienceBuilder::classifier) keeps the classifier.

use tower_layer::Layer;

use super::{
    hedge_bodies::{BufferedOnly, HedgeBodiesLayer, HedgeBuffer, UnwrapBody},
    repeat::Unhedged,
};
use crate::{
    AlwaysSafe, ConfigError, DefaultClassifier, Hedge, HedgeConfig, HedgeLayer, HttpSafety,
    ProtocolClassifier, SafetyFn,
    retry::{BufferBodies, CloneRequest, RebuildBodies},
};

/// The classifier slot before [`classifier`](super::ResilienceBuilder::classifier)
/// is called: the stack uses its safety rules' [`DefaultClassifierOf`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SafetyDefault;

/// The classifier slot once [`classifier`](super::ResilienceBuilder::classifier)
/// named one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chosen<C>(pub(super) C);

/// Safety rules that imply a classifier: the one a stack uses when none is
/// named.
///
/// Rules of one's own imply none; the stack then needs a classifier:
///
/// ```compile_fail,E0277
/// use orch_resilience::{RequestSafety, ResilienceLayer, RetryConfig};
///
/// #[derive(Clone)]
/// struct ReadsOnly;
/// impl RequestSafety<u32> for ReadsOnly {
///     fn is_safe(&self, request: &u32) -> bool { *request < 100 }
/// }
/// // error: the safety rules `ReadsOnly` do not imply a classifier
/// let stack = ResilienceLayer::builder().safety(ReadsOnly).retry(RetryConfig::default()).build();
/// ```
#[diagnostic::on_unimplemented(
    message = "the safety rules `{Self}` do not imply a classifier",
    label = "no classifier was chosen for this stack",
    note = "name one on the builder: `.classifier(DefaultClassifier)` (every `Ok` is a success), `.classifier(ProtocolClassifier::default())` for `http::Response`s, or `.classifier(classify_fn(|result| ..))`"
)]
pub trait DefaultClassifierOf {
    /// The classifier.
    type Classifier: Clone + Default;
}

impl DefaultClassifierOf for HttpSafety {
    type Classifier = ProtocolClassifier;
}

impl DefaultClassifierOf for AlwaysSafe {
    type Classifier = DefaultClassifier;
}

impl<F> DefaultClassifierOf for SafetyFn<F> {
    type Classifier = DefaultClassifier;
}

/// The classifier a stack with safety rules `Q` uses: the one named, or the
/// rules' default.
pub trait ClassifierChoice<Q> {
    /// The classifier.
    type Classifier: Clone;

    /// Makes it.
    fn into_classifier(self) -> Self::Classifier;
}

impl<Q: DefaultClassifierOf> ClassifierChoice<Q> for SafetyDefault {
    type Classifier = Q::Classifier;

    fn into_classifier(self) -> Q::Classifier {
        Q::Classifier::default()
    }
}

impl<C: Clone, Q> ClassifierChoice<Q> for Chosen<C> {
    type Classifier = C;

    fn into_classifier(self) -> C {
        self.0
    }
}

/// How a stack keeps requests for another attempt: by cloning them
/// ([`CloneRequest`], the default), or by buffering their bodies
/// ([`RebuildBodies`] from [`buffer_bodies`](super::ResilienceBuilder::buffer_bodies),
/// [`BufferBodies`] from [`buffer_bodies_raw`](super::ResilienceBuilder::buffer_bodies_raw)).
///
/// It also decides how the stack hedges: a `Clone` request is copied, a
/// buffered body rebuilt for each hedge ([`HedgeBuffer`]); bodies handed on
/// as `ReplayBody`s cannot be hedged, and a stack asking for it is refused
/// by `build` (`stack.hedge`). A [`StackConfig`](super::StackConfig) may
/// set a `body_buffer_limit` only where bodies are buffered.
pub trait BodyReplay: Clone + Send + Sync + 'static {
    /// The hedging layer over requests kept this way.
    type HedgeLayer<C, Q>;
    /// The service the hedging layer makes of `S`.
    type Hedged<S, C, Q>;

    /// The largest body that is buffered; `None` when requests are cloned.
    fn buffer_limit(&self) -> Option<u64>;

    /// This replay with another buffer limit, or `None` when requests are
    /// cloned and nothing is buffered.
    fn with_buffer_limit(self, limit: u64) -> Option<Self>;

    /// Whether requests kept this way can be hedged.
    fn can_hedge(&self) -> bool {
        true
    }

    /// The hedging layer; called only after `config` was validated and
    /// [`can_hedge`](Self::can_hedge) said yes.
    fn hedge_layer<C: Clone, Q: Clone>(
        &self,
        config: HedgeConfig,
        classifier: C,
        safety: Q,
    ) -> Result<Self::HedgeLayer<C, Q>, ConfigError>;

    /// The hedging layer's service over `inner`.
    fn hedged<S, C: Clone, Q: Clone>(layer: &Self::HedgeLayer<C, Q>, inner: S) -> Self::Hedged<S, C, Q>;
}

impl BodyReplay for CloneRequest {
    type HedgeLayer<C, Q> = HedgeLayer<C, Q>;
    type Hedged<S, C, Q> = Hedge<S, C, Q>;

    fn buffer_limit(&self) -> Option<u64> {
        None
    }

    fn with_buffer_limit(self, _: u64) -> Option<Self> {
        None
    }

    fn hedge_layer<C: Clone, Q: Clone>(
        &self,
        config: HedgeConfig,
        classifier: C,
        safety: Q,
    ) -> Result<HedgeLayer<C, Q>, ConfigError> {
        Ok(HedgeLayer::new(config)?.classifier(classifier).safety(safety))
    }

    fn hedged<S, C: Clone, Q: Clone>(layer: &HedgeLayer<C, Q>, inner: S) -> Hedge<S, C, Q> {
        layer.layer(inner)
    }
}

impl BodyReplay for RebuildBodies {
    type HedgeLayer<C, Q> = HedgeBodiesLayer<C, Q>;
    type Hedged<S, C, Q> = HedgeBuffer<Hedge<UnwrapBody<S>, C, BufferedOnly>, Q>;

    fn buffer_limit(&self) -> Option<u64> {
        Some(self.max_bytes())
    }

    fn with_buffer_limit(self, limit: u64) -> Option<Self> {
        Some(Self::new(limit))
    }

    fn hedge_layer<C: Clone, Q: Clone>(
        &self,
        config: HedgeConfig,
        classifier: C,
        safety: Q,
    ) -> Result<HedgeBodiesLayer<C, Q>, ConfigError> {
        Ok(HedgeBodiesLayer {
            hedge: HedgeLayer::new(config)?
                .classifier(classifier)
                .safety(BufferedOnly),
            safety,
            buffer: BufferBodies::new(self.max_bytes()),
        })
    }

    fn hedged<S, C: Clone, Q: Clone>(layer: &HedgeBodiesLayer<C, Q>, inner: S) -> Self::Hedged<S, C, Q> {
        layer.layer(inner)
    }
}

impl BodyReplay for BufferBodies {
    type HedgeLayer<C, Q> = Unhedged<()>;
    type Hedged<S, C, Q> = Unhedged<S>;

    fn buffer_limit(&self) -> Option<u64> {
        Some(self.max_bytes())
    }

    fn with_buffer_limit(self, limit: u64) -> Option<Self> {
        Some(Self::new(limit))
    }

    // A request sent once reaches the service as a `ReplayBody` it would
    // not otherwise see, and a hedge's copies need a body to copy.
    fn can_hedge(&self) -> bool {
        false
    }

    fn hedge_layer<C: Clone, Q: Clone>(
        &self,
        _: HedgeConfig,
        _: C,
        _: Q,
    ) -> Result<Unhedged<()>, ConfigError> {
        Err(no_hedge())
    }

    fn hedged<S, C: Clone, Q: Clone>(layer: &Unhedged<()>, _: S) -> Unhedged<S> {
        layer.never()
    }
}

/// The error of a stack that hedges bodies handed on as `ReplayBody`s.
pub(super) fn no_hedge() -> ConfigError {
    ConfigError::field(
        "stack.hedge",
        "cannot hedge requests whose bodies reach the service as `ReplayBody`s (`buffer_bodies_raw`); use `buffer_bodies`, or retry",
    )
}
