//! Scale-down under load: the replicas being stopped receive no request
//! sent after the balancer dropped them, and no caller sees a failure.

use std::collections::BTreeSet;

use orch::core::{EventKind, Scaler};

use super::{CALLERS, Rig, Seen, none_sent_after_removal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_being_stopped_receive_no_new_requests() {
    let Rig {
        servers,
        web,
        mut events,
        tap,
        load,
    } = Rig::start(4).await;
    web.handle.replica_group("web").scale_to(2).await.unwrap();
    let mut stopped = Vec::new();
    for replica in ["app/web-2", "app/web-3"] {
        let stopping = events.wait_for(replica, 0, |k| *k == EventKind::Stopping).await;
        events
            .wait_for(replica, 0, |k| matches!(k, EventKind::Stopped { .. }))
            .await;
        stopped.push((replica, stopping.at));
    }
    // The two replicas left carry the load on.
    load.wait_for_more(200).await;
    let sent = load.finish().await;
    let arrivals = servers.arrivals();

    let failed: Vec<_> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        sent.len()
    );
    let stopping: BTreeSet<_> = events
        .all()
        .into_iter()
        .filter(|e| e.kind == EventKind::Stopping)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        stopping,
        BTreeSet::from(["app/web-2".to_owned(), "app/web-3".to_owned()]),
        "the highest ordinals go, and only they"
    );

    for (replica, stopping_at) in stopped {
        let changes = tap.of(replica);
        let Some((removed_at, _)) = changes.iter().find(|(_, seen)| *seen == Seen::Remove) else {
            panic!("the balancer never saw {replica} leave: {changes:?}");
        };
        assert!(
            *removed_at >= stopping_at,
            "{replica}: the removal follows Stopping"
        );
        // Told to stop only after it was announced as leaving.
        let cancelled = servers.cancelled(replica, 0);
        assert!(
            cancelled.is_some_and(|at| at >= stopping_at),
            "{replica} was cancelled after Stopping"
        );

        let hits = none_sent_after_removal(&arrivals, &sent, (replica, 0), *removed_at);
        // What reached it once it began stopping was already in flight,
        // and a closed loop of CALLERS has at most that many in flight.
        let late = hits.iter().filter(|(a, _)| a.at > stopping_at).count();
        assert!(
            late <= CALLERS,
            "{replica}: {late} requests reached it while stopping"
        );
    }

    // Every request sent after both removals went to the replicas left.
    let last_removal = ["app/web-2", "app/web-3"]
        .iter()
        .filter_map(|r| tap.of(r).into_iter().find(|(_, s)| *s == Seen::Remove))
        .map(|(at, _)| at)
        .max()
        .unwrap();
    let after: Vec<_> = sent.iter().filter(|s| s.at > last_removal).collect();
    assert!(!after.is_empty(), "the load went on after the scale-down");
    for request in after {
        let by = request.outcome.as_deref().unwrap();
        assert!(
            by == "app/web-0#0" || by == "app/web-1#0",
            "request {} after the scale-down answered by {by}",
            request.key
        );
    }
    web.shutdown().await;
}
