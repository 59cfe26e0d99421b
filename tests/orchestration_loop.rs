//! The main example's loop, end to end and in-process: the same modules
//! as `examples/orchestration`, run with short durations, and only its
//! invariants asserted (real sockets and real time: no assert on speed).
//!
//! - no order is charged twice, and every accepted order is answered
//!   exactly once, with the one charge the ledger holds for it;
//! - every replica chaos crashed is restarted and back in rotation;
//! - the autoscaler scales `orders` up under load and down once the
//!   stabilization window has passed;
//! - a short chaos soak at the highest level, over several seeds;
//! - and the report does name a double charge and an unrepaired crash
//!   (so the example's exit code means something).
#![allow(dead_code, reason = "the example's modules carry what only its main uses")]
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

#[path = "../examples/orchestration/chaos.rs"]
mod chaos;
#[path = "../examples/orchestration/clients.rs"]
mod clients;
#[path = "../examples/orchestration/config.rs"]
mod config;
#[path = "../examples/orchestration/load.rs"]
mod load;
#[path = "../examples/orchestration/orders.rs"]
mod orders;
#[path = "../examples/orchestration/payments.rs"]
mod payments;
#[path = "../examples/orchestration/progress.rs"]
mod progress;
#[path = "../examples/orchestration/proto.rs"]
mod proto;
#[path = "../examples/orchestration/report.rs"]
mod report;
#[path = "../examples/orchestration/run.rs"]
mod run;
#[path = "../examples/orchestration/stats.rs"]
mod stats;
#[path = "../examples/orchestration/timeline.rs"]
mod timeline;
#[path = "../examples/orchestration/worker.rs"]
mod worker;

use std::time::Duration;

use chaos::ChaosLevel;
use config::DemoConfig;
use report::Report;
use run::RunOptions;

/// A run bounds itself (load, then at most 15 s of repairs); this only
/// turns a hang into a failure.
const BOUND: Duration = Duration::from_secs(90);

/// The loop with `chaos` and `seed`, `duration` of load, at most 5 orders
/// replicas and a 1 s stabilization window.
fn short(chaos: ChaosLevel, seed: u64, duration: Duration) -> DemoConfig {
    DemoConfig {
        duration,
        peak_users: 24,
        chaos,
        seed,
        autoscaler: config::autoscaler(2, 5, Duration::from_secs(1)),
        ..DemoConfig::default()
    }
}

async fn run_loop(config: DemoConfig) -> Report {
    let run = run::run(config, RunOptions::default(), std::future::pending());
    tokio::time::timeout(BOUND, run)
        .await
        .expect("the loop ends by itself")
        .expect("the loop runs")
}

/// The order invariants every run must keep.
fn assert_orders_kept(report: &Report) {
    assert!(
        report.violations.is_empty(),
        "violations: {:#?}",
        report.violations
    );
    assert!(report.orders > 0, "the load placed orders");
    assert_eq!(report.accepted, report.orders, "every order accepted: {report}");
    assert_eq!(report.unanswered, 0);
    assert_eq!(report.interrupted, 0);
    assert_eq!(
        report.charges, report.accepted as u64,
        "one charge per accepted order"
    );
    assert_eq!(report.charged_orders, report.accepted, "no order charged twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_replicas_come_back_and_no_order_is_charged_twice() {
    let report = run_loop(short(ChaosLevel::Low, 1, Duration::from_secs(6))).await;
    assert_orders_kept(&report);
    assert_eq!(report.crashes.len(), 2, "one crash of each service: {report}");
    for crash in &report.crashes {
        assert!(crash.repaired(), "{crash:?} was repaired");
    }
    assert!(report.restarts >= 2, "{report}");
    assert!(
        report.v1_told_deprecated,
        "the v1 client heard of its deprecation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_load_and_down_after_the_stabilization_window() {
    let report = run_loop(short(ChaosLevel::Off, 1, Duration::from_secs(7))).await;
    assert_orders_kept(&report);
    let ups: Vec<_> = report.scale_events.iter().filter(|s| s.to > s.from).collect();
    let downs: Vec<_> = report.scale_events.iter().filter(|s| s.to < s.from).collect();
    let (Some(last_up), Some(first_down)) = (ups.last(), downs.first()) else {
        panic!("scaled up and down: {report}");
    };
    assert!(last_up.to > 2, "above the floor under load: {report}");
    assert_eq!(downs.last().map(|d| d.to), Some(2), "back to the floor: {report}");
    // A scale-down takes the highest recommendation of the window; the
    // last scale-up's recommendation was above it, so a whole window lies
    // between them.
    assert!(
        first_down.at_secs - last_up.at_secs >= 0.999,
        "scale-down waited for the stabilization window: {report}"
    );
    assert!(report.crashes.is_empty(), "no chaos");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_over_several_seeds() {
    for seed in [2, 3, 4] {
        let report = run_loop(short(ChaosLevel::High, seed, Duration::from_secs(4))).await;
        assert_orders_kept(&report);
        assert!(
            !report.crashes.is_empty(),
            "seed {seed} crashed replicas: {report}"
        );
        for crash in &report.crashes {
            assert!(crash.repaired(), "seed {seed}: {crash:?} was repaired");
        }
    }
}

#[tokio::test]
async fn the_report_names_a_double_charge_and_a_crash_left_unrepaired() {
    let stats = stats::Stats::default();
    let first = stats.ledger.charge("ord_a");
    let _second = stats.ledger.charge("ord_a");
    stats.book.confirm("ord_a", &first);
    let records = [load::OrderRecord {
        order_id: "ord_a".into(),
        version: 2,
        outcome: load::Outcome::Accepted { charge_id: first },
        latency: Duration::from_millis(5),
        sends: 1,
    }];
    let crash = chaos::Crash {
        instance: "app/orders-0".into(),
        generation: 0,
    };
    let report = Report::new(report::Evidence {
        chaos: (ChaosLevel::Low, 1),
        elapsed: Duration::from_secs(1),
        records: &records,
        stats: &stats,
        events: &[],
        cut: tokio::time::Instant::now(),
        scales: Vec::new(),
        crashes: vec![crash],
        in_rotation: Vec::new(),
        openings: (0, 0),
        v1_told_deprecated: false,
    });
    let kinds: Vec<_> = report.violations.iter().map(|v| format!("{v}")).collect();
    assert!(
        matches!(
            report.violations[..],
            [
                report::Violation::DoubleCharge { .. },
                report::Violation::WrongCharge { .. },
                report::Violation::NotRestarted { .. },
            ]
        ),
        "{kinds:#?}"
    );
}
