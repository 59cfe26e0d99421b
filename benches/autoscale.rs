//! The autoscaler in simulated time against a plain Kubernetes HPA, and the
//! cost of one evaluation.
//!
//! **Simulation.** One reproducible demand trace (`support/autoscale_trace.rs`:
//! three days from a fixed seed, a day/night pattern, a daily lunch rush,
//! four unknown 3–5× spikes a day of 2–10 minutes, noise) replayed one
//! simulated second at a time against the same replica group model
//! (`support/autoscale_world.rs`: 10 work units/s per ready replica, 30 s
//! from creation to ready, a backlog for work that finds no capacity, a
//! metrics-server that samples utilisation every 15 s), each contender
//! alone:
//!
//! - `HPA`: `support/hpa.rs`, Kubernetes' HPA with its defaults on a 70 %
//!   CPU-style utilisation target, syncing every 15 s, 7 s after each
//!   metrics sample;
//! - `orch, HPA defaults`: orch's [`Autoscaler`] with target tracking on
//!   the same samples, at the same instants, told the same pods are ready,
//!   with its default behaviour (HPA's defaults). A cross-check replays
//!   `support/hpa.rs` with orch's one known departure from HPA (utilisation
//!   as a real number, not whole percent) switched on and expects the very
//!   same scale events: anything else would be a formula of one of the two
//!   that differs;
//! - `orch, 15 s, in-process + backlog`: still every 15 s, but on signals
//!   read in-process with no lag (the utilisation since the last
//!   evaluation, from a busy-time counter, over the replicas serving now)
//!   and with a queue-backlog policy on the work waiting (50 units, five
//!   seconds of a replica's work, per replica). This and the lines below
//!   add cooldowns to HPA's default behaviour: 15 s between two scale-ups,
//!   240 s between two scale-downs;
//! - `orch, 15 s, in-process now + backlog`: the same, but the utilisation
//!   is the busy share of the last second, read at the evaluation (as
//!   `BalancerLoad` reads the requests in flight now) rather than the mean
//!   since the last evaluation;
//! - `orch, 1 s`: target tracking alone on the in-process utilisation,
//!   evaluated every second;
//! - `orch, 1 s + backlog`: plus the queue-backlog policy;
//! - `orch, 1 s + backlog + schedule`: plus a schedule window that raises
//!   the floor to the lunch rush's need at 70 % from 11:58 to 12:30, Paris
//!   time, every day.
//!
//! orch runs in paused tokio time: the driver advances the clock to each
//! evaluation instant and calls [`Autoscaler::evaluate`]. Per contender the
//! table gives the scale events (and of them, those less than 15 s after
//! the previous one, and those reversing it within 300 s), the
//! replica-minutes paid for (starting replicas included), per unknown
//! spike the time from its start to a ready capacity at least its demand
//! (median and max) and to the first scale-up, the same for the lunch rush
//! (max over days), and the seconds in which the demand exceeded the ready
//! capacity. Then issue 15's targets for each orch line against `HPA`.
//!
//! **Evaluation cost** (criterion group `autoscale_evaluate`,
//! `support/autoscale_cost.rs`): one `evaluate()` with target tracking,
//! queue backlog and schedule against a scaler and sources that answer at
//! once, each policy alone, and, as the baseline, the calls every
//! evaluation makes: the scaler's status and the two samples.
//!
//! Run: `cargo bench --bench autoscale`; under `cargo test --benches` it
//! simulates 75 minutes around the first lunch rush and measures nothing.

#[path = "support/autoscale_cost.rs"]
mod cost;
#[path = "support/hpa.rs"]
mod hpa;
#[path = "support/autoscale_trace.rs"]
mod trace;
#[path = "support/autoscale_world.rs"]
mod world;

use std::time::{Duration, SystemTime};

use criterion::Criterion;
use orch::core::autoscale::{Autoscaler, AutoscalerConfig, Behavior, QueueBacklog, Schedule, TargetTracking};
use tokio::time::Instant;

use hpa::Hpa;
use trace::{DAY, Trace};
use world::{CAPACITY, Shared, Signal, SimGroup, SimSource, View, World};

/// The trace's seed and length.
const SEED: u64 = 15;
const DAYS: u64 = 3;
/// Utilisation every contender aims at.
const TARGET_PERCENT: u32 = 70;
const MIN: usize = 2;
const MAX: usize = 200;
/// Midnight, Paris time (UTC+1), Monday 2 March 2026: the trace's start.
const MIDNIGHT_PARIS: u64 = 1_772_406_000;
/// HPA syncs this many seconds after each metrics sample.
const HPA_PHASE: u64 = 7;
/// A scale event this soon after the previous one is part of a burst (a
/// staircase of small steps), which HPA's 15 s sync period cannot make.
const BURST: u64 = 15;
/// A scale event in the other direction than the previous one, this soon
/// after it, is a flap: the scale-down stabilization window's length.
const FLAP: u64 = 300;

