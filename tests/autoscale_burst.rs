//! A job burst through the whole scaling path in simulated time: a
//! `WorkQueue` backlog read by an `Autoscaler` with a `QueueBacklog`
//! policy, driving a real supervised `ReplicaGroup` of worker tasks that
//! drain the queue. The group scales up while jobs wait, holds through the
//! scale-down stabilization window once the queue is empty, and scales
//! down after it; every decision's reason says why.
//!
//! `start_paused`: the clock only moves when every task waits, so the run
//! is deterministic and ten simulated minutes take milliseconds.

#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use orch::core::{
    ChildSpec, Scaler, Supervisor, SupervisorSpec,
    autoscale::{Autoscaler, AutoscalerConfig, Decision, MetricState, Outcome, QueueBacklog, WorkQueue},
};
use tokio_util::sync::CancellationToken;

const PERIOD: Duration = Duration::from_secs(15);
/// The default scale-down stabilization window (HPA's five minutes).
const WINDOW: Duration = Duration::from_secs(300);
const JOBS: u32 = 200;
/// Each job keeps its worker busy this long.
const JOB: Duration = Duration::from_secs(1);
const MAX: usize = 8;

/// A replica group of workers: each pops a job, works on it for [`JOB`]
/// and records it; asked to stop, it finishes the job in hand first.
fn workers(jobs: &WorkQueue<u32>, done: &Arc<Mutex<Vec<u32>>>) -> ChildSpec {
    let (jobs, done) = (jobs.clone(), done.clone());
    ChildSpec::task("workers", move |ctx| {
        let (jobs, done) = (jobs.clone(), done.clone());
        async move {
            loop {
                let job = tokio::select! {
                    biased;
                    () = ctx.cancelled() => break,
                    job = jobs.pop() => job,
                };
                tokio::time::sleep(JOB).await;
                done.lock().unwrap().push(job);
            }
            Ok::<_, std::io::Error>(())
        }
    })
    .replicas(1)
    .shutdown_grace(JOB * 5)
}

fn backlog(decision: &Decision) -> f64 {
    match decision.inputs.iter().find(|(name, _)| name == "jobs") {
        Some((_, MetricState::Fresh(value))) => *value,
        other => panic!("the backlog was read at every evaluation, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_burst_scales_up_then_down_after_the_stabilization_window() {
    let jobs = WorkQueue::new();
    let done = Arc::new(Mutex::new(Vec::new()));
    let spec = SupervisorSpec::builder("app")
        .child(workers(&jobs, &done))
        .build()
        .unwrap();
    let supervisor = Supervisor::start(spec).unwrap();
    let group = supervisor.replica_group("workers");
    for job in 0..JOBS {
        jobs.push(job);
    }

    let config = AutoscalerConfig::default()
        .replicas(1, MAX)
        .evaluation_period(PERIOD)
        .policy(QueueBacklog::new("jobs", 10.0));
    let autoscaler = Autoscaler::builder(config)
        .name("workers")
        .source("jobs", jobs.clone())
        .scaler(group.clone())
        .build()
        .unwrap();
    let mut subscription = autoscaler.handle().subscribe();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(autoscaler.run(shutdown.clone()));

    // Every decision until the group is back to one replica; bounded in
    // simulated time.
    let mut decisions: Vec<Arc<Decision>> = Vec::new();
    let until_down = async {
        loop {
            let decision = subscription.next().await.unwrap();
            decisions.push(decision.clone());
            if let Outcome::Scaled { from, to: 1 } = decision.outcome
                && from > 1
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), until_down)
        .await
        .unwrap_or_else(|_| panic!("never scaled back down"));
    let all = decisions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("");

    // Up, under the burst, in steps the rate policies allow, to the ceiling.
    let ups: Vec<_> = decisions
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::Scaled { from, to } if to > from))
        .collect();
    assert!(ups.len() >= 2, "{all}");
    for up in &ups {
        assert!(backlog(up) > 0.0, "scaled up with no backlog:\n{up}");
    }
    assert_eq!(ups[0].outcome, Outcome::Scaled { from: 1, to: 5 }, "{all}");
    assert!(
        ups[0].reason.contains("scale-up rate policies allow 5"),
        "{}",
        ups[0]
    );
    let peak = ups.last().unwrap();
    assert_eq!(peak.steps.target, MAX, "{all}");
    assert!(peak.reason.contains(&format!("clamped to {MAX}")), "{peak}");

    // Then held: from the first evaluation that would go lower, every
    // decision keeps the count and names the stabilization window.
    let down = decisions.last().unwrap();
    let first_lower = decisions
        .iter()
        .position(|d| d.current == MAX && d.steps.recommended < MAX)
        .unwrap();
    let held = &decisions[first_lower..decisions.len() - 1];
    assert!(!held.is_empty(), "{all}");
    for hold in held {
        assert_eq!(hold.outcome, Outcome::Unchanged, "{hold}");
        // The supervisor really runs them all, ready.
        assert_eq!((hold.current, hold.ready), (MAX, MAX), "{hold}");
        assert!(hold.reason.contains("scale-down stabilization window"), "{hold}");
    }
    assert!(
        held.iter().any(|d| backlog(d) == 0.0),
        "the queue drained while held: {all}"
    );

    // And down once the window has passed the last high recommendation:
    // at the first evaluation after it, to the floor, with the policy's
    // reason.
    let last_high = decisions[..decisions.len() - 1]
        .iter()
        .rev()
        .find(|d| d.steps.recommended >= MAX)
        .unwrap();
    let since = down.at - last_high.at;
    assert!(since >= WINDOW && since < WINDOW + PERIOD, "{since:?}\n{all}");
    assert_eq!(backlog(down), 0.0, "{down}");
    assert_eq!(down.outcome, Outcome::Scaled { from: MAX, to: 1 }, "{down}");
    // The empty queue asks for none; the floor, not the scale-to-zero
    // cooldown, is why one stays.
    assert!(
        down.reason.contains("min_replicas 1") && down.steps.recommended == 0,
        "{down}"
    );

    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(group.current().await.unwrap(), 1);
    // Every job ran exactly once, across the replicas added and removed.
    let mut done = done.lock().unwrap().clone();
    done.sort_unstable();
    assert_eq!(done, (0..JOBS).collect::<Vec<_>>());
    supervisor.shutdown().await.unwrap();
}
