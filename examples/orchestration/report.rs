//! The report at the end of a run, and the invariants it proves: no order
//! charged twice, every accepted order answered exactly once and with its
//! one charge, every crashed replica restarted and back in rotation.

use std::{collections::HashMap, fmt, time::Duration};

use orch::core::{EventKind, LifecycleEvent};
use serde::Serialize;
use tokio::time::Instant;

use crate::chaos::{ChaosLevel, Crash};
use crate::load::{OrderRecord, Outcome};
use crate::stats::Stats;
use crate::timeline::ScaleEvent;

/// Everything the run measured, and what it found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The chaos level.
    pub chaos: ChaosLevel,
    /// The seed.
    pub seed: u64,
    /// How long the run took, start to report.
    pub elapsed_secs: f64,
    /// Orders placed.
    pub orders: usize,
    /// Of them, accepted (`201`).
    pub accepted: usize,
    /// Refused for good.
    pub rejected: usize,
    /// Never answered.
    pub unanswered: usize,
    /// Cut short by Ctrl-C or SIGTERM.
    pub interrupted: usize,
    /// Requests the load generator sent (an order's repeats included).
    pub requests: u64,
    /// Of them, answered definitively.
    pub answered: u64,
    /// `accepted / orders` placed to the end.
    pub success_rate: f64,
    /// Latency of an order to its definitive answer, repeats included.
    pub p50_ms: f64,
    /// The same, 99th percentile.
    pub p99_ms: f64,
    /// Attempts of the orders client's stack beyond one per request.
    pub retries: u64,
    /// Orders answered by a replay of their first answer.
    pub order_replays: u64,
    /// `Charge` calls the workers made, and how many a replay answered.
    pub charges_asked: u64,
    /// Of them, answered by a replay of the first charge.
    pub charge_replays: u64,
    /// Charges made (runs of the `Charge` handler).
    pub charges: u64,
    /// Distinct orders charged.
    pub charged_orders: usize,
    /// Restarts of any replica.
    pub restarts: usize,
    /// Crashes chaos caused, and how each was repaired.
    pub crashes: Vec<CrashCheck>,
    /// What the autoscaler did, with its reasons.
    pub scale_events: Vec<ScaleEvent>,
    /// Openings of the orders client's breaker.
    pub orders_breaker_openings: u64,
    /// Openings of the payments client's breaker.
    pub payments_breaker_openings: u64,
    /// Whether the version 1 client was told its version is deprecated.
    pub v1_told_deprecated: bool,
    /// Invariants that failed; empty in a correct run.
    pub violations: Vec<Violation>,
}

/// How a crashed replica was repaired.
#[derive(Debug, Clone, Serialize)]
pub struct CrashCheck {
    /// The crash.
    #[serde(flatten)]
    pub crash: Crash,
    /// Ready again in a later generation.
    pub restarted: bool,
    /// In the registry (so in the balancers) at the end of the load.
    pub in_rotation: bool,
    /// Removed by a scale-down before it came back: nothing to repair.
    pub scaled_away: bool,
}

impl CrashCheck {
    /// Whether the supervisor repaired the crash: the replica is back in
    /// rotation, or a scale-down removed it before it came back.
    pub fn repaired(&self) -> bool {
        self.scaled_away || (self.restarted && self.in_rotation)
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// One order, several charges.
    DoubleCharge { order_id: String, charges: Vec<String> },
    /// An order never got a definitive answer.
    NeverAnswered { order_id: String, last_error: String },
    /// An order was charged but its client never heard it was accepted.
    ChargedNotAccepted { order_id: String },
    /// The answer named a charge the ledger does not hold for the order.
    WrongCharge {
        order_id: String,
        answered: String,
        ledger: Vec<String>,
    },
    /// The orders handlers confirmed one order more than once.
    ConfirmedTwice { order_id: String, confirmations: usize },
    /// A crashed replica was neither restarted into rotation nor scaled away.
    NotRestarted { instance: String, generation: u64 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DoubleCharge { order_id, charges } => {
                write!(f, "{order_id} charged {} times: {charges:?}", charges.len())
            }
            Self::NeverAnswered { order_id, last_error } => {
                write!(f, "{order_id} never answered ({last_error})")
            }
            Self::ChargedNotAccepted { order_id } => write!(f, "{order_id} charged but never accepted"),
            Self::WrongCharge {
                order_id,
                answered,
                ledger,
            } => {
                write!(f, "{order_id} answered with {answered}, ledger holds {ledger:?}")
            }
            Self::ConfirmedTwice {
                order_id,
                confirmations,
            } => write!(f, "{order_id} confirmed {confirmations} times"),
            Self::NotRestarted { instance, generation } => {
                write!(
                    f,
                    "{instance} crashed in generation {generation} and was not restarted into rotation"
                )
            }
        }
    }
}

