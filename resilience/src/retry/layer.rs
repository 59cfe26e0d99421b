//! The [`RetryLayer`].

use std::{fmt, sync::Arc, time::Duration};

use backon::BackoffBuilder;
use tower_layer::Layer;

use super::{
    BufferBodies, CloneRequest, Retry, RetryBudget, RetryConfig, RetryThrottle,
    backoff::CustomBackoff,
    policy::{LayerState, Policy, Settings, TimeLimits},
};
use crate::{
    classify::{DefaultClassifier, GrpcClassifier, HttpClassifier},
    config::ConfigError,
    label::Label,
    safety::HttpSafety,
};

/// Retries failed calls of the services it wraps; see the [module
/// documentation](super) for the full contract.
///
/// Type parameters, each chosen at compile time:
/// - `C`, the [`Classify`](crate::Classify) deciding what is retried
///   (default [`DefaultClassifier`]: every error but local rejections);
/// - `P`, the [`RequestSafety`](crate::RequestSafety) deciding what may be
///   repeated (default [`HttpSafety`], so a layer over non-HTTP requests
///   does not compile until [`safety`](Self::safety) is given, for example
///   `AlwaysSafe`);
/// - `R`, the [`Replay`](super::Replay) making each attempt's request
///   (default [`CloneRequest`]; [`buffer_bodies`](Self::buffer_bodies) for
///   HTTP requests with streaming bodies).
///
/// Every service made by one layer (and every clone of those services)
/// shares the layer's budget and throttle; build another layer from the
/// same config for independent ones, or pass one `Arc` to several layers
/// with [`shared_budget`](Self::shared_budget).
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{AlwaysSafe, RetryConfig, RetryLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = RetryLayer::new(RetryConfig::default().overall_timeout(Duration::from_secs(2)))
///     .unwrap()
///     .safety(AlwaysSafe);
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) });
/// assert_eq!(service.oneshot(21).await.unwrap(), 42);
/// # }
/// ```
#[derive(Clone)]
pub struct RetryLayer<C = DefaultClassifier, P = HttpSafety, R = CloneRequest> {
    name: Arc<str>,
    settings: Settings,
    limits: TimeLimits,
    classifier: C,
    safety: P,
    replay: R,
    shared: LayerState,
}

impl RetryLayer {
    /// A layer with `config`, the [`DefaultClassifier`] and [`HttpSafety`].
    /// Errors name the bad field (`retry.max_attempts`, ...).
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        Self::from_parts(config, DefaultClassifier, HttpSafety::default(), CloneRequest)
    }
}

impl RetryLayer<HttpClassifier, HttpSafety> {
    /// A layer for HTTP clients: [`HttpClassifier`] (429, 502, 503 and 504
    /// are retried, `Retry-After` is honoured) and [`HttpSafety`]
    /// (idempotent methods and requests with an `Idempotency-Key`). Add
    /// [`buffer_bodies`](Self::buffer_bodies) when request bodies are streams.
    pub fn http(config: RetryConfig) -> Result<Self, ConfigError> {
        Self::from_parts(
            config,
            HttpClassifier::default(),
            HttpSafety::default(),
            CloneRequest,
        )
    }
}

impl<P> RetryLayer<GrpcClassifier, P> {
    /// A layer for gRPC clients: [`GrpcClassifier`] (`UNAVAILABLE` is
    /// retried, `grpc-retry-pushback-ms` is honoured). Every gRPC call is an
    /// HTTP POST, so `safety` must say which methods are safe to repeat
    /// (`safety_fn` over the path, or `AlwaysSafe`). tonic's request bodies
    /// are streams: add `.replay(RebuildBodies::new(limit))` (feature
    /// `tonic`), which buffers them and hands the `Channel` a
    /// `tonic::body::Body` again ([`RebuildBodies`](super::RebuildBodies)), or
    /// use the whole stack's preset, `ResilienceLayer::grpc`.
    ///
    /// Only trailers-only responses (how servers send immediate errors such
    /// as `UNAVAILABLE`) carry their status in the headers the classifier
    /// sees; a status that arrives in trailers after a response started is
    /// final, as gRFC A6 treats a committed call.
    pub fn grpc(config: RetryConfig, safety: P) -> Result<Self, ConfigError> {
        Self::from_parts(config, GrpcClassifier::default(), safety, CloneRequest)
    }
}

