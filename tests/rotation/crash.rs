//! A crash under load: the crashed incarnation leaves the balancer, takes
//! no request sent after that, and its restart is back in rotation (it
//! serves) only once it is ready. Two kinds of crash: the instance ends
//! itself (`ChildContext::fail`, as the main example's chaos does), and
//! the supervisor kills it on a failed liveness probe.

use orch::core::EventKind;

use super::{CALLERS, Rig, Seen, none_sent_after_removal, reached};

const VICTIM: &str = "app/web-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// `ChildContext::fail`: out of rotation (`NotReady`) and cancelled at
    /// once, no drain delay. What was on its way to it may fail (there is
    /// no retry here).
    Fail,
    /// The liveness probe fails and the supervisor kills it: `Stopping`,
    /// then the drain delay, then the cancellation, so nothing fails.
    Liveness,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fails_is_out_of_rotation_until_its_restart_is_ready() {
    crash_and_restart(Crash::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_by_its_liveness_probe_is_out_of_rotation_until_its_restart_is_ready() {
    crash_and_restart(Crash::Liveness).await;
}

async fn crash_and_restart(crash: Crash) {
    let Rig {
        servers,
        web,
        mut events,
        tap,
        load,
    } = Rig::start(3).await;
    match crash {
        Crash::Fail => servers.context(VICTIM, 0).fail("test: crash"),
        Crash::Liveness => servers.make_sick(VICTIM, 0),
    }
    // What takes it out of the registry: NotReady (`fail`), Stopping (a
    // kill), or the exit itself.
    let left = events
        .wait_for(VICTIM, 0, |k| {
            matches!(
                k,
                EventKind::NotReady | EventKind::Stopping | EventKind::Exited { .. }
            )
        })
        .await;
    let exited = events
        .wait_for(VICTIM, 0, |k| matches!(k, EventKind::Exited { .. }))
        .await;
    assert!(
        matches!(&exited.kind, EventKind::Exited { reason } if reason.is_abnormal()),
        "{crash:?} is a crash: {exited:?}"
    );
    let ready = events
        .wait_for(VICTIM, 1, |k| matches!(k, EventKind::Ready { .. }))
        .await;
    // The restart takes its share of the load, then the load stops.
    servers.wait_for_arrivals(VICTIM, 1, 20).await;
    let sent = load.finish().await;
    let arrivals = servers.arrivals();

    // The balancer dropped the crashed incarnation, then added the restart.
    let changes = tap.of(VICTIM);
    let [
        (added_at, Seen::Insert(_)),
        (removed_at, Seen::Remove),
        (back_at, Seen::Insert(_)),
    ] = changes.as_slice()
    else {
        panic!("{VICTIM}: expected insert, remove, insert; the balancer saw {changes:?}");
    };
    assert!(added_at < removed_at && removed_at < back_at);
    assert!(*removed_at >= left.at, "the removal follows the crash");
    assert!(*back_at >= ready.at, "the restart is added once it is ready");

    // The crashed incarnation got nothing sent after its removal.
    none_sent_after_removal(&arrivals, &sent, (VICTIM, 0), *removed_at);
    // The restart served, and only what the balancer sent once it was back.
    let new: Vec<_> = reached(&arrivals, &sent, VICTIM, 1).collect();
    assert!(!new.is_empty(), "{VICTIM}#1 is back in rotation");
    for (arrival, _) in &new {
        assert!(
            arrival.at >= *back_at,
            "request {} reached {VICTIM}#1 before the balancer added it",
            arrival.key
        );
    }
    // A crash may cut what was in flight to it, and nothing else; a
    // drained kill cuts nothing.
    let failed: Vec<_> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    let allowed = if crash == Crash::Fail { CALLERS } else { 0 };
    assert!(failed.len() <= allowed, "{} failed: {failed:?}", failed.len());
    for request in &failed {
        assert!(
            request.at <= *removed_at,
            "request {} sent after the removal failed: {:?}",
            request.key,
            request.outcome
        );
    }
    web.shutdown().await;
}
