//! Hedging: when an answer is slow, send the same request again and take the
//! first success.
//!
//! A few slow replicas, a garbage-collection pause or a lost packet make the
//! tail of a service's latency much longer than its median, and a caller that
//! fans out to many services waits for the slowest. Sending a second copy of
//! a request that has not answered within the usual time cuts that tail for
//! little extra load ("The Tail at Scale", Dean and Barroso, CACM 2013). The
//! semantics here are Polly v8's hedging strategy (latency and parallel
//! modes), with gRPC's hedging rules (gRFC A6) for server pushback; the
//! percentile delay follows `tower::hedge` and Finagle's backup requests.
//!
//! Hedging repeats requests, so it only touches requests a
//! [`RequestSafety`] calls safe. It needs a `Clone`
//! request and a `Clone` inner service: every extra attempt gets its own
//! copy of the request and its own service clone, driven ready inside the
//! response future.
//!
//! # Contract
//!
//! For a request the safety rules accept (after
//! [`make_safe`](crate::RequestSafety::make_safe), so an added
//! `Idempotency-Key` is the same on every attempt):
//!
//! - **Attempt 0**, the primary, is sent by `call` on the service that
//!   `poll_ready` readied.
//! - **Attempts 1 to `max_hedged_attempts`** are sent, one at a time, when
//!   the hedging delay has passed since the previous attempt was sent and no
//!   attempt has succeeded, or **at once when an attempt fails** (Polly: a
//!   failure does not wait for the delay). Each goes to a fresh clone of the
//!   inner service, polled ready inside the response future; while a clone is
//!   not ready, the attempts already sent keep running and may still win.
//!   A zero delay sends every attempt at once (Polly's parallel mode).
//! - Each result is classified by the [`Classify`] (default
//!   [`DefaultClassifier`]), which sees inner errors
//!   already converted by [`ResilienceError::from_inner`]:
//!   - [`Outcome::Success`](crate::Outcome::Success) **wins**: it is returned
//!     at once and every other attempt is dropped, which cancels it (a hedge
//!     still waiting for readiness is dropped too).
//!   - [`Outcome::Retryable`](crate::Outcome::Retryable) and
//!     [`Outcome::Failure`](crate::Outcome::Failure) do not win, whether an
//!     `Err` or an `Ok` response the classifier calls a failure (an HTTP 503
//!     under [`HttpClassifier`](crate::HttpClassifier)). The next attempt is
//!     sent at once, unless the classifier reports server pushback (gRFC A6):
//!     [`Pushback::After(d)`](crate::Pushback::After) sends it `d` after this
//!     failure instead, and [`Pushback::Stop`](crate::Pushback::Stop) sends no
//!     further attempt.
//!   - [`Outcome::Rejected`](crate::Outcome::Rejected) (an inner breaker,
//!     bulkhead or rate limiter refused the attempt) does not win and sends
//!     no further attempt: the layer below is shedding load and another copy
//!     would add to it. Attempts already sent keep running.
//! - A `poll_ready` error of a hedge's service clone is that attempt's result
//!   (converted by `from_inner` and classified like any error); the attempt
//!   counts towards `max_hedged_attempts`.
//! - **When nothing can win** (every sent attempt finished without success
//!   and no further attempt will be sent), the result of the attempt that
//!   **finished last** is returned as it is: `Err(ResilienceError)` (an inner
//!   error passes through `from_inner` unwrapped), or `Ok(response)` for a
//!   response classified as a failure. Polly returns the primary's failure
//!   instead; the last one is the freshest word on the service's state.
//! - Dropping the response future drops, and so cancels, every attempt.
//!
//! An unsafe request is sent once, on the readied service, and never hedged;
//! its result is returned unclassified (errors through `from_inner`), with a
//! `debug` event and the `orch_hedge_unhedged_total` counter saying why.
//!
//! # Hedging delay
//!
//! The delay is chosen once per call, when `call` runs, from
//! [`HedgeDelay`]: fixed, or the configured percentile of recent latencies
//! (falling back to a fixed delay until the tracked windows hold
//! `min_samples` samples). The [`LatencyTracker`] records one sample per
//! hedged call: the latency of its primary attempt when the primary
//! succeeded, or, when a hedge won while the primary was still running, the
//! time the primary had run so far. That time is at least the delay, so the
//! slow primary still counts as slower than the percentile; recording only
//! completed attempts would drop exactly the slow calls that hedging cancels,
//! and the percentile would drift down until nearly every call was hedged.
//! Failed primaries, hedges and unsafe requests record nothing.
//!
//! # Where it goes in a stack
//!
//! Like Polly's standard hedging pipeline: inside an overall timeout, outside
//! the per-attempt layers (circuit breaker, attempt timeout), so that every
//! attempt is protected on its own and a slow attempt can be hedged before
//! its timeout fires. The inner service must be `Clone`; wrap a balancer or
//! any non-`Clone` service in `tower::buffer::Buffer`.
//!
//! # Observability
//!
//! `debug` events with structured fields (`name`, `attempt`, `reason`, ...)
//! when a hedged attempt is sent, when further attempts are stopped (pushback,
//! local rejection), which attempt won a hedged call, when every attempt
//! failed, and when an unsafe request is not hedged. Metrics, each with a
//! `name` label:
//!
//! | metric | kind | labels | counts |
//! | --- | --- | --- | --- |
//! | `orch_hedge_attempts_total` | counter | `name` | hedged attempts sent (not counting primaries) |
//! | `orch_hedge_wins_total` | counter | `name`, `attempt` (`"0"` is the primary) | calls won, among calls that sent at least one hedge |
//! | `orch_hedge_exhausted_total` | counter | `name` | hedged-path calls on which no attempt succeeded |
//! | `orch_hedge_unhedged_total` | counter | `name`, `reason` (`"unsafe"`) | requests sent once because they may not be repeated |
//!
//! A call whose primary wins before any hedge is sent touches no metric.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    classify::{Classify, DefaultClassifier},
    config::ConfigError,
    error::{BoxError, ResilienceError},
    safety::{HttpSafety, RequestSafety},
};

