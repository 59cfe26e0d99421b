//! What the supervisor reports: a snapshot plus the event stream never has
//! a gap, readiness on announce waits for the address, and restarts and
//! crashes are counted in metrics.

use std::time::Duration;

use orch_core::{ChildSpec, EventKind, RestartIntensity, Supervisor, SupervisorSpec, Update};

use super::{BoxError, crash_loop, crashes_once, idle, ready, start, until};

// ===== events =====

#[tokio::test(start_paused = true)]
async fn snapshot_plus_stream_never_has_a_gap() {
    let spec = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(1000, Duration::from_secs(1)))
        .child(crash_loop("flaky", Duration::from_millis(700)).replicas(3))
        .child(idle("steady").replicas(2))
        .build()
        .expect("valid");
    let handle = Supervisor::start(spec).expect("runtime");
    // Subscribe at several points while restarts are in flight; each view
    // rebuilt from snapshot + events must equal the tree's own state.
    let mut subs = Vec::new();
    for step in 0..5 {
        tokio::time::sleep(Duration::from_millis(333 * step)).await;
        subs.push(handle.subscribe());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let truth = handle.instances();
    for sub in subs {
        let mut view: std::collections::BTreeMap<String, (u64, &'static str)> = sub
            .snapshot
            .iter()
            .map(|i| {
                (
                    i.id.to_string(),
                    (i.generation, if i.state.is_ready() { "ready" } else { "other" }),
                )
            })
            .collect();
        let mut events = sub.events;
        while let Ok(Some(update)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
            let Update::Event(e) = update else {
                panic!("no lag expected")
            };
            match e.kind {
                EventKind::Stopped { .. } => {
                    view.remove(e.id.as_str());
                }
                EventKind::Ready { .. } => {
                    view.insert(e.id.to_string(), (e.generation, "ready"));
                }
                _ => {
                    view.insert(e.id.to_string(), (e.generation, "other"));
                }
            }
        }
        let expected: std::collections::BTreeMap<_, _> = truth
            .iter()
            .map(|i| {
                (
                    i.id.to_string(),
                    (i.generation, if i.state.is_ready() { "ready" } else { "other" }),
                )
            })
            .collect();
        assert_eq!(view, expected);
    }
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn ready_on_announce_waits_for_the_address() {
    let spec = SupervisorSpec::builder("s")
        .child(
            ChildSpec::task("srv", |ctx| async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                ctx.announce("127.0.0.1:4000".parse().expect("addr"));
                ctx.cancelled().await;
                Ok::<_, BoxError>(())
            })
            .ready_on_announce(),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let seen = until(&mut events, |e| ready(&e.kind)).await;
    let start_at = seen[0].at;
    let last = seen.last().expect("ready");
    assert_eq!(
        last.kind,
        EventKind::Ready {
            address: Some("127.0.0.1:4000".parse().expect("addr"))
        }
    );
    assert_eq!(last.at - start_at, Duration::from_secs(2));
    assert_eq!(
        handle.instances()[0].address,
        Some("127.0.0.1:4000".parse().expect("addr"))
    );
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn restarts_and_crashes_are_counted_in_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let spec = SupervisorSpec::builder("s")
        .child(crashes_once("b", Duration::from_secs(1)))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    until(&mut events, |e| e.generation == 1 && ready(&e.kind)).await;
    handle.shutdown().await.expect("clean");
    let counters: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_owned(), n)),
            _ => None,
        })
        .collect();
    assert!(
        counters.contains(&("orch_supervisor_restarts_total".into(), 1)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("orch_child_crashes_total".into(), 1)),
        "{counters:?}"
    );
}
