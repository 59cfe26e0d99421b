//! Stopping children: in reverse start order, each given its grace period
//! before it is aborted, and a slow drain never blocks the supervision of
//! the other children.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orch_core::{ChildSpec, EventKind, SupervisorSpec, Update};

use super::{BoxError, all_ready, crashes_once, idle, ids, is, ready, start, stopped, trace, until};

// ===== shutdown =====

#[tokio::test(start_paused = true)]
async fn shutdown_stops_children_in_reverse_start_order() {
    let spec = SupervisorSpec::builder("s")
        .child(idle("a"))
        .child(idle("b").replicas(2))
        .child(idle("c"))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 4).await;
    handle.shutdown().await.expect("clean");
    let mut rest = Vec::new();
    while let Some(Update::Event(e)) = events.next().await {
        rest.push(e);
    }
    let t = trace(&rest);
    assert_eq!(ids(&t, "stopped"), ["s/c", "s/b-1", "s/b-0", "s/a"]);
    assert!(
        rest.iter()
            .all(|e| !matches!(e.kind, EventKind::Stopped { forced: true }))
    );
}

#[tokio::test(start_paused = true)]
async fn grace_period_then_abort() {
    let drained = Arc::new(AtomicUsize::new(0));
    let d = drained.clone();
    let spec = SupervisorSpec::builder("s")
        .child(
            ChildSpec::task("slow", move |ctx| {
                let d = d.clone();
                async move {
                    ctx.cancelled().await;
                    // Draining takes 3 s: within a 5 s grace.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, BoxError>(())
                }
            })
            .shutdown_grace(Duration::from_secs(5)),
        )
        .child(
            ChildSpec::task("stuck", |_ctx| async move {
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(())
            })
            .shutdown_grace(Duration::from_secs(2)),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 2).await;
    let t0 = tokio::time::Instant::now();
    handle.shutdown().await.expect("clean");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "2 s grace for stuck, then 3 s drain for slow"
    );
    assert_eq!(drained.load(Ordering::SeqCst), 1);
    let mut stops = Vec::new();
    while let Some(Update::Event(e)) = events.next().await {
        if let EventKind::Stopped { forced } = e.kind {
            stops.push((e.id.to_string(), forced));
        }
    }
    assert_eq!(stops, [("s/stuck".into(), true), ("s/slow".into(), false)]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_drain_does_not_block_supervision() {
    // web drains for 30 s when scaled down; meanwhile a crash of another
    // child is still handled at once.
    let spec = SupervisorSpec::builder("s")
        .child(
            ChildSpec::task("web", |ctx| async move {
                ctx.cancelled().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, BoxError>(())
            })
            .replicas(2)
            .shutdown_grace(Duration::from_secs(60)),
        )
        .child(crashes_once("b", Duration::from_secs(1)))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 3).await;
    let t0 = tokio::time::Instant::now();
    handle.resize("web", 1).await.expect("resize");
    let seen = until(&mut events, |e| is(e, "s/b", ready) && e.generation == 1).await;
    assert!(
        seen.last().map(|e| e.at - t0) < Some(Duration::from_secs(2)),
        "restart waited for the drain"
    );
    let seen = until(&mut events, |e| is(e, "s/web-1", stopped)).await;
    assert_eq!(seen.last().map(|e| e.at - t0), Some(Duration::from_secs(30)));
    handle.shutdown().await.expect("clean");
}