mod config;
pub mod future;
mod latency;
mod layer;

pub use config::{HedgeConfig, HedgeDelay};
pub use latency::LatencyTracker;
pub use layer::HedgeLayer;

use future::ResponseFuture;

/// Sends slow or failed safe requests again and returns the first success;
/// see the [module docs](self) for the exact contract.
///
/// Made by [`HedgeLayer`] or [`Hedge::new`]. Clones share the name and the
/// latency tracker.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{Hedge, HedgeConfig, HedgeDelay};
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let config = HedgeConfig::default().delay(HedgeDelay::fixed(Duration::from_millis(20)));
/// let hedge = Hedge::new(
///     service_fn(|request: http::Request<()>| async move {
///         Ok::<_, std::io::Error>(format!("{} {}", request.method(), request.uri()))
///     }),
///     config,
/// )?;
/// let response = hedge.oneshot(http::Request::get("/items/7").body(())?).await?;
/// assert_eq!(response, "GET /items/7");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Hedge<S, C = DefaultClassifier, P = HttpSafety> {
    inner: S,
    layer: Arc<LayerState>,
    classifier: C,
    safety: P,
}

/// The state of one layer, shared by every service it makes: the validated
/// config, the name as a metric label, and the latency tracker.
#[derive(Debug)]
pub(crate) struct LayerState {
    config: HedgeConfig,
    name: Arc<str>,
    /// Present for a percentile delay.
    tracker: Option<LatencyTracker>,
}

// ===== impl LayerState =====

impl LayerState {
    fn new(config: HedgeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let tracker = match config.delay {
            HedgeDelay::Fixed(_) => None,
            HedgeDelay::Percentile { window, .. } => Some(LatencyTracker::new(window)),
        };
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            config,
            tracker,
        })
    }

    /// The delay of a call made at `now`.
    fn delay_at(&self, now: Instant) -> Duration {
        match self.config.delay {
            HedgeDelay::Fixed(delay) => delay,
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                fallback,
                ..
            } => (self.tracker.as_ref())
                .and_then(|tracker| tracker.trusted_percentile_at(now, percentile, min_samples))
                .unwrap_or(fallback),
        }
    }
}

// ===== impl Hedge =====

impl<S> Hedge<S> {
    /// Validates `config` and wraps `inner`, with the default classifier and
    /// HTTP safety rules. For other rules, build a [`HedgeLayer`].
    pub fn new(inner: S, config: HedgeConfig) -> Result<Self, ConfigError> {
        Ok(HedgeLayer::new(config)?.layer(inner))
    }
}

impl<S, C, P> Hedge<S, C, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The name used in errors, events and metrics.
    pub fn name(&self) -> &str {
        &self.layer.name
    }

    /// The validated configuration.
    pub fn config(&self) -> &HedgeConfig {
        &self.layer.config
    }

    /// The latency tracker; `None` for a fixed delay.
    pub fn latency(&self) -> Option<&LatencyTracker> {
        self.layer.tracker.as_ref()
    }

    /// The hedging delay a call made now would use.
    pub fn current_delay(&self) -> Duration {
        self.layer.delay_at(Instant::now())
    }
}

impl<S, Req, C, P> Service<Req> for Hedge<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, ResilienceError>,
    P: RequestSafety<Req>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    fn call(&mut self, mut request: Req) -> Self::Future {
        let safe = self.safety.is_safe(&request) || self.safety.make_safe(&mut request);
        if !safe {
            let name = &self.layer.name;
            tracing::debug!(%name, reason = "unsafe", "request is not safe to repeat; sent once, not hedged");
            metrics::counter!("orch_hedge_unhedged_total", "name" => Arc::clone(name), "reason" => "unsafe")
                .increment(1);
            return ResponseFuture::once(self.inner.call(request));
        }
        // Hedges go to clones of this copy, taken before `call` uses up the
        // readiness of the service that carries the primary.
        let service = self.inner.clone();
        let primary = self.inner.call(request.clone());
        ResponseFuture::racing(
            primary,
            Arc::clone(&self.layer),
            self.classifier.clone(),
            service,
            request,
        )
    }
}
