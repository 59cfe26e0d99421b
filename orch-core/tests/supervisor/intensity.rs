//! How often and how soon children restart: more restarts than the
//! intensity allows within its window stop every child and fail the
//! supervisor, the failure escalates up the tree, and each restart waits for
//! its backoff, which resets after a stable run.

use std::time::Duration;

use orch_core::{
    BackoffPolicy, ChildSpec, EventKind, ExitReason, RestartIntensity, Supervisor, SupervisorError,
    SupervisorSpec, Update,
};

use super::{
    BoxError, crash_loop, crashes_once, exited, idle, ids, is, ready, start, starting, stopped, trace, until,
};

// ===== intensity and escalation =====

#[tokio::test(start_paused = true)]
async fn exceeding_the_intensity_stops_all_children_and_fails() {
    let spec = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(2, Duration::from_secs(10)))
        .child(idle("a"))
        .child(crash_loop("b", Duration::from_secs(1)))
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let err = handle.wait().await.expect_err("must give up");
    assert_eq!(
        err,
        SupervisorError::IntensityExceeded {
            supervisor: "s".into(),
            child: "b".into(),
            max_restarts: 2,
            within: Duration::from_secs(10),
        }
    );
    let mut rest = Vec::new();
    while let Some(Update::Event(e)) = events.next().await {
        rest.push(e);
    }
    let t = trace(&rest);
    assert_eq!(
        t.iter().filter(|(_, k)| *k == "exited").count(),
        3,
        "third crash is one too many"
    );
    assert_eq!(ids(&t, "stopped"), ["s/b", "s/a"]);
    assert!(handle.instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn crashes_spread_wider_than_the_window_never_trip_it() {
    let spec = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(1, Duration::from_secs(5)))
        .child(crash_loop("b", Duration::from_secs(6)))
        .build()
        .expect("valid");
    let handle = Supervisor::start(spec).expect("runtime");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(handle.children().await.expect("alive")[0].instances, 1);
    handle.shutdown().await.expect("never failed");
}

#[tokio::test(start_paused = true)]
async fn escalation_travels_up_two_levels() {
    let leaf_sup = SupervisorSpec::builder("leaf")
        .intensity(RestartIntensity::new(0, Duration::from_secs(5)))
        .child(crash_loop("worker", Duration::from_secs(1)))
        .build()
        .expect("valid");
    let mid = SupervisorSpec::builder("mid")
        .intensity(RestartIntensity::new(1, Duration::from_secs(60)))
        .child(ChildSpec::supervisor(leaf_sup).backoff(BackoffPolicy::none()))
        .build()
        .expect("valid");
    let root = SupervisorSpec::builder("root")
        .intensity(RestartIntensity::new(0, Duration::from_secs(60)))
        .child(idle("bystander"))
        .child(ChildSpec::supervisor(mid).backoff(BackoffPolicy::none()))
        .build()
        .expect("valid");
    let (handle, mut events) = start(root);
    let mut all = until(&mut events, |e| is(e, "root/mid/leaf/worker", ready)).await;
    let mid = handle.nested("mid").expect("nested handle");
    assert_eq!(mid.path(), "root/mid");
    assert!(mid.nested("leaf").is_some());
    let err = handle.wait().await.expect_err("root gives up");
    assert!(
        matches!(&err, SupervisorError::IntensityExceeded { supervisor, child, .. } if supervisor == "root" && child == "mid")
    );
    while let Some(Update::Event(e)) = events.next().await {
        all.push(e);
    }
    let escalations: Vec<_> = all
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Exited {
                reason: ExitReason::Escalated(_),
            } => Some(e.id.to_string()),
            _ => None,
        })
        .collect();
    // leaf fails twice into mid (restarted once), mid then fails into root.
    assert_eq!(escalations, ["root/mid/leaf", "root/mid/leaf", "root/mid"]);
    assert!(all.iter().any(|e| is(e, "root/bystander", stopped)));
}

// ===== backoff =====

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_resets_after_a_stable_run() {
    let policy = BackoffPolicy::default()
        .initial(Duration::from_millis(100))
        .max(Duration::from_secs(10))
        .jitter(false)
        .reset_after(Duration::from_secs(30));
    let spec = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(100, Duration::from_secs(1)))
        .child(
            ChildSpec::task("b", |ctx| async move {
                // Generations 0-3 crash at once; 4 runs stably for a minute.
                if ctx.generation() == 4 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Err::<(), BoxError>("crash".into())
            })
            .backoff(policy),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let mut delays = Vec::new();
    until(&mut events, |e| {
        if let EventKind::Restarting { attempt, delay } = e.kind {
            delays.push((attempt, delay));
        }
        delays.len() == 6
    })
    .await;
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        delays,
        [
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (4, ms(800)),
            (1, ms(100)),
            (2, ms(200))
        ]
    );
    handle.shutdown().await.expect("clean");
}

#[tokio::test(start_paused = true)]
async fn restart_waits_for_its_delay() {
    let spec = SupervisorSpec::builder("s")
        .child(
            crashes_once("b", Duration::ZERO).backoff(
                BackoffPolicy::default()
                    .initial(Duration::from_secs(5))
                    .jitter(false),
            ),
        )
        .build()
        .expect("valid");
    let (handle, mut events) = start(spec);
    let seen = until(&mut events, |e| e.generation == 1 && starting(&e.kind)).await;
    let exit_at = seen.iter().find(|e| exited(&e.kind)).map(|e| e.at).expect("exit");
    let start_at = seen.last().map(|e| e.at).expect("start");
    assert_eq!(start_at - exit_at, Duration::from_secs(5));
    handle.shutdown().await.expect("clean");
}
