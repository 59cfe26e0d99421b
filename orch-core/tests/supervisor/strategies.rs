//! Which children restart after an exit: the strategy picks the siblings
//! (one-for-one, one-for-all in reverse-then-forward order, rest-for-one),
//! and each child's restart type decides whether its exit is restarted at
//! all (permanent, transient, temporary; a panic is a crash).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orch_core::{
    BackoffPolicy, ChildSpec, EventKind, ExitReason, InstanceInfo, RestartIntensity, RestartType, Strategy,
    Supervisor, SupervisorHandle, SupervisorSpec,
};

use super::{BoxError, all_ready, crashes_once, exited, idle, ids, is, ready, start, stopped, trace, until};

// ===== strategies =====

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_crashed_child() {
    let spec = SupervisorSpec::builder("s")
        .child(idle("a"))
        .child(crashes_once("b", Duration::from_secs(1)))
        .child(idle("c"))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let seen = until(&mut events, |e| e.generation == 1 && ready(&e.kind)).await;
    assert_eq!(seen.last().map(|e| e.id.as_str()), Some("s/b"));
    let after_crash: Vec<_> = seen.iter().skip_while(|e| !exited(&e.kind)).collect();
    assert!(
        after_crash.iter().all(|e| e.id.as_str() == "s/b"),
        "{after_crash:#?}"
    );
    let gens: Vec<_> = handle
        .instances()
        .iter()
        .map(|i| (i.id.to_string(), i.generation))
        .collect();
    assert_eq!(gens, [("s/a".into(), 0), ("s/b".into(), 1), ("s/c".into(), 0)]);
    handle.shutdown().await.expect("clean shutdown");
}

/// Runs `b` crashing once among idle siblings under `strategy`; returns the
/// handle and the trace from the crash until `restarted` instances are ready again.
async fn crash_b_under(
    strategy: Strategy,
    children: &[&str],
    restarted: usize,
) -> (SupervisorHandle, Vec<(String, &'static str)>) {
    let mut builder = SupervisorSpec::builder("s").strategy(strategy);
    for &id in children {
        builder = builder.child(if id == "b" {
            crashes_once("b", Duration::from_secs(1))
        } else {
            idle(id)
        });
    }
    let (handle, mut events) = start(builder.build().expect("valid"));
    all_ready(&mut events, children.len()).await;
    let seen = all_ready(&mut events, restarted).await;
    (handle, trace(&seen))
}

#[tokio::test(start_paused = true)]
async fn one_for_all_stops_the_rest_in_reverse_then_restarts_all_in_order() {
    let (handle, seen) = crash_b_under(Strategy::OneForAll, &["a", "b", "c"], 3).await;
    assert_eq!(ids(&seen, "exited"), ["s/b"]);
    assert_eq!(ids(&seen, "stopping"), ["s/c", "s/a"], "reverse start order");
    assert_eq!(ids(&seen, "starting"), ["s/a", "s/b", "s/c"], "start order");
    assert!(
        ids(&seen, "stopped").is_empty(),
        "restarted siblings are not Stopped"
    );
    assert!(handle.instances().iter().all(|i| i.generation == 1));
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_crashed_child_and_those_after_it() {
    let (handle, seen) = crash_b_under(Strategy::RestForOne, &["a", "b", "c", "d"], 3).await;
    assert_eq!(ids(&seen, "stopping"), ["s/d", "s/c"]);
    assert_eq!(ids(&seen, "starting"), ["s/b", "s/c", "s/d"]);
    let gens: Vec<_> = handle.instances().iter().map(|i| i.generation).collect();
    assert_eq!(gens, [0, 1, 1, 1]);
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn one_for_all_drops_temporary_siblings() {
    let spec = SupervisorSpec::builder("s")
        .strategy(Strategy::OneForAll)
        .child(idle("tmp").restart(RestartType::Temporary))
        .child(crashes_once("b", Duration::from_secs(1)))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let seen = until(&mut events, |e| e.generation == 1 && ready(&e.kind)).await;
    assert!(seen.iter().any(|e| is(e, "s/tmp", stopped)));
    let ids: Vec<_> = handle.instances().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["s/b"]);
    handle.shutdown().await.expect("clean shutdown");
}

// ===== restart types =====

fn exits_with(id: &str, ok: bool, restart: RestartType, runs: Arc<AtomicUsize>) -> ChildSpec {
    ChildSpec::task(id, move |_ctx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if ok {
                Ok(())
            } else {
                Err::<(), BoxError>("failed".into())
            }
        }
    })
    .restart(restart)
    .backoff(BackoffPolicy::none())
}

async fn runs_within(restart: RestartType, ok: bool, window: Duration) -> (usize, Vec<InstanceInfo>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let spec = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(100, Duration::from_secs(1)))
        .child(exits_with("x", ok, restart, runs.clone()))
        .build()
        .expect("valid");
    let handle = Supervisor::start(spec).expect("runtime");
    tokio::time::sleep(window).await;
    let instances = handle.instances();
    handle.shutdown().await.expect("clean shutdown");
    (runs.load(Ordering::SeqCst), instances)
}

#[tokio::test(start_paused = true)]
async fn permanent_restarts_after_normal_and_abnormal_exits() {
    assert_eq!(
        runs_within(RestartType::Permanent, true, Duration::from_millis(3500))
            .await
            .0,
        4
    );
    assert_eq!(
        runs_within(RestartType::Permanent, false, Duration::from_millis(3500))
            .await
            .0,
        4
    );
}

#[tokio::test(start_paused = true)]
async fn transient_restarts_only_after_abnormal_exits() {
    let (runs, left) = runs_within(RestartType::Transient, true, Duration::from_millis(3500)).await;
    assert_eq!(runs, 1);
    assert!(left.is_empty(), "a transient child that exited normally is gone");
    assert_eq!(
        runs_within(RestartType::Transient, false, Duration::from_millis(3500))
            .await
            .0,
        4
    );
}

#[tokio::test(start_paused = true)]
async fn temporary_is_never_restarted() {
    let (runs, left) = runs_within(RestartType::Temporary, false, Duration::from_millis(3500)).await;
    assert_eq!(runs, 1);
    assert!(left.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_child_is_a_crash_not_a_supervisor_crash() {
    let spec = SupervisorSpec::builder("s")
        .child(
            ChildSpec::task("p", |ctx| async move {
                if ctx.generation() == 0 {
                    panic!("child bug");
                }
                ctx.cancelled().await;
                Ok::<_, BoxError>(())
            })
            .backoff(BackoffPolicy::none()),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let seen = until(&mut events, |e| e.generation == 1 && ready(&e.kind)).await;
    let reason = seen.iter().find_map(|e| match &e.kind {
        EventKind::Exited { reason } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, Some(ExitReason::Panicked("child bug".into())));
    handle.shutdown().await.expect("supervisor survived the panic");
}