impl<C, P, R> RetryLayer<C, P, R> {
    /// Plans attempts as taking up to `limit` when checking them against the
    /// deadline, without arming a timer: an attempt timeout layer below this
    /// one enforces the limit (the composition builder's attempt timeout).
    pub(crate) fn plan_attempts(mut self, limit: Duration) -> Self {
        if self.limits.attempt_timeout.is_none() {
            self.limits.planned_attempt = Some(limit);
        }
        self
    }

    fn from_parts(config: RetryConfig, classifier: C, safety: P, replay: R) -> Result<Self, ConfigError> {
        config.validate()?;
        let budget = config.budget.map(RetryBudget::new).transpose()?.map(Arc::new);
        let throttle = config.throttle.map(RetryThrottle::new).transpose()?.map(Arc::new);
        Ok(Self {
            settings: Settings {
                label: Label::intern(&config.name),
                max_attempts: config.max_attempts,
                backoff: config.backoff,
            },
            limits: TimeLimits {
                attempt_timeout: config.attempt_timeout,
                planned_attempt: config.attempt_timeout,
                overall_timeout: config.overall_timeout,
            },
            name: config.name.into(),
            classifier,
            safety,
            replay,
            shared: LayerState {
                budget,
                throttle,
                backoff: None,
            },
        })
    }

    /// The layer with its classifier, safety and replay replaced by what
    /// `f` makes of them; the one place that lists every field.
    fn map<C2, P2, R2>(self, f: impl FnOnce(C, P, R) -> (C2, P2, R2)) -> RetryLayer<C2, P2, R2> {
        let (classifier, safety, replay) = f(self.classifier, self.safety, self.replay);
        RetryLayer {
            name: self.name,
            settings: self.settings,
            limits: self.limits,
            classifier,
            safety,
            replay,
            shared: self.shared,
        }
    }

    /// Uses `classifier` to decide what is retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, P, R> {
        self.map(|_, safety, replay| (classifier, safety, replay))
    }

    /// Uses `safety` to decide which requests may be repeated.
    pub fn safety<P2>(self, safety: P2) -> RetryLayer<C, P2, R> {
        self.map(|classifier, _, replay| (classifier, safety, replay))
    }

    /// Uses `replay` to make each attempt's request.
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<C, P, R2> {
        self.map(|classifier, safety, _| (classifier, safety, replay))
    }

    /// Retries HTTP requests whose bodies are streams (not `Clone`) by
    /// buffering bodies of up to `max_bytes`; the inner service then receives
    /// `http::Request<ReplayBody<B>>`. See [`BufferBodies`].
    pub fn buffer_bodies(self, max_bytes: u64) -> RetryLayer<C, P, BufferBodies> {
        self.replay(BufferBodies::new(max_bytes))
    }

    /// Uses any `backon` schedule instead of the config's `backoff`. A fresh
    /// schedule is built (from a clone of `builder`) for each call that
    /// retries, and again after a server pushback. A schedule that ends stops
    /// the retries (`NotRetried { reason: MaxAttempts }`): `backon`'s builders
    /// end after 3 delays unless told `without_max_times()`.
    pub fn backoff<B>(mut self, builder: B) -> Self
    where
        B: BackoffBuilder + Clone + 'static,
        B::Backoff: 'static,
    {
        self.shared.backoff = Some(CustomBackoff::new(builder));
        self
    }

    /// Uses `budget` instead of the config's, so that several layers (for
    /// example one per route) draw on one budget.
    pub fn shared_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.shared.budget = Some(budget);
        self
    }

    /// Uses `throttle` instead of the config's, so that several layers (for
    /// example one per gRPC method) share one token bucket, as gRPC shares
    /// one per server.
    pub fn shared_throttle(mut self, throttle: Arc<RetryThrottle>) -> Self {
        self.shared.throttle = Some(throttle);
        self
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }

    /// The throttle, if any.
    pub fn throttle(&self) -> Option<&Arc<RetryThrottle>> {
        self.shared.throttle.as_ref()
    }
}

impl<S, C: Clone, P: Clone, R: Clone> Layer<S> for RetryLayer<C, P, R> {
    type Service = Retry<S, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let policy = Policy::new(
            Arc::clone(&self.name),
            (self.settings, self.limits),
            self.classifier.clone(),
            self.safety.clone(),
            self.replay.clone(),
            self.shared.clone(),
        );
        Retry::from_policy(inner, policy)
    }
}

impl<C, P, R> fmt::Debug for RetryLayer<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}
