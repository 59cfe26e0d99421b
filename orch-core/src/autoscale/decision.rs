//! The record every evaluation leaves: what the autoscaler saw, what each
//! policy said, what it did and why. Operators read it to trust (or tune)
//! the autoscaler; tests read it to assert behaviour. It also goes out as
//! traces and metrics.

use std::{fmt, sync::Arc, time::SystemTime};

use tokio::{sync::broadcast, time::Instant};

use super::Recommendation;

/// One evaluation, from inputs to outcome.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// When (tokio's clock).
    pub at: Instant,
    /// When, on the wall clock the schedule policies read.
    pub wall: SystemTime,
    /// Replicas asked for when the evaluation began.
    pub current: usize,
    /// Of them, ready.
    pub ready: usize,
    /// Each metric read, by name.
    pub inputs: Vec<(String, MetricState)>,
    /// Each policy's recommendation, in configuration order.
    pub recommendations: Vec<Recommendation>,
    /// The count after each step, in order: combined recommendation,
    /// scale-to-zero cooldown, stabilization, cooldown and rate limit,
    /// min/max clamp.
    pub steps: Steps,
    /// What was done.
    pub outcome: Outcome,
    /// Why, in one sentence.
    pub reason: String,
}

/// A metric as one evaluation saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricState {
    /// A value young enough to use.
    Fresh(f64),
    /// A value older than `max_sample_age`: treated as missing.
    Stale {
        /// The value.
        value: f64,
        /// Its age in seconds.
        age_secs: f64,
    },
    /// No value, and why.
    Missing(String),
}

/// The replica count after each step of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steps {
    /// The highest policy vote (holds keep the current count; no vote at
    /// all gives the floor).
    pub recommended: usize,
    /// After the scale-to-zero cooldown.
    pub cooled: usize,
    /// After the stabilization windows.
    pub stabilized: usize,
    /// After the direction's cooldown and rate policies.
    pub rate_limited: usize,
    /// After `min_replicas` and `max_replicas`: the target.
    pub target: usize,
}

/// What an evaluation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target is the current count.
    Unchanged,
    /// The scaler was asked to move.
    Scaled {
        /// From this many replicas.
        from: usize,
        /// To this many.
        to: usize,
    },
    /// Dry run: it would have moved to `would`.
    DryRun {
        /// The target it did not apply.
        would: usize,
    },
    /// The scaler refused or failed; the next evaluation tries again.
    Failed(String),
    /// The scaler could not say how many replicas there are: nothing was
    /// decided.
    StatusUnavailable(String),
}

impl Decision {
    /// Traces and metrics of one self.
    pub(crate) fn report(&self, autoscaler: &str) {
        let name = autoscaler.to_owned();
        metrics::gauge!("orch_autoscaler_target_replicas", "autoscaler" => name.clone())
            .set(self.steps.target as f64);
        for (metric, state) in &self.inputs {
            if let MetricState::Fresh(value) = state {
                metrics::gauge!("orch_autoscaler_metric_value", "autoscaler" => name.clone(), "metric" => metric.clone())
                    .set(*value);
            }
        }
        match &self.outcome {
            Outcome::Scaled { from, to } => {
                let direction = if to > from { "up" } else { "down" };
                metrics::counter!("orch_autoscaler_scale_events_total", "autoscaler" => name, "direction" => direction)
                    .increment(1);
                tracing::info!(autoscaler, from, to, reason = %self.reason, "autoscaler: scaled");
            }
            Outcome::Failed(error) => {
                metrics::counter!("orch_autoscaler_scale_failures_total", "autoscaler" => name).increment(1);
                tracing::warn!(autoscaler, %error, target = self.steps.target, "autoscaler: scaling failed");
            }
            Outcome::DryRun { would } => {
                tracing::info!(autoscaler, current = self.current, would, reason = %self.reason, "autoscaler: dry run");
            }
            Outcome::Unchanged | Outcome::StatusUnavailable(_) => {
                tracing::debug!(autoscaler, current = self.current, reason = %self.reason, "autoscaler: unchanged");
            }
        }
    }
}

impl fmt::Display for Decision {
    /// The decision as an operator reads it: outcome and reason, then each
    /// input and recommendation on a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Unchanged => write!(f, "unchanged at {}", self.current)?,
            Outcome::Scaled { from, to } => write!(f, "scaled {from} -> {to}")?,
            Outcome::DryRun { would } => write!(f, "dry run: would scale {} -> {would}", self.current)?,
            Outcome::Failed(error) => write!(f, "scaling failed: {error}")?,
            Outcome::StatusUnavailable(error) => write!(f, "no status: {error}")?,
        }
        writeln!(f, ": {}", self.reason)?;
        writeln!(f, "  replicas: {} asked for, {} ready", self.current, self.ready)?;
        for (metric, state) in &self.inputs {
            match state {
                MetricState::Fresh(value) => writeln!(f, "  metric {metric}: {value}")?,
                MetricState::Stale { value, age_secs } => {
                    writeln!(f, "  metric {metric}: {value}, stale ({age_secs:.1} s old)")?
                }
                MetricState::Missing(why) => writeln!(f, "  metric {metric}: missing ({why})")?,
            }
        }
        for r in &self.recommendations {
            writeln!(f, "  {}: {:?} ({})", r.policy, r.vote, r.reason)?;
        }
        let s = &self.steps;
        write!(
            f,
            "  steps: recommended {}, cooled {}, stabilized {}, rate-limited {}, target {}",
            s.recommended, s.cooled, s.stabilized, s.rate_limited, s.target
        )
    }
}

/// The last decision plus every later one, with no gap between them (as
/// the supervisor's event subscription).
#[derive(Debug)]
pub struct DecisionSubscription {
    /// The decision before subscribing, if any.
    pub last: Option<Arc<Decision>>,
    receiver: broadcast::Receiver<Arc<Decision>>,
}

impl DecisionSubscription {
    /// The next decision; `None` once the autoscaler is dropped. A
    /// subscriber that falls more than 256 decisions behind skips the
    /// oldest.
    pub async fn next(&mut self) -> Option<Arc<Decision>> {
        loop {
            match self.receiver.recv().await {
                Ok(decision) => return Some(decision),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Where decisions are published: the last one and a broadcast, under one
/// lock so that a subscriber sees no gap and no repeat.
#[derive(Debug)]
pub(crate) struct DecisionLog {
    inner: std::sync::Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    last: Option<Arc<Decision>>,
    sender: broadcast::Sender<Arc<Decision>>,
}

impl DecisionLog {
    pub(crate) fn new() -> Self {
        Self {
            inner: std::sync::Mutex::new(LogState {
                last: None,
                sender: broadcast::channel(256).0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn publish(&self, decision: Decision) -> Arc<Decision> {
        let decision = Arc::new(decision);
        let mut inner = self.lock();
        inner.last = Some(Arc::clone(&decision));
        // No subscriber is not an error: the last decision is kept anyway.
        let _ = inner.sender.send(Arc::clone(&decision));
        decision
    }

    pub(crate) fn last(&self) -> Option<Arc<Decision>> {
        self.lock().last.clone()
    }

    pub(crate) fn subscribe(&self) -> DecisionSubscription {
        let inner = self.lock();
        DecisionSubscription {
            last: inner.last.clone(),
            receiver: inner.sender.subscribe(),
        }
    }
}
