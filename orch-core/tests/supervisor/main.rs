//! Supervisor semantics on paused tokio time. One module per part of the
//! contract:
//!
//! - `strategies`: which children restart (strategies and restart types);
//! - `intensity`: how often and how soon (intensity, escalation, backoff);
//! - `shutdown`: stopping order, grace, and drains during supervision;
//! - `replicas`: replica groups and commands;
//! - `events`: snapshot plus stream, readiness, metrics;
//! - `specs`: bad specs and starting outside a runtime.
//!
//! This file holds what they share: children that idle or crash once, and
//! readers of the event stream.

mod events;
mod intensity;
mod replicas;
mod shutdown;
mod specs;
mod strategies;

use std::time::Duration;

use orch_core::{
    BackoffPolicy, ChildSpec, EventKind, EventStream, LifecycleEvent, Supervisor, SupervisorHandle,
    SupervisorSpec, Update,
};

/// The error type of the test children's tasks.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A child that serves until asked to stop.
fn idle(id: &str) -> ChildSpec {
    ChildSpec::task(id, |ctx| async move {
        ctx.cancelled().await;
        Ok::<_, BoxError>(())
    })
    .backoff(BackoffPolicy::none())
}

/// A child whose first incarnation crashes after `after`; later ones serve.
fn crashes_once(id: &str, after: Duration) -> ChildSpec {
    ChildSpec::task(id, move |ctx| async move {
        if ctx.generation() == 0 {
            tokio::time::sleep(after).await;
            return Err::<(), BoxError>("boom".into());
        }
        ctx.cancelled().await;
        Ok(())
    })
    .backoff(BackoffPolicy::none())
}

/// A child that crashes every `every`, forever.
fn crash_loop(id: &str, every: Duration) -> ChildSpec {
    ChildSpec::task(id, move |_ctx| async move {
        tokio::time::sleep(every).await;
        Err::<(), BoxError>("crash".into())
    })
    .backoff(BackoffPolicy::none())
}

/// Reads events until one matches `pred`; returns all read, the match last.
async fn until(
    events: &mut EventStream,
    mut pred: impl FnMut(&LifecycleEvent) -> bool,
) -> Vec<LifecycleEvent> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(update) = events.next().await {
            if let Update::Event(e) = update {
                let done = pred(&e);
                seen.push(e);
                if done {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), read)
        .await
        .unwrap_or_else(|_| panic!("no matching event; saw {seen:#?}"));
    seen
}

/// Whether `e` is of child `id` (its full path) and of `kind`.
fn is(e: &LifecycleEvent, id: &str, kind: fn(&EventKind) -> bool) -> bool {
    e.id.as_str() == id && kind(&e.kind)
}

/// Event-kind predicates, for [`is`] and [`until`].
fn ready(k: &EventKind) -> bool {
    matches!(k, EventKind::Ready { .. })
}
fn starting(k: &EventKind) -> bool {
    matches!(k, EventKind::Starting)
}
fn exited(k: &EventKind) -> bool {
    matches!(k, EventKind::Exited { .. })
}
fn stopped(k: &EventKind) -> bool {
    matches!(k, EventKind::Stopped { .. })
}

/// (id, short kind) pairs, for asserting orders.
fn trace(events: &[LifecycleEvent]) -> Vec<(String, &'static str)> {
    events
        .iter()
        .map(|e| {
            let k = match e.kind {
                EventKind::Starting => "starting",
                EventKind::Ready { .. } => "ready",
                EventKind::NotReady => "not_ready",
                EventKind::Exited { .. } => "exited",
                EventKind::Restarting { .. } => "restarting",
                EventKind::Stopping => "stopping",
                EventKind::Stopped { .. } => "stopped",
            };
            (e.id.to_string(), k)
        })
        .collect()
}

/// Starts `spec` and subscribes before the supervisor task first runs (the
/// test runtime is single-threaded), so no event is missed.
fn start(spec: SupervisorSpec) -> (SupervisorHandle, EventStream) {
    let handle = Supervisor::start(spec).expect("inside a runtime");
    let events = handle.subscribe().events;
    (handle, events)
}

/// Reads events until `n` children have become ready.
async fn all_ready(events: &mut EventStream, n: usize) -> Vec<LifecycleEvent> {
    let mut count = 0;
    until(events, |e| {
        count += usize::from(ready(&e.kind));
        count == n
    })
    .await
}

/// Reads events until `n` children have stopped.
async fn stopped_count(events: &mut EventStream, n: usize) -> Vec<LifecycleEvent> {
    let mut count = 0;
    until(events, |e| {
        count += usize::from(stopped(&e.kind));
        count == n
    })
    .await
}

/// The ids of the `kind` events of a [`trace`], in order.
fn ids(events: &[(String, &'static str)], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(i, _)| i.clone())
        .collect()
}
