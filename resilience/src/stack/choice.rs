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

use crate::{
    AlwaysSafe, ConfigError, DefaultClassifier, HedgeConfig, HttpSafety, ProtocolClassifier, SafetyFn,
    retry::{BufferBodies, CloneRequest, RebuildBodies},
};

use super::Off;

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
/// What a [`StackConfig`](super::StackConfig) may change depends on it: a
/// `body_buffer_limit` only where bodies are buffered, a `hedge` only where
/// requests are cloned or bodies rebuilt.
pub trait BodyReplay: Clone + Send + Sync + 'static {
    /// The hedge slot of a stack built from a config: an optional hedge, or
    /// none at all over bodies handed on as `ReplayBody`s.
    type HedgeSlot;

    /// The largest body that is buffered; `None` when requests are cloned.
    fn buffer_limit(&self) -> Option<u64>;

    /// This replay with another buffer limit, or `None` when requests are
    /// cloned and nothing is buffered.
    fn with_buffer_limit(self, limit: u64) -> Option<Self>;

    /// The hedge slot for a config's `hedge`; an error naming `hedge` when
    /// this replay cannot be hedged.
    fn hedge_slot(hedge: Option<HedgeConfig>) -> Result<Self::HedgeSlot, ConfigError>;
}

impl BodyReplay for CloneRequest {
    type HedgeSlot = Option<HedgeConfig>;

    fn buffer_limit(&self) -> Option<u64> {
        None
    }

    fn with_buffer_limit(self, _: u64) -> Option<Self> {
        None
    }

    fn hedge_slot(hedge: Option<HedgeConfig>) -> Result<Option<HedgeConfig>, ConfigError> {
        Ok(hedge)
    }
}

/// Bodies handed on as `ReplayBody`s cannot be hedged: a request sent once
/// would reach the service with another type.
fn no_hedge(hedge: Option<HedgeConfig>) -> Result<Off, ConfigError> {
    match hedge {
        None => Ok(Off),
        Some(_) => Err(ConfigError::field(
            "stack.hedge",
            "cannot hedge requests whose bodies reach the service as `ReplayBody`s (`buffer_bodies_raw`); use `buffer_bodies`, or retry",
        )),
    }
}

impl BodyReplay for RebuildBodies {
    type HedgeSlot = Option<HedgeConfig>;

    fn buffer_limit(&self) -> Option<u64> {
        Some(self.max_bytes())
    }

    fn with_buffer_limit(self, limit: u64) -> Option<Self> {
        Some(Self::new(limit))
    }

    fn hedge_slot(hedge: Option<HedgeConfig>) -> Result<Option<HedgeConfig>, ConfigError> {
        Ok(hedge)
    }
}

impl BodyReplay for BufferBodies {
    type HedgeSlot = Off;

    fn buffer_limit(&self) -> Option<u64> {
        Some(self.max_bytes())
    }

    fn with_buffer_limit(self, limit: u64) -> Option<Self> {
        Some(Self::new(limit))
    }

    fn hedge_slot(hedge: Option<HedgeConfig>) -> Result<Off, ConfigError> {
        no_hedge(hedge)
    }
}
