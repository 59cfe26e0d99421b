//! The autoscaler against a scripted replica group, in paused time: each
//! test sets the load, advances the clock one evaluation period at a time
//! and asserts on the decisions.

mod behavior;
mod input;
mod policies;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_core::{
    ScaleError, ScaleStatus, Scaler,
    autoscale::{Autoscaler, AutoscalerConfig, Decision, source_fn},
};

/// A replica group that does what it is asked at once; `ready` lags only
/// when a test says so.
#[derive(Debug, Default)]
pub(crate) struct Group {
    desired: AtomicUsize,
    /// `usize::MAX`: every replica is ready.
    ready: AtomicUsize,
    /// Every `scale_to`, in order.
    pub(crate) scaled: Mutex<Vec<usize>>,
}

impl Group {
    pub(crate) fn with(replicas: usize) -> Arc<Self> {
        Arc::new(Self {
            desired: AtomicUsize::new(replicas),
            ready: AtomicUsize::new(usize::MAX),
            scaled: Mutex::default(),
        })
    }

    pub(crate) fn replicas(&self) -> usize {
        self.desired.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ready(&self, ready: usize) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn events(&self) -> usize {
        self.scaled.lock().expect("not poisoned").len()
    }
}

#[async_trait::async_trait]
impl Scaler for Group {
    async fn current(&self) -> Result<usize, ScaleError> {
        Ok(self.replicas())
    }

    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError> {
        self.desired.store(replicas, Ordering::Relaxed);
        self.scaled.lock().expect("not poisoned").push(replicas);
        Ok(())
    }

    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        let desired = self.replicas();
        Ok(ScaleStatus {
            desired,
            ready: self.ready.load(Ordering::Relaxed).min(desired),
        })
    }
}

/// A metric the test sets; `NaN` reads as missing.
#[derive(Debug, Clone)]
pub(crate) struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub(crate) fn new(value: f64) -> Self {
        Self(Arc::new(AtomicU64::new(value.to_bits())))
    }

    pub(crate) fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn source(&self) -> impl orch_core::autoscale::MetricSource + 'static {
        let cell = Arc::clone(&self.0);
        source_fn(move || Some(f64::from_bits(cell.load(Ordering::Relaxed))).filter(|v| !v.is_nan()))
    }
}

/// An autoscaler over `group` with one gauge called `load`.
pub(crate) fn autoscaler(config: AutoscalerConfig, group: &Arc<Group>, load: &Gauge) -> Autoscaler {
    Autoscaler::builder(config)
        .source("load", load.source())
        .scaler(Arc::clone(group))
        .build()
        .expect("a valid config")
}

/// Advances paused time by `period` and evaluates.
pub async fn step(autoscaler: &mut Autoscaler, period: Duration) -> Arc<Decision> {
    tokio::time::advance(period).await;
    autoscaler.evaluate().await
}

pub(crate) const PERIOD: Duration = Duration::from_secs(15);
