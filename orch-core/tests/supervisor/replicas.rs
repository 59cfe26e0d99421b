//! Replica groups and commands: a group resizes up and down (dropping
//! not-ready instances first) and is a scaler; `start`, `terminate`,
//! `restart` and `delete` act on one child and report bad requests.

use std::time::Duration;

use orch_core::{CommandError, Supervisor, SupervisorSpec};

use super::{all_ready, idle, start, stopped_count};

// ===== replica groups and commands =====

#[tokio::test(start_paused = true)]
async fn replica_group_resizes_up_and_down() {
    let spec = SupervisorSpec::builder("s")
        .child(idle("web").replicas(2))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 2).await;
    handle.resize("web", 5).await.expect("resize up");
    all_ready(&mut events, 3).await;
    let ids: Vec<_> = handle.instances().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["s/web-0", "s/web-1", "s/web-2", "s/web-3", "s/web-4"]);
    handle.resize("web", 2).await.expect("resize down");
    stopped_count(&mut events, 3).await;
    let ids: Vec<_> = handle.instances().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["s/web-0", "s/web-1"], "highest ordinals go first");
    let info = &handle.children().await.expect("alive")[0];
    assert_eq!((info.desired, info.instances, info.ready), (2, 2, 2));
    handle.resize("web", 0).await.expect("to zero");
    stopped_count(&mut events, 2).await;
    assert!(handle.instances().is_empty());
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn scale_down_prefers_not_ready_instances() {
    use orch_core::{ProbeOutcome, ProbeSpec, probe_fn};
    // web-0 never becomes ready; scaling 3 -> 2 must remove it, not web-2.
    let spec = SupervisorSpec::builder("s")
        .child(
            idle("web").replicas(3).readiness(
                ProbeSpec::new(probe_fn(|t| async move {
                    if t.id.as_str().ends_with("-0") {
                        ProbeOutcome::Unhealthy
                    } else {
                        ProbeOutcome::Healthy
                    }
                }))
                .period(Duration::from_secs(1)),
            ),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 2).await;
    handle.resize("web", 2).await.expect("resize");
    stopped_count(&mut events, 1).await;
    let ids: Vec<_> = handle.instances().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["s/web-1", "s/web-2"]);
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn replica_group_is_a_scaler() {
    use orch_core::Scaler;
    let spec = SupervisorSpec::builder("s")
        .child(idle("web").replicas(1))
        .build()
        .expect("valid");
    let handle = Supervisor::start(spec).expect("runtime");
    let group = handle.replica_group("web");
    assert_eq!(group.current().await.expect("current"), 1);
    group.scale_to(4).await.expect("scale");
    assert_eq!(group.current().await.expect("current"), 4);
    assert!(handle.replica_group("nope").scale_to(1).await.is_err());
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn commands_start_terminate_restart_delete() {
    let spec = SupervisorSpec::builder("s")
        .child(idle("a"))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    all_ready(&mut events, 1).await;

    handle.start_child(idle("b")).await.expect("new child");
    assert_eq!(
        handle.start_child(idle("b")).await,
        Err(CommandError::DuplicateChild("b".into()))
    );
    all_ready(&mut events, 1).await;

    handle.terminate_child("a").await.expect("terminate");
    let names: Vec<_> = handle.instances().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(names, ["s/b"]);
    let a = handle
        .children()
        .await
        .expect("alive")
        .into_iter()
        .find(|c| c.id == "a")
        .expect("kept");
    assert_eq!((a.desired, a.instances), (0, 0));

    handle.restart_child("a").await.expect("restart terminated");
    let seen = all_ready(&mut events, 1).await;
    assert_eq!(seen.last().map(|e| e.id.to_string()), Some("s/a".into()));

    handle.restart_child("b").await.expect("restart running");
    all_ready(&mut events, 1).await;

    handle.delete_child("a").await.expect("delete");
    let children: Vec<_> = handle
        .children()
        .await
        .expect("alive")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(children, ["b"]);

    assert_eq!(
        handle.resize("b", 3).await,
        Err(CommandError::NotAGroup("b".into()))
    );
    assert_eq!(
        handle.terminate_child("zz").await,
        Err(CommandError::NoSuchChild("zz".into()))
    );
    let bad = idle("").replicas(1);
    assert!(matches!(
        handle.start_child(bad).await,
        Err(CommandError::InvalidSpec(_))
    ));
    handle.shutdown().await.expect("clean");
    assert_eq!(handle.children().await, Err(CommandError::Stopped));
}
