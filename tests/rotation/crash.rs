//! A crash under load: the crashed incarnation leaves the balancer, takes
//! no request sent after that, and its restart is back in rotation (it
//! serves) only once it is ready.

use orch::core::EventKind;

use super::{CALLERS, Events, Load, Seen, Servers, Tap, reached, replicas::Running, wait_for_ready};

const VICTIM: &str = "app/web-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_is_out_of_rotation_until_its_restart_is_ready() {
    let servers = Servers::new();
    let web = Running::start(servers.child(3), 3).await;
    let mut events = Events::watch(&web);
    let tap = Tap::default();
    let client = tap.balancer(&web.registry);
    wait_for_ready(&client, 3).await;

    let load = Load::start(&client);
    load.wait_for_more(200).await;
    servers.context(VICTIM, 0).fail("test: crash");
    let exited = events
        .wait_for(
            VICTIM,
            0,
            |k| matches!(k, EventKind::Exited { reason } if reason.is_abnormal()),
        )
        .await;
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
    assert!(*removed_at >= exited.at, "the removal follows the crash");
    assert!(*back_at >= ready.at, "the restart is added once it is ready");

    // The crashed incarnation got nothing sent after its removal.
    let old: Vec<_> = reached(&arrivals, &sent, VICTIM, 0).collect();
    assert!(!old.is_empty(), "{VICTIM} served before its crash");
    for (arrival, request) in &old {
        assert!(
            request.at <= *removed_at,
            "request {} was sent after the balancer dropped {VICTIM}#0, and reached it",
            arrival.key
        );
    }
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
    // A crash may cut what was in flight to it, and nothing else.
    let failed: Vec<_> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(failed.len() <= CALLERS, "{} failed: {failed:?}", failed.len());
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
