//! The layer, its draws and what it injects.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::{FaultConfig, FaultFuture, future::Fate};
use crate::BoxError;

/// What an error fault produces in place of the call.
pub trait Inject<Response>: Clone + Send + Sync + 'static {
    /// The injected outcome.
    fn inject(&self) -> Result<Response, BoxError>;
}

/// Injects an [`InjectedFault`] error (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectError;

impl<R> Inject<R> for InjectError {
    fn inject(&self) -> Result<R, BoxError> {
        Err(Box::new(InjectedFault))
    }
}

/// Injects a response made by a closure (an HTTP 503, a gRPC
/// `UNAVAILABLE`).
#[derive(Clone)]
pub struct InjectResponse<F>(F);

impl<F> fmt::Debug for InjectResponse<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InjectResponse")
    }
}

impl<R, F> Inject<R> for InjectResponse<F>
where
    F: Fn() -> R + Clone + Send + Sync + 'static,
{
    fn inject(&self) -> Result<R, BoxError> {
        Ok((self.0)())
    }
}

/// The error of an injected fault, for callers to tell it from real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected fault")]
pub struct InjectedFault;

/// Injects the faults of a [`FaultConfig`] into every service it wraps.
/// Clones share the draws, so a layer applied to several services keeps
/// one reproducible sequence.
#[derive(Clone)]
pub struct FaultLayer<I> {
    shared: Arc<Shared>,
    inject: I,
}

impl<I> fmt::Debug for FaultLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("config", &self.shared.config)
            .finish()
    }
}

struct Shared {
    config: FaultConfig,
    started: Instant,
    drawn: AtomicU64,
}

impl FaultLayer<InjectError> {
    pub(super) fn from_config(config: FaultConfig, inject: InjectError) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                started: Instant::now(),
                drawn: AtomicU64::new(0),
            }),
            inject,
        }
    }

    /// Error faults answer with `respond()` instead of an error.
    ///
    /// ```
    /// use orch_resilience::chaos::{ErrorFault, FaultConfig};
    ///
    /// let layer = FaultConfig { error: Some(ErrorFault { probability: 0.1 }), ..FaultConfig::default() }
    ///     .build()
    ///     .unwrap()
    ///     .respond_with(|| {
    ///         let mut response = http::Response::new(String::new());
    ///         *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    ///         response
    ///     });
    /// # let _ = layer;
    /// ```
    pub fn respond_with<F, R>(self, respond: F) -> FaultLayer<InjectResponse<F>>
    where
        F: Fn() -> R + Clone + Send + Sync + 'static,
    {
        FaultLayer {
            shared: self.shared,
            inject: InjectResponse(respond),
        }
    }
}

impl<I> FaultLayer<I> {
    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.shared.config
    }
}

impl<S, I: Clone> Layer<S> for FaultLayer<I> {
    type Service = Faulty<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Faulty {
            inner,
            shared: Arc::clone(&self.shared),
            inject: self.inject.clone(),
        }
    }
}

/// A service with faults injected; made by [`FaultLayer`].
#[derive(Clone)]
pub struct Faulty<S, I> {
    inner: S,
    shared: Arc<Shared>,
    inject: I,
}

impl<S: fmt::Debug, I> fmt::Debug for Faulty<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, I, Req> Service<Req> for Faulty<S, I>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    I: Inject<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FaultFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let fate = self.shared.draw();
        let name = &self.shared.config.name;
        let count = |kind: &'static str| {
            metrics::counter!("orch_faults_injected_total", "name" => name.clone(), "kind" => kind)
                .increment(1);
        };
        match fate {
            Draw::Drop => {
                count("drop");
                tracing::debug!(name = %name, "fault: request dropped");
                FaultFuture::dropped()
            }
            Draw::Proceed { delay, fail } => {
                if !delay.is_zero() {
                    count("latency");
                }
                let fate = if fail {
                    count("error");
                    tracing::debug!(name = %name, "fault: injected failure");
                    Fate::Inject(self.inject.inject())
                } else {
                    Fate::Call(self.inner.call(request))
                };
                FaultFuture::after(delay, fate)
            }
        }
    }
}

enum Draw {
    Drop,
    Proceed { delay: Duration, fail: bool },
}

impl Shared {
    /// This request's fate: the next numbers of the seeded sequence.
    fn draw(&self) -> Draw {
        let config = &self.config;
        if !config.schedule.is_active(self.started.elapsed()) {
            return Draw::Proceed {
                delay: Duration::ZERO,
                fail: false,
            };
        }
        let n = self.drawn.fetch_add(1, Ordering::Relaxed);
        let mut state = config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut uniform = || unit(splitmix64(&mut state));
        let (dropped, failed, slowed, spread) = (uniform(), uniform(), uniform(), uniform());
        if config.drop.is_some_and(|d| dropped < d.probability) {
            return Draw::Drop;
        }
        let delay = match config.latency {
            Some(l) if slowed < l.probability => l.min + (l.max - l.min).mul_f64(spread),
            _ => Duration::ZERO,
        };
        Draw::Proceed {
            delay,
            fail: config.error.is_some_and(|e| failed < e.probability),
        }
    }
}

/// SplitMix64: a tiny, well-mixed generator; enough for fault draws.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from 53 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