/// The in-process lines' cooldowns: one scale-up per rate period (15 s,
/// what HPA's sync period allows), and the scale-down window's staircase
/// in steps of four minutes.
const UP_COOLDOWN: Duration = Duration::from_secs(15);
const DOWN_COOLDOWN: Duration = Duration::from_secs(240);

fn target() -> f64 {
    f64::from(TARGET_PERCENT) / 100.0
}

/// What decides, and when.
enum Kind {
    /// `support/hpa.rs`; with orch's departure from HPA for the
    /// cross-check.
    Hpa { orch_rules: bool },
    Orch {
        config: Box<AutoscalerConfig>,
        view: View,
        utilisation: Signal,
        backlog: bool,
    },
}

struct Contender {
    name: &'static str,
    /// Seconds between evaluations, and the first one's second.
    period: u64,
    phase: u64,
    kind: Kind,
}

fn contenders() -> Vec<Contender> {
    let orch = |period: u64| {
        AutoscalerConfig::default()
            .replicas(MIN, MAX)
            .evaluation_period(Duration::from_secs(period))
            .policy(TargetTracking::new("utilisation", target()))
    };
    let backlog = QueueBacklog::new("backlog", 5.0 * CAPACITY);
    let lunch = Schedule::new("0 12 * * *", "30 12 * * *", "Europe/Paris", lunch_need())
        .lead(Duration::from_secs(120));
    // `window`: seconds the utilisation is averaged over, up to the
    // evaluation: the period (a busy-time counter read as a delta) or the
    // last second (the busy share now, as a balancer's in-flight count).
    let live = |config: AutoscalerConfig, window: usize, backlog: bool| Kind::Orch {
        utilisation: Signal::LiveUtilisation(window),
        config: Box::new(config.behavior(Behavior::default().cooldowns(UP_COOLDOWN, DOWN_COOLDOWN))),
        view: View::Serving,
        backlog,
    };
    vec![
        Contender {
            name: "HPA",
            period: 15,
            phase: HPA_PHASE,
            kind: Kind::Hpa { orch_rules: false },
        },
        Contender {
            name: "orch, HPA defaults",
            period: 15,
            phase: HPA_PHASE,
            kind: Kind::Orch {
                config: Box::new(orch(15)),
                view: View::Scraped,
                utilisation: Signal::ScrapedUtilisation,
                backlog: false,
            },
        },
        Contender {
            name: "orch, 15 s, in-process + backlog",
            period: 15,
            phase: 0,
            kind: live(orch(15).policy(backlog.clone()), 15, true),
        },
        Contender {
            name: "orch, 15 s, in-process now + backlog",
            period: 15,
            phase: 0,
            kind: live(orch(15).policy(backlog.clone()), 1, true),
        },
        Contender {
            name: "orch, 1 s",
            period: 1,
            phase: 0,
            kind: live(orch(1), 1, false),
        },
        Contender {
            name: "orch, 1 s + backlog",
            period: 1,
            phase: 0,
            kind: live(orch(1).policy(backlog.clone()), 1, true),
        },
        Contender {
            name: "orch, 1 s + backlog + schedule",
            period: 1,
            phase: 0,
            kind: live(orch(1).policy(backlog).policy(lunch), 1, true),
        },
    ]
}

/// Replicas that serve the lunch rush's highest demand (no noise) at the
/// target utilisation: what someone who knows the rush would provision.
fn lunch_need() -> usize {
    let trace = Trace::generate(SEED, 1);
    let rush = trace::LUNCH_START as usize..(trace::LUNCH_START + trace::LUNCH_LEN) as usize;
    let highest = trace.level[rush].iter().copied().fold(0.0, f64::max);
    (highest / (CAPACITY * target())).ceil() as usize
}

enum Controller {
    Hpa(Hpa),
    Orch(Box<Autoscaler>),
}

