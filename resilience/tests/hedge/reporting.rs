//! The metrics a hedge reports: hedges sent, wins by attempt, exhaustion and
//! requests left unhedged, by name.

use orch_resilience::Hedge;
use tower::{Service, ServiceExt};

use super::{Script, Then, fixed};
use crate::support::Metrics;

// ===== metrics =====

#[test]
fn metrics_count_hedges_wins_exhaustion_and_unhedged_requests() {
    let metrics = Metrics::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();

    metrics.during(|| {
        runtime.block_on(async {
            let script = Script::new(&[
                (100, Then::Ok), // GET: slow primary, the hedge wins
                (5, Then::Ok),
                (5, Then::Ok),   // GET: fast, no hedge
                (5, Then::Ok),   // POST: unsafe, sent once
                (5, Then::Fail), // GET: every attempt fails
                (5, Then::Fail),
            ]);
            let mut service =
                Hedge::new(script.service::<http::Request<()>>(), fixed(10).name("catalog")).unwrap();
            for method in ["GET", "GET", "POST", "GET"] {
                let request = http::Request::builder().method(method).body(()).unwrap();
                let _ = service.ready().await.unwrap().call(request).await;
            }
            assert_eq!(script.calls(), 6);
        });
    });

    let snapshot = metrics.snapshot();
    let name = ("name", "catalog");
    assert_eq!(snapshot.counter("orch_hedge_attempts_total", &[name]), 2);
    assert_eq!(
        snapshot.counter("orch_hedge_wins_total", &[name, ("attempt", "1")]),
        1
    );
    assert_eq!(
        snapshot.counter("orch_hedge_wins_total", &[name]),
        1,
        "a call won by its primary before any hedge is not counted"
    );
    assert_eq!(snapshot.counter("orch_hedge_exhausted_total", &[name]), 1);
    assert_eq!(
        snapshot.counter("orch_hedge_unhedged_total", &[name, ("reason", "unsafe")]),
        1
    );
}
