//! Gives up on a call that has not answered within a fixed time.
//!
//! A caller that waits forever for a hung service holds its own resources
//! (a connection, a task, a bulkhead slot) forever, and the outage spreads
//! upwards. [`Timeout`] bounds the wait: if the inner response future has not
//! completed when the limit passes, the inner future is dropped (which cancels
//! the call for any cancel-safe client) and the caller gets
//! [`ResilienceError::Timeout`] carrying the [`TimeoutKind`] and the limit.
//!
//! # Two kinds, two places in a stack
//!
//! - [`TimeoutKind::Attempt`] bounds one attempt. Put it *inside* the retry
//!   layer (closer to the service), so a slow attempt is abandoned and the
//!   retry layer may try again; the error is classified as retryable.
//! - [`TimeoutKind::Overall`] bounds the whole call, every attempt and backoff
//!   included. Put it *outside* the retry layer, so it caps what the caller
//!   waits in total (the deadline gRPC calls a "deadline", Envoy a route
//!   `timeout` as opposed to `per_try_timeout`).
//!
//! A recommended order of all layers is built by the composition builder;
//! this module only knows which kind it is, so the error says which limit ran
//! out.
//!
//! # Contract
//!
//! - The clock starts when [`Service::call`]
//!   is invoked, not when the response future is first polled, as in
//!   `tower::timeout`.
//! - The inner future is polled before the timer, so a response that is ready
//!   at the same poll as the deadline wins, and a limit of zero still lets
//!   through a call whose future completes on its first poll.
//! - `poll_ready` forwards the inner service's readiness unbounded: waiting for
//!   capacity is the job of a bulkhead or load shedder, not of a timeout.
//! - Inner errors are converted with [`ResilienceError::from_inner`], so an
//!   inner layer's `ResilienceError` (an attempt timeout inside an overall one)
//!   passes through unchanged.
//! - The response future costs what `tower::timeout`'s does (one
//!   `tokio::time::Sleep` stored inline, no boxing) plus a reference count on
//!   the name, which is read only when the limit passes.
//!
//! # Observability
//!
//! | what | name | labels |
//! |---|---|---|
//! | counter, calls that timed out | `orch_timeout_total` | `name`, `kind` (`attempt` or `overall`) |
//!
//! Each timeout also emits a `DEBUG` tracing event with the fields `name`,
//! `kind` and `after`.

pub mod future;
mod layer;
mod limit;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tower_service::Service;

pub use self::layer::TimeoutLayer;
use self::{future::ResponseFuture, limit::Limit};
use crate::{
    config::{ConfigError, check},
    error::{BoxError, ResilienceError, TimeoutKind},
};

/// The name a timeout has when none is configured.
pub(crate) const DEFAULT_NAME: &str = "timeout";

/// Configuration of a [`TimeoutLayer`], as plain data that can be loaded from
/// a file or the environment.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{TimeoutConfig, TimeoutKind};
///
/// let config: TimeoutConfig =
///     serde_json::from_str(r#"{ "kind": "overall", "duration": "250ms" }"#).unwrap();
/// assert_eq!(config.kind, TimeoutKind::Overall);
/// assert_eq!(config.duration, Duration::from_millis(250));
/// let layer = config.build().unwrap();
/// assert_eq!(layer.duration(), Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Name used in tracing events and the metric label. Default `"timeout"`.
    pub name: String,
    /// Which limit this is, `"attempt"` or `"overall"`. Default
    /// [`TimeoutKind::Attempt`], the per-call limit of Resilience4j's
    /// `TimeLimiter`.
    #[serde(with = "kind_serde")]
    pub kind: TimeoutKind,
    /// The limit. Must not be zero. Default 1 s, Resilience4j's
    /// `TimeLimiter` `timeoutDuration`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            kind: TimeoutKind::Attempt,
            duration: Duration::from_secs(1),
        }
    }
}

impl TimeoutConfig {
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: TimeoutKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the limit.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Rejects a zero duration (`timeout.duration`): from a file it is almost
    /// certainly a mistake, and it would fail nearly every call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_zero_duration("timeout.duration", self.duration)
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<TimeoutLayer, ConfigError> {
        TimeoutLayer::from_config(self)
    }
}

/// (De)serialises a [`TimeoutKind`] as `"attempt"` or `"overall"`; the enum
/// itself lives in the error module and carries no serde derive.
mod kind_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::error::TimeoutKind;

    pub(super) fn serialize<S: Serializer>(kind: &TimeoutKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match kind {
            TimeoutKind::Attempt => "attempt",
            TimeoutKind::Overall => "overall",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TimeoutKind, D::Error> {
        let word = String::deserialize(deserializer)?;
        match word.as_str() {
            "attempt" => Ok(TimeoutKind::Attempt),
            "overall" => Ok(TimeoutKind::Overall),
            other => Err(D::Error::unknown_variant(other, &["attempt", "overall"])),
        }
    }
}

/// Fails a call with [`ResilienceError::Timeout`] when the inner service does
/// not answer within the limit. Built by [`TimeoutLayer`].
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{ResilienceError, TimeoutKind, TimeoutLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::io::Error>("late")
/// });
/// let svc = ServiceBuilder::new()
///     .layer(TimeoutLayer::attempt(Duration::from_millis(100)))
///     .service(slow);
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert!(matches!(err, ResilienceError::Timeout { kind: TimeoutKind::Attempt, .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    name: Arc<str>,
    /// The name, kind and limit as the response future carries them:
    /// plain copied values and the name's label (`label.rs`), not a
    /// reference count per call.
    limit: Limit,
    kind: TimeoutKind,
    after: Duration,
}

// ===== impl Timeout =====

impl<S> Timeout<S> {
    /// Wraps `inner` with a limit of `after` of the given kind, named `"timeout"`.
    pub fn new(inner: S, kind: TimeoutKind, after: Duration) -> Self {
        Self::named(
            inner,
            DEFAULT_NAME.into(),
            Limit::intern(DEFAULT_NAME, kind, after),
            kind,
            after,
        )
    }

    pub(crate) fn named(inner: S, name: Arc<str>, limit: Limit, kind: TimeoutKind, after: Duration) -> Self {
        Self {
            inner,
            limit,
            name,
            kind,
            after,
        }
    }

    /// The limit.
    pub fn duration(&self) -> Duration {
        self.after
    }

    /// Which limit this is.
    pub fn kind(&self) -> TimeoutKind {
        self.kind
    }

    /// The name used in tracing and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the timeout, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // The timer starts when the inner `call` returns, as tower's does, and
        // is built in place: a `Sleep` made first and moved in after the call
        // is read back wider than it was written, which stalls store
        // forwarding and cost a sixth of this path.
        let response = self.inner.call(request);
        ResponseFuture::new(response, self.after, self.limit)
    }
}
