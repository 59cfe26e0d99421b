//! The drain delay on paused tokio time: a ready instance keeps running
//! between `Stopping` and its cancellation, inside its grace period; an
//! instance out of rotation is cancelled at once; bad values are rejected.

#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_core::{
    BackoffPolicy, ChildPolicy, ChildSpec, EventKind, EventStream, LifecycleEvent, SpecError, SupervisorSpec,
};
use tokio::time::Instant;

mod support;
use support::start;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DRAIN: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(5);

/// When each instance (by ordinal in its id) saw its cancellation.
type Seen = Arc<Mutex<Vec<(String, Instant)>>>;

/// A replica group whose instances record when they see cancellation, then
/// take `linger` to finish.
fn web(replicas: usize, seen: &Seen, linger: Duration) -> ChildSpec {
    let seen = seen.clone();
    ChildSpec::task("web", move |ctx| {
        let seen = seen.clone();
        async move {
            ctx.cancelled().await;
            seen.lock().unwrap().push((ctx.id().to_string(), Instant::now()));
            tokio::time::sleep(linger).await;
            Ok::<_, BoxError>(())
        }
    })
    .replicas(replicas)
    .drain_delay(DRAIN)
    .shutdown_grace(GRACE)
    .backoff(BackoffPolicy::none())
}

async fn until(events: &mut EventStream, pred: impl FnMut(&LifecycleEvent) -> bool) -> LifecycleEvent {
    support::wait_for(events, Duration::from_secs(3600), pred).await.1
}

fn is(e: &LifecycleEvent, id: &str, kind: fn(&EventKind) -> bool) -> bool {
    e.id.as_str() == id && kind(&e.kind)
}

async fn ready(events: &mut EventStream, n: usize) {
    for _ in 0..n {
        until(events, |e| matches!(e.kind, EventKind::Ready { .. })).await;
    }
}

#[tokio::test(start_paused = true)]
async fn scale_down_cancels_a_ready_instance_only_after_the_drain() {
    let seen = Seen::default();
    let (handle, mut events) = start(web(2, &seen, Duration::ZERO));
    ready(&mut events, 2).await;

    let asked = Instant::now();
    handle.resize("web", 1).await.unwrap();
    let stopping = until(&mut events, |e| is(e, "app/web-1", |k| *k == EventKind::Stopping)).await;
    assert_eq!(stopping.at, asked, "Stopping is published when the stop is asked");
    assert!(seen.lock().unwrap().is_empty(), "not cancelled while draining");

    let stopped = until(&mut events, |e| {
        is(e, "app/web-1", |k| matches!(k, EventKind::Stopped { .. }))
    })
    .await;
    assert_eq!(stopped.kind, EventKind::Stopped { forced: false });
    assert_eq!(*seen.lock().unwrap(), [("app/web-1".to_owned(), asked + DRAIN)]);
    assert_eq!(stopped.at, asked + DRAIN);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_drain_counts_inside_the_grace_period() {
    let seen = Seen::default();
    // Needs 4 s after its cancellation, but only GRACE - DRAIN = 3 s are left.
    let (handle, mut events) = start(web(1, &seen, Duration::from_secs(4)));
    ready(&mut events, 1).await;

    let asked = Instant::now();
    handle.resize("web", 0).await.unwrap();
    let stopped = until(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
    assert_eq!(stopped.kind, EventKind::Stopped { forced: true });
    assert_eq!(stopped.at, asked + GRACE);
    assert_eq!(*seen.lock().unwrap(), [("app/web-0".to_owned(), asked + DRAIN)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_ready_instances_too() {
    let seen = Seen::default();
    let (handle, mut events) = start(web(2, &seen, Duration::ZERO));
    ready(&mut events, 2).await;

    let asked = Instant::now();
    handle.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(_, at)| *at == asked + DRAIN), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn an_instance_out_of_rotation_is_cancelled_at_once() {
    let seen = Seen::default();
    // Never ready: it waits for an announcement that never comes.
    let (handle, mut events) = start(web(1, &seen, Duration::ZERO).ready_on_announce());
    until(&mut events, |e| e.kind == EventKind::Starting).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let asked = Instant::now();
    handle.resize("web", 0).await.unwrap();
    until(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
    assert_eq!(*seen.lock().unwrap(), [("app/web-0".to_owned(), asked)]);
    handle.shutdown().await.unwrap();
}

#[test]
fn the_drain_delay_loads_from_configuration() {
    let p: ChildPolicy =
        serde_json::from_str(r#"{"drain_delay":"1s 500ms","shutdown_grace":"10s"}"#).unwrap();
    assert_eq!(p.drain_delay, Duration::from_millis(1500));
    assert_eq!(ChildPolicy::default().drain_delay, Duration::ZERO);
}

#[test]
fn bad_drain_delays_are_rejected_with_the_field_named() {
    let idle = || {
        ChildSpec::task("web", |ctx| async move {
            ctx.cancelled().await;
            Ok::<_, BoxError>(())
        })
    };
    let build = |child: ChildSpec| SupervisorSpec::builder("app").child(child).build().map(|_| ());
    let field = |r: Result<(), SpecError>| match r {
        Err(SpecError::InvalidField { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    };

    assert_eq!(
        field(build(idle().drain_delay(GRACE).shutdown_grace(GRACE))),
        "children[web].drain_delay"
    );
    assert_eq!(
        field(build(idle().drain_delay(DRAIN).shutdown_grace(Duration::ZERO))),
        "children[web].drain_delay"
    );
    let nested = SupervisorSpec::builder("db").child(idle()).build().unwrap();
    assert_eq!(
        field(build(ChildSpec::supervisor(nested).drain_delay(DRAIN))),
        "children[db].drain_delay"
    );
    assert!(build(idle().drain_delay(DRAIN).shutdown_grace(GRACE)).is_ok());
    assert!(
        build(idle().shutdown_grace(Duration::ZERO)).is_ok(),
        "no drain, no constraint"
    );
}
