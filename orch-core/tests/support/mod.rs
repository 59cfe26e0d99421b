//! Helpers shared by the integration tests of orch-core.
#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use orch_core::{
    ChildSpec, EventKind, EventStream, LifecycleEvent, Supervisor, SupervisorHandle, SupervisorSpec, Update,
};

/// Starts a supervisor `app` with one child and subscribes before the
/// supervisor task first runs (the test runtime is single-threaded), so the
/// stream holds every event from the first `Starting` on.
pub fn start(child: ChildSpec) -> (SupervisorHandle, EventStream) {
    let spec = SupervisorSpec::builder("app")
        .child(child)
        .build()
        .expect("the spec is valid");
    let handle = Supervisor::start(spec).expect("inside a tokio runtime");
    let sub = handle.subscribe();
    assert!(sub.snapshot.is_empty(), "nothing ran before the subscription");
    (handle, sub.events)
}

/// The next lifecycle event, or a panic if none comes within `wait`.
pub async fn next_event(events: &mut EventStream, wait: Duration) -> LifecycleEvent {
    match tokio::time::timeout(wait, events.next()).await {
        Ok(Some(Update::Event(e))) => e,
        Ok(Some(Update::Resync(_))) => panic!("the subscriber lagged; a test this small never should"),
        Ok(None) => panic!("the event stream ended while an event was expected"),
        Err(_) => panic!("no event within {wait:?}"),
    }
}

/// Reads events until one matches `pred`; returns the events before it and it.
pub async fn wait_for(
    events: &mut EventStream,
    wait: Duration,
    mut pred: impl FnMut(&LifecycleEvent) -> bool,
) -> (Vec<LifecycleEvent>, LifecycleEvent) {
    let mut before = Vec::new();
    loop {
        let e = next_event(events, wait).await;
        if pred(&e) {
            return (before, e);
        }
        before.push(e);
    }
}

/// Whether `e` is an exit.
pub fn is_exit(e: &LifecycleEvent) -> bool {
    matches!(e.kind, EventKind::Exited { .. })
}