/// Replays `trace` against `contender`; returns the world it left.
async fn simulate(trace: &Trace, contender: &Contender) -> World {
    let origin = Instant::now();
    let initial = (trace.level[0] / (CAPACITY * target())).ceil() as usize;
    let shared = Shared::new(World::new(initial), origin);
    let mut controller = match &contender.kind {
        Kind::Hpa { orch_rules } => {
            let hpa = Hpa::new(TARGET_PERCENT, MIN, MAX);
            Controller::Hpa(if *orch_rules { hpa.with_orch_rules() } else { hpa })
        }
        Kind::Orch {
            config,
            view,
            utilisation,
            backlog,
        } => {
            let mut builder = Autoscaler::builder(AutoscalerConfig::clone(config))
                .name(contender.name)
                .source("utilisation", SimSource(shared.clone(), *utilisation))
                .scaler(SimGroup(shared.clone(), *view))
                .wall_clock_origin(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(MIDNIGHT_PARIS + trace.offset),
                );
            if *backlog {
                builder = builder.source("backlog", SimSource(shared.clone(), Signal::Backlog));
            }
            Controller::Orch(Box::new(builder.build().expect("a valid configuration")))
        }
    };
    for t in 0..trace.len() {
        if t % contender.period == contender.phase {
            match &mut controller {
                Controller::Hpa(hpa) => hpa.evaluate(t, &mut shared.lock()),
                Controller::Orch(autoscaler) => {
                    let at = origin + Duration::from_secs(t);
                    let now = Instant::now();
                    if at > now {
                        tokio::time::advance(at - now).await;
                    }
                    autoscaler.evaluate().await;
                }
            }
        }
        shared.lock().step(trace.demand[t as usize]);
    }
    drop(controller);
    shared.into_inner()
}

/// One contender's line of the table.
struct Summary {
    name: &'static str,
    period: u64,
    events: usize,
    /// Of them, less than [`BURST`] seconds after the previous one.
    bursts: usize,
    /// Of them, in the other direction than the previous one and less
    /// than [`FLAP`] seconds after it.
    flaps: usize,
    replica_minutes: f64,
    /// Per unknown spike: seconds to enough ready capacity (`None`: not
    /// before it ended) and to the first scale-up.
    to_capacity: Vec<Option<u64>>,
    to_reaction: Vec<Option<u64>>,
    /// Per lunch rush: seconds to enough ready capacity.
    lunch: Vec<Option<u64>>,
    under_seconds: u64,
}

impl Summary {
    fn of(contender: &Contender, trace: &Trace, world: &World) -> Self {
        let capacity_after = |s: &trace::Spike| {
            (s.start..s.start + s.len)
                .find(|&t| f64::from(world.ready_log[t as usize]) * CAPACITY >= trace.level[t as usize])
                .map(|t| t - s.start)
        };
        let reaction = |s: &trace::Spike| {
            world
                .events
                .iter()
                .find(|e| e.to > e.from && (s.start..s.start + s.len).contains(&e.at))
                .map(|e| e.at - s.start)
        };
        let unknown = trace.spikes.iter().filter(|s| !s.known);
        Self {
            name: contender.name,
            period: contender.period,
            events: world.events.len(),
            bursts: world
                .events
                .windows(2)
                .filter(|pair| pair[1].at - pair[0].at < BURST)
                .count(),
            flaps: world
                .events
                .windows(2)
                .filter(|pair| {
                    let up = |e: &world::Event| e.to > e.from;
                    pair[1].at - pair[0].at < FLAP && up(&pair[0]) != up(&pair[1])
                })
                .count(),
            replica_minutes: world.replica_seconds as f64 / 60.0,
            to_capacity: unknown.clone().map(capacity_after).collect(),
            to_reaction: unknown.map(reaction).collect(),
            lunch: trace
                .spikes
                .iter()
                .filter(|s| s.known)
                .map(capacity_after)
                .collect(),
            under_seconds: world.under_seconds,
        }
    }
}

/// Median and max, `None` (never) counting as the longest.
fn spread(values: &[Option<u64>]) -> (Option<Option<u64>>, Option<Option<u64>>) {
    let mut sorted: Vec<u64> = values.iter().map(|v| v.unwrap_or(u64::MAX)).collect();
    sorted.sort_unstable();
    let shown = |v: u64| (v != u64::MAX).then_some(v);
    let median = sorted.get(sorted.len().saturating_sub(1) / 2).map(|&v| shown(v));
    (median, sorted.last().map(|&v| shown(v)))
}

fn secs(v: Option<Option<u64>>) -> String {
    match v {
        None => "–".to_owned(),
        Some(None) => "never".to_owned(),
        Some(Some(s)) => format!("{s} s"),
    }
}

