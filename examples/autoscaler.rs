//! The autoscaler's decisions, focused: a replica group of workers sized
//! on the backlog of a work queue, every decision printed with its reason.
//!
//! - **Workers:** a supervisor runs `workers`, a replica group of tasks
//!   (one at start). Each replica runs two worker loops that take jobs off
//!   a shared `WorkQueue` and spend 100 ms on each; a replica scaled away
//!   finishes the jobs in hand and stops.
//! - **Autoscaler:** every 500 ms it reads two signals, the queue's depth
//!   (`QueueBacklog`, 10 waiting jobs per replica, KEDA's formula) and the
//!   jobs in progress per replica (`TargetTracking` on a closure source,
//!   1.5 of the 2 worker slots, HPA's formula), and takes the higher
//!   recommendation. Up at once within a rate limit (double, or add 4, per
//!   second); down only after a 3 s stabilization window without a higher
//!   recommendation.
//! - **Load:** a bounded burst of 300 jobs over 2.5 s, then nothing.
//!
//! Every decision is printed on one line as it is made (the autoscaler's
//! decision subscription): the scale-up and its rate limit, the
//! stabilization window holding the scale-down after the queue drained,
//! then the scale-down to one replica (in one step, or two when the last
//! jobs in progress left a small recommendation in the window); then a
//! summary. It ends by itself
//! within about 10 s, or at Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example autoscaler
//! ```

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use orch::core::{
    ChildSpec, Scaler, Supervisor, SupervisorSpec,
    autoscale::{
        Autoscaler, AutoscalerConfig, Behavior, Decision, MetricState, Outcome, QueueBacklog, RatePolicy,
        TargetTracking, WorkQueue, source_fn,
    },
    shutdown_signal,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const JOBS: usize = 300;
const BURST: Duration = Duration::from_millis(2_500);
const JOB_TIME: Duration = Duration::from_millis(100);
const WORKERS_PER_REPLICA: usize = 2;
const MIN_REPLICAS: usize = 1;
const MAX_REPLICAS: usize = 6;

/// What the workers share: the queue, and counts for the in-progress
/// signal and the summary.
#[derive(Clone, Default)]
struct Work {
    queue: WorkQueue<u64>,
    replicas: Arc<AtomicUsize>,
    in_progress: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

/// The replica group: each replica runs its worker loops until it is
/// scaled away or the tree shuts down.
fn workers(work: &Work) -> ChildSpec {
    let work = work.clone();
    ChildSpec::task("workers", move |ctx| {
        let work = work.clone();
        async move {
            work.replicas.fetch_add(1, Ordering::Relaxed);
            let loops = (0..WORKERS_PER_REPLICA).map(|_| {
                let (work, token) = (work.clone(), ctx.token().clone());
                tokio::spawn(async move {
                    loop {
                        // Biased: a replica asked to stop takes no new job.
                        let _job = tokio::select! {
                            biased;
                            () = token.cancelled() => return,
                            job = work.queue.pop() => job,
                        };
                        work.in_progress.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(JOB_TIME).await;
                        work.in_progress.fetch_sub(1, Ordering::Relaxed);
                        work.done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            let loops: Vec<_> = loops.collect();
            let ended = futures_util::future::join_all(loops).await;
            work.replicas.fetch_sub(1, Ordering::Relaxed);
            // A worker that panicked is this replica's crash.
            ended
                .into_iter()
                .try_for_each(|worker| worker.map_err(BoxError::from))
        }
    })
    .replicas(MIN_REPLICAS)
    .shutdown_grace(Duration::from_secs(1))
}

/// Backlog and in-progress policies, with HPA's behaviour at in-process
/// periods: its rates per second rather than per 15 s, and a 3 s
/// scale-down window rather than 300 s.
fn autoscaler_config() -> AutoscalerConfig {
    let second = Duration::from_secs(1);
    let mut behavior = Behavior::default();
    behavior.scale_up.policies = vec![RatePolicy::percent(100, second), RatePolicy::replicas(4, second)];
    behavior.scale_down.policies = vec![RatePolicy::percent(100, second)];
    behavior.scale_down.stabilization_window = Duration::from_secs(3);
    AutoscalerConfig::default()
        .replicas(MIN_REPLICAS, MAX_REPLICAS)
        .evaluation_period(Duration::from_millis(500))
        // The floor is 1: no wait before "zero", which the floor stops anyway.
        .scale_to_zero_cooldown(Duration::ZERO)
        .policy(QueueBacklog::new("backlog", 10.0))
        .policy(TargetTracking::new("in_progress", 1.5))
        .behavior(behavior)
}

/// The scale events and holds, for the summary.
#[derive(Debug, Default)]
struct Seen {
    evaluations: usize,
    ups: usize,
    downs: usize,
    held_by_window: usize,
    held_by_rate: usize,
    peak: usize,
}

/// One line per decision: when, what it saw, what it did and why.
fn print_decision(started: Instant, decision: &Decision) {
    let backlog = decision
        .inputs
        .iter()
        .find(|(name, _)| name == "backlog")
        .map_or_else(String::new, |(_, state)| match state {
            MetricState::Fresh(value) => format!("{value:>3}"),
            _ => "  ?".to_owned(),
        });
    let what = match decision.outcome {
        Outcome::Scaled { from, to } => format!("scaled {from} -> {to}"),
        Outcome::Unchanged => format!("stays at {}", decision.current),
        ref other => format!("{other:?}"),
    };
    println!(
        "{:>5.1} s  backlog {backlog}  ready {}/{}  {what:<14} {}",
        decision.at.saturating_duration_since(started).as_secs_f64(),
        decision.ready,
        decision.current,
        decision.reason
    );
}

fn follow(started: Instant, autoscaler: &Autoscaler) -> tokio::task::JoinHandle<Seen> {
    let mut decisions = autoscaler.handle().subscribe();
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Some(decision) = decisions.next().await {
            print_decision(started, &decision);
            let steps = decision.steps;
            seen.evaluations += 1;
            seen.peak = seen.peak.max(steps.target);
            match decision.outcome {
                Outcome::Scaled { from, to } if to > from => seen.ups += 1,
                Outcome::Scaled { .. } => seen.downs += 1,
                _ => {}
            }
            if steps.stabilized > steps.cooled {
                seen.held_by_window += 1;
            }
            if steps.rate_limited != steps.stabilized {
                seen.held_by_rate += 1;
            }
        }
        seen
    })
}

/// Pushes the burst: `JOBS` jobs evenly over `BURST`.
async fn burst(queue: &WorkQueue<u64>) {
    const BATCHES: usize = 25;
    let mut ticks = tokio::time::interval(BURST / BATCHES as u32);
    for batch in 0..BATCHES {
        ticks.tick().await;
        for n in 0..JOBS / BATCHES {
            queue.push((batch * JOBS / BATCHES + n) as u64);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let work = Work::default();
    let spec = SupervisorSpec::builder("app").child(workers(&work)).build()?;
    let handle = Supervisor::start(spec)?;
    let group = handle.replica_group("workers");

    let in_progress = {
        let work = work.clone();
        // The average over the replicas running, as target tracking wants.
        move || {
            let replicas = work.replicas.load(Ordering::Relaxed);
            (replicas > 0).then(|| work.in_progress.load(Ordering::Relaxed) as f64 / replicas as f64)
        }
    };
    let autoscaler = Autoscaler::builder(autoscaler_config())
        .name("workers")
        .source("backlog", work.queue.clone())
        .source("in_progress", source_fn(in_progress))
        .scaler(handle.replica_group("workers"))
        .build()?;
    let started = Instant::now();
    let seen = follow(started, &autoscaler);
    let stop = CancellationToken::new();
    let running = tokio::spawn(autoscaler.run(stop.clone()));

    println!(
        "--- {JOBS} jobs over {:.1} s to 1 replica; each takes {JOB_TIME:?}",
        BURST.as_secs_f64()
    );
    let run = async {
        burst(&work.queue).await;
        // Done once every job is worked and the group is back at its floor;
        // bounded, in case it never is.
        let settled = async {
            loop {
                let back = group.current().await.is_ok_and(|n| n == MIN_REPLICAS);
                if work.done.load(Ordering::Relaxed) == JOBS && back {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(12), settled)
            .await
            .map_err(|_| "the group did not settle at its floor within 12 s")
    };
    let outcome = tokio::select! {
        outcome = run => Some(outcome),
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            None
        }
    };
    stop.cancel();
    running.await?;
    handle.shutdown().await?;
    let seen = seen.await?;
    let Some(outcome) = outcome else { return Ok(()) };

    println!("--- summary after {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "    jobs done          {}/{JOBS}",
        work.done.load(Ordering::Relaxed)
    );
    println!("    evaluations        {}", seen.evaluations);
    println!(
        "    scale-ups          {}, peak {} replicas (max {MAX_REPLICAS})",
        seen.ups, seen.peak
    );
    println!(
        "    evaluations held   {} by the rate policies, {} by the window",
        seen.held_by_rate, seen.held_by_window
    );
    println!("    scale-downs        {}, back to {MIN_REPLICAS}", seen.downs);
    outcome?;
    Ok(())
}
