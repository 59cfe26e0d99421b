//! What happened to the tree: every lifecycle event of the supervisor and
//! every decision of the autoscaler that changed something, kept for the
//! report and logged as they happen.

use std::sync::{Arc, Mutex};

use orch::core::{
    EventKind, LifecycleEvent, SupervisorHandle, Update,
    autoscale::{AutoscalerHandle, Outcome},
};
use serde::Serialize;
use tokio::time::Instant;

/// A scale event of the autoscaler, with its reason.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleEvent {
    /// Seconds since the run started.
    pub at_secs: f64,
    /// Replicas before.
    pub from: usize,
    /// Replicas asked for.
    pub to: usize,
    /// Why, as the autoscaler put it.
    pub reason: String,
}

/// The events and scale events so far.
#[derive(Debug, Default)]
pub struct Timeline {
    events: Mutex<Vec<LifecycleEvent>>,
    scales: Mutex<Vec<ScaleEvent>>,
}

impl Timeline {
    /// Follows `handle`'s lifecycle events and `autoscaler`'s decisions
    /// until they end, from `started` on.
    pub fn follow(
        self: &Arc<Self>,
        handle: &SupervisorHandle,
        autoscaler: &AutoscalerHandle,
        started: Instant,
    ) {
        let mut events = handle.subscribe().events;
        let timeline = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(update) = events.next().await {
                let Update::Event(event) = update else { continue };
                log(&event);
                timeline
                    .events
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event);
            }
        });
        let mut decisions = autoscaler.subscribe();
        let timeline = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(decision) = decisions.next().await {
                let Outcome::Scaled { from, to } = decision.outcome else {
                    continue;
                };
                let at_secs = decision.at.saturating_duration_since(started).as_secs_f64();
                tracing::info!(from, to, reason = %decision.reason, "autoscaler: orders scaled");
                let event = ScaleEvent {
                    at_secs,
                    from,
                    to,
                    reason: decision.reason.clone(),
                };
                timeline
                    .scales
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event);
            }
        });
    }

    /// The lifecycle events so far.
    pub fn events(&self) -> Vec<LifecycleEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The scale events so far.
    pub fn scales(&self) -> Vec<ScaleEvent> {
        self.scales.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Logs the events a reader of the demo wants to see: crashes, restarts,
/// replicas joining and leaving rotation.
fn log(event: &LifecycleEvent) {
    let (id, generation) = (event.id.as_str(), event.generation);
    match &event.kind {
        EventKind::Exited { reason } => tracing::info!(instance = id, generation, %reason, "exited"),
        EventKind::Restarting { attempt, delay } => {
            tracing::info!(
                instance = id,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "restarting"
            )
        }
        EventKind::Ready { address } => {
            let address = address.map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(instance = id, generation, %address, "ready: in rotation")
        }
        EventKind::NotReady => tracing::info!(instance = id, generation, "not ready: out of rotation"),
        EventKind::Stopped { forced } => tracing::debug!(instance = id, forced, "stopped"),
        _ => {}
    }
}