fn print_table(trace: &Trace, summaries: &[Summary]) {
    let clock = |t: u64| {
        let t = (trace.offset + t) % DAY;
        format!("{:02}:{:02}", t / 3600, t / 60 % 60)
    };
    let spikes: Vec<String> = trace
        .spikes
        .iter()
        .filter(|s| !s.known)
        .map(|s| {
            let day = (trace.offset + s.start) / DAY + 1;
            format!("d{day} {} {:.1}× {} s", clock(s.start), s.factor, s.len)
        })
        .collect();
    println!(
        "Trace: seed {SEED}, {:.2} days from {}, {} unknown spikes ({}), lunch rush 12:00–12:30 at 2× \
         (the schedule's floor: {} replicas).\n",
        trace.len() as f64 / DAY as f64,
        clock(0),
        spikes.len(),
        spikes.join("; "),
        lunch_need()
    );
    println!(
        "| contender | scale events | < 15 s after the last | reversed < 300 s after | replica-minutes | spike → capacity, median / max | \
         spike → first scale-up, median / max | lunch rush → capacity, max | under capacity |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        let (cap_median, cap_max) = spread(&s.to_capacity);
        let (react_median, react_max) = spread(&s.to_reaction);
        println!(
            "| {} | {} | {} | {} | {:.0} | {} / {} | {} / {} | {} | {} s |",
            s.name,
            s.events,
            s.bursts,
            s.flaps,
            s.replica_minutes,
            secs(cap_median),
            secs(cap_max),
            secs(react_median),
            secs(react_max),
            secs(spread(&s.lunch).1),
            s.under_seconds
        );
    }
    let Some((hpa, orch)) = summaries.split_first() else {
        return;
    };
    println!("\nIssue 15's targets against {}:\n", hpa.name);
    println!(
        "| contender | scale events ≤ HPA | less time under capacity | first scale-up within one period |"
    );
    println!("|---|---|---|---|");
    let met = |ok: bool| if ok { "yes" } else { "NO" };
    for s in orch {
        let (_, react_max) = spread(&s.to_reaction);
        let within = react_max.is_none_or(|m| m.is_some_and(|m| m <= s.period));
        println!(
            "| {} | {} ({} vs {}) | {} ({} vs {} s) | {} (max {}, period {} s) |",
            s.name,
            met(s.events <= hpa.events),
            s.events,
            hpa.events,
            met(s.under_seconds < hpa.under_seconds),
            s.under_seconds,
            hpa.under_seconds,
            met(within),
            secs(react_max),
            s.period
        );
    }
}

fn simulation(quick: bool) {
    let trace = Trace::generate(SEED, DAYS);
    // Under `cargo test`: 75 minutes around the first lunch rush.
    let trace = if quick {
        trace.window(trace::LUNCH_START - 1800, trace::LUNCH_START + 2700)
    } else {
        trace
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let started = std::time::Instant::now();
    let contenders = contenders();
    let mut worlds: Vec<World> = contenders
        .iter()
        .map(|c| runtime.block_on(simulate(&trace, c)))
        .collect();
    let summaries: Vec<Summary> = contenders
        .iter()
        .zip(&worlds)
        .map(|(c, world)| Summary::of(c, &trace, world))
        .collect();
    print_table(&trace, &summaries);

    // Everything but orch's known departure from HPA should decide
    // alike: the same scale events at the same seconds.
    let twin = Contender {
        name: "HPA with orch's rules",
        period: 15,
        phase: HPA_PHASE,
        kind: Kind::Hpa { orch_rules: true },
    };
    let twin = runtime.block_on(simulate(&trace, &twin));
    let orch = worlds.swap_remove(1);
    let same = |a: &World, b: &World| {
        a.events.len() == b.events.len()
            && a.events
                .iter()
                .zip(&b.events)
                .all(|(x, y)| (x.at, x.from, x.to) == (y.at, y.from, y.to))
    };
    println!(
        "\nCross-check: `{}` against `support/hpa.rs` with orch's departure from HPA \
         (utilisation not in whole percent): {} ({} and {} scale events).",
        contenders[1].name,
        if same(&orch, &twin) {
            "the same scale events at the same seconds"
        } else {
            "DIFFERENT decisions"
        },
        orch.events.len(),
        twin.events.len()
    );
    println!("\nReal time: {:.1} s\n", started.elapsed().as_secs_f64());
}

fn main() {
    // `cargo test --benches` passes no `--bench`: a short simulation, and
    // criterion runs each benchmark once.
    let quick = !std::env::args().any(|a| a == "--bench");
    simulation(quick);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    cost::evaluation_cost(&mut c);
    c.final_summary();
}