/// What the run left behind, for [`Report::new`].
pub struct Evidence<'a> {
    /// The chaos level and seed.
    pub chaos: (ChaosLevel, u64),
    /// How long the run took.
    pub elapsed: Duration,
    /// Every order, from its client's side.
    pub records: &'a [OrderRecord],
    /// The counters and ledgers.
    pub stats: &'a Stats,
    /// Lifecycle events up to `cut` (the shutdown's events are not evidence).
    pub events: &'a [orch::core::LifecycleEvent],
    /// When the load and its repairs were over.
    pub cut: Instant,
    /// The autoscaler's scale events.
    pub scales: Vec<ScaleEvent>,
    /// The crashes chaos caused.
    pub crashes: Vec<Crash>,
    /// Instance ids in the registries at `cut`.
    pub in_rotation: Vec<String>,
    /// Openings of the orders and payments breakers.
    pub openings: (u64, u64),
    /// Whether the version 1 client heard of its deprecation.
    pub v1_told_deprecated: bool,
}

impl Report {
    /// Measures the run and checks its invariants.
    pub fn new(evidence: Evidence<'_>) -> Self {
        let Evidence { records, stats, .. } = evidence;
        let count = |f: fn(&Outcome) -> bool| records.iter().filter(|r| f(&r.outcome)).count();
        let accepted = count(|o| matches!(o, Outcome::Accepted { .. }));
        let interrupted = count(|o| matches!(o, Outcome::Interrupted));
        let mut latencies: Vec<Duration> = records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Accepted { .. }))
            .map(|r| r.latency)
            .collect();
        latencies.sort_unstable();
        let ledger = stats.ledger.snapshot();
        let events: Vec<&LifecycleEvent> = evidence.events.iter().filter(|e| e.at <= evidence.cut).collect();
        let crashes: Vec<CrashCheck> = evidence
            .crashes
            .into_iter()
            .map(|crash| check_crash(crash, &events, &evidence.in_rotation))
            .collect();
        let mut violations = check_orders(records, &ledger, &stats.book.snapshot());
        violations.extend(
            crashes
                .iter()
                .filter(|c| !c.repaired())
                .map(|c| Violation::NotRestarted {
                    instance: c.crash.instance.clone(),
                    generation: c.crash.generation,
                }),
        );
        let placed = records.len() - interrupted;
        Self {
            chaos: evidence.chaos.0,
            seed: evidence.chaos.1,
            elapsed_secs: evidence.elapsed.as_secs_f64(),
            orders: records.len(),
            accepted,
            rejected: count(|o| matches!(o, Outcome::Rejected { .. })),
            unanswered: count(|o| matches!(o, Outcome::Unanswered { .. })),
            interrupted,
            requests: stats.requests.get(),
            answered: stats.answered.get(),
            success_rate: if placed == 0 {
                1.0
            } else {
                accepted as f64 / placed as f64
            },
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            retries: stats.attempts.get().saturating_sub(stats.requests.get()),
            order_replays: stats.order_replays.get(),
            charges_asked: stats.charges_asked.get(),
            charge_replays: stats.charge_replays.get(),
            charges: stats.ledger.len(),
            charged_orders: ledger.len(),
            restarts: events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Restarting { .. }))
                .count(),
            crashes,
            scale_events: evidence.scales,
            orders_breaker_openings: evidence.openings.0,
            payments_breaker_openings: evidence.openings.1,
            v1_told_deprecated: evidence.v1_told_deprecated,
            violations,
        }
    }
}

/// The order invariants, from the client's records, the payments ledger
/// and the orders handlers' confirmations.
fn check_orders(
    records: &[OrderRecord],
    ledger: &HashMap<String, Vec<String>>,
    book: &HashMap<String, Vec<String>>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (order_id, charges) in ledger {
        if charges.len() > 1 {
            violations.push(Violation::DoubleCharge {
                order_id: order_id.clone(),
                charges: charges.clone(),
            });
        }
    }
    for (order_id, confirmations) in book {
        if confirmations.len() > 1 {
            violations.push(Violation::ConfirmedTwice {
                order_id: order_id.clone(),
                confirmations: confirmations.len(),
            });
        }
    }
    let mut accepted = HashMap::new();
    for record in records {
        let order_id = record.order_id.clone();
        match &record.outcome {
            Outcome::Accepted { charge_id } => {
                accepted.insert(order_id.clone(), charge_id.clone());
                let charged = ledger.get(&order_id).cloned().unwrap_or_default();
                let confirmed = book.get(&order_id).cloned().unwrap_or_default();
                if charged != [charge_id.clone()] || confirmed != [charge_id.clone()] {
                    violations.push(Violation::WrongCharge {
                        order_id,
                        answered: charge_id.clone(),
                        ledger: charged,
                    });
                }
            }
            Outcome::Unanswered { last_error } => violations.push(Violation::NeverAnswered {
                order_id,
                last_error: last_error.clone(),
            }),
            Outcome::Rejected { .. } | Outcome::Interrupted => {}
        }
    }
    let interrupted: Vec<&str> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Interrupted)
        .map(|r| r.order_id.as_str())
        .collect();
    for order_id in ledger.keys() {
        if !accepted.contains_key(order_id) && !interrupted.contains(&order_id.as_str()) {
            violations.push(Violation::ChargedNotAccepted {
                order_id: order_id.clone(),
            });
        }
    }
    violations.sort_by_key(|v| format!("{v:?}"));
    violations
}

/// Whether the crashed instance came back (ready in a later generation and
/// in rotation) or was scaled away first.
fn check_crash(crash: Crash, events: &[&LifecycleEvent], in_rotation: &[String]) -> CrashCheck {
    let later: Vec<&&LifecycleEvent> = events
        .iter()
        .filter(|e| e.id.as_str() == crash.instance && e.generation >= crash.generation)
        .collect();
    let restarted = later
        .iter()
        .any(|e| e.generation > crash.generation && matches!(e.kind, EventKind::Ready { .. }));
    let scaled_away = !restarted && later.iter().any(|e| matches!(e.kind, EventKind::Stopped { .. }));
    // Back in rotation: in the registry at the cut, unless it left rotation
    // again since for another reason (a stalled probe, a scale-down).
    let in_rotation = in_rotation.contains(&crash.instance)
        || later.last().is_some_and(|e| {
            matches!(
                e.kind,
                EventKind::NotReady | EventKind::Stopping | EventKind::Stopped { .. }
            )
        });
    CrashCheck {
        crash,
        restarted,
        in_rotation,
        scaled_away,
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- report: chaos {:?}, seed {}, {:.1} s",
            self.chaos, self.seed, self.elapsed_secs
        )?;
        writeln!(
            f,
            "    orders          {} placed, {} accepted, {} rejected, {} never answered, {} interrupted ({:.2} % success)",
            self.orders,
            self.accepted,
            self.rejected,
            self.unanswered,
            self.interrupted,
            self.success_rate * 100.0
        )?;
        writeln!(
            f,
            "    requests        {} sent, {} answered definitively",
            self.requests, self.answered
        )?;
        writeln!(
            f,
            "    latency         p50 {:.1} ms, p99 {:.1} ms (to the definitive answer)",
            self.p50_ms, self.p99_ms
        )?;
        writeln!(
            f,
            "    retries         {} by the orders client's stack",
            self.retries
        )?;
        writeln!(
            f,
            "    replays served  {} orders, {} charges",
            self.order_replays, self.charge_replays
        )?;
        writeln!(
            f,
            "    charges         {} made for {} orders, {} accepted ({} charge calls)",
            self.charges, self.charged_orders, self.accepted, self.charges_asked
        )?;
        writeln!(f, "    restarts        {}", self.restarts)?;
        for c in &self.crashes {
            let fate = if c.scaled_away {
                "scaled away before it came back"
            } else if c.restarted && c.in_rotation {
                "restarted, back in rotation"
            } else {
                "NOT restarted"
            };
            writeln!(
                f,
                "      crash of {} (generation {}): {fate}",
                c.crash.instance, c.crash.generation
            )?;
        }
        writeln!(f, "    scale events    {}", self.scale_events.len())?;
        for s in &self.scale_events {
            writeln!(
                f,
                "      {:>5.1} s  orders {} -> {}: {}",
                s.at_secs, s.from, s.to, s.reason
            )?;
        }
        writeln!(
            f,
            "    breakers        orders opened {} times, payments {} times",
            self.orders_breaker_openings, self.payments_breaker_openings
        )?;
        writeln!(
            f,
            "    v1 client       told its version is deprecated: {}",
            self.v1_told_deprecated
        )?;
        if self.violations.is_empty() {
            write!(
                f,
                "    invariants      hold: no double charge, every accepted order answered once, every crash repaired"
            )
        } else {
            writeln!(f, "    VIOLATIONS      {}", self.violations.len())?;
            for v in self.violations.iter().take(20) {
                writeln!(f, "      {v}")?;
            }
            Ok(())
        }
    }
}
