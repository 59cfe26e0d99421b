//! Seeded chaos: what goes wrong, when, and to whom, decided up front from
//! the seed so that a run can be repeated, then done to the live replicas.
//!
//! - **Crashes:** a replica of `orders` or `payments` dies: its calls in
//!   flight fail, its workers drop their jobs, its incarnation ends as a
//!   crash (`ChildContext::fail`), and the supervisor restarts it.
//! - **A slow replica:** one `orders` replica answers late, by a latency
//!   `FaultLayer` on its API (the balancer's peak-EWMA should notice).
//! - **Errors:** `FaultLayer`s answer some orders with `503` and some
//!   charges with `UNAVAILABLE`, and at `high` every charge for a second
//!   (the payments breaker opens).
//! - **A stalled probe:** one `orders` replica's readiness endpoint hangs
//!   for a while: it leaves rotation, then comes back.

use std::{
    collections::BTreeMap,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use orch::core::ChildContext;
use orch::resilience::{
    ConfigError,
    chaos::{ErrorFault, FaultConfig, FaultLayer, FaultSchedule, InjectError, InjectResponse, LatencyFault},
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How much goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChaosLevel {
    /// Nothing.
    Off,
    /// One crash per service, a slow replica, 1 % errors, a stalled probe.
    Low,
    /// Several crashes, a slower replica, 5 % errors, a payments outage.
    High,
}

impl FromStr for ChaosLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "low" => Ok(Self::Low),
            "high" => Ok(Self::High),
            other => Err(format!("`{other}` is not off, low or high")),
        }
    }
}

/// Which service a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The HTTP orders service.
    Orders,
    /// The gRPC payments service.
    Payments,
}

impl Target {
    /// The child id of the service's replica group.
    pub fn child(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Payments => "payments",
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Crash replica `ordinal` of `target`.
    Crash {
        /// The service.
        target: Target,
        /// Which replica.
        ordinal: usize,
    },
    /// Hang the readiness endpoint of `orders` replica `ordinal`.
    StallReadiness {
        /// Which replica.
        ordinal: usize,
        /// For how long.
        stall: Duration,
    },
}

/// Everything chaos does in one run, from the seed.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    /// The seed it came from.
    pub seed: u64,
    /// Scheduled faults, by time since the load started.
    pub actions: Vec<(Duration, Action)>,
    /// The `orders` replica (by ordinal) that answers late, and how.
    pub slow: Option<(usize, LatencyFault)>,
    /// Share of orders answered `503` by an injected fault.
    pub order_errors: f64,
    /// Share of charges answered `UNAVAILABLE` by an injected fault.
    pub charge_errors: f64,
    /// A window in which every charge fails, from when the payments faults
    /// are built (just before the tree starts, a fraction of a second
    /// before the load).
    pub payments_outage: Option<(Duration, Duration)>,
}

impl ChaosPlan {
    /// The plan for `level` and `seed`, over a load of `duration` against
    /// `replicas` replicas per service. Faults end by three quarters of the
    /// duration, so that restarts and recoveries are seen before the end.
    pub fn new(level: ChaosLevel, seed: u64, duration: Duration, replicas: usize) -> Self {
        let mut rng = SplitMix(seed ^ 0x6f72_6368_6465_6d6f);
        let mut at = |from: f64, to: f64| duration.mul_f64(from + (to - from) * rng.unit());
        let mut plan = Self {
            seed,
            actions: Vec::new(),
            slow: None,
            order_errors: 0.0,
            charge_errors: 0.0,
            payments_outage: None,
        };
        let (orders_crashes, payments_crashes, stall) = match level {
            ChaosLevel::Off => return plan,
            ChaosLevel::Low => (1, 1, Duration::from_millis(1500)),
            ChaosLevel::High => (3, 2, Duration::from_secs(2)),
        };
        for (target, crashes) in [
            (Target::Orders, orders_crashes),
            (Target::Payments, payments_crashes),
        ] {
            for _ in 0..crashes {
                let when = at(0.15, 0.7);
                plan.actions.push((when, Action::Crash { target, ordinal: 0 }));
            }
        }
        let when = at(0.3, 0.6);
        plan.actions
            .push((when, Action::StallReadiness { ordinal: 0, stall }));
        let (probability, min, max, errors) = match level {
            ChaosLevel::High => (0.5, 50, 200, 0.05),
            _ => (0.3, 20, 80, 0.01),
        };
        let latency = LatencyFault {
            probability,
            min: Duration::from_millis(min),
            max: Duration::from_millis(max),
        };
        plan.order_errors = errors;
        plan.charge_errors = errors;
        if level == ChaosLevel::High {
            let from = at(0.35, 0.5);
            plan.payments_outage = Some((from, from + Duration::from_secs(1)));
        }
        // Ordinals are drawn last so that the times above do not depend on
        // the replica count.
        let mut pick = |n: usize| (rng.next() % n.max(1) as u64) as usize;
        for (_, action) in &mut plan.actions {
            match action {
                Action::Crash { ordinal, .. } | Action::StallReadiness { ordinal, .. } => {
                    *ordinal = pick(replicas)
                }
            }
        }
        plan.slow = Some((pick(replicas), latency));
        plan.actions.sort_by_key(|(when, _)| *when);
        plan
    }

    /// The layer answering some orders `503` (none at `off`).
    pub fn order_errors(&self) -> Result<HttpFaults, ConfigError> {
        Ok(self
            .errors(self.order_errors, "order_errors", FaultSchedule::Always)?
            .respond_with(unavailable_http as _))
    }

    /// The latency layer of replica `ordinal` of `orders`: late answers if
    /// it is the slow one, nothing otherwise.
    pub fn slowness(&self, ordinal: usize) -> Result<HttpFaults, ConfigError> {
        let latency = self
            .slow
            .filter(|(slow, _)| *slow == ordinal)
            .map(|(_, latency)| latency);
        let config = FaultConfig {
            name: format!("slow_orders_{ordinal}"),
            seed: self.seed,
            latency,
            ..FaultConfig::default()
        };
        Ok(config.build()?.respond_with(unavailable_http as _))
    }

    /// The layers failing charges: a steady share, and the outage window.
    pub fn charge_errors(&self) -> Result<(GrpcFaults, GrpcFaults), ConfigError> {
        let steady = self.errors(self.charge_errors, "charge_errors", FaultSchedule::Always)?;
        let (probability, schedule) = match self.payments_outage {
            Some((from, until)) => (1.0, FaultSchedule::Window { from, until }),
            None => (0.0, FaultSchedule::Always),
        };
        let outage = self.errors(probability, "payments_outage", schedule)?;
        Ok((
            steady.respond_with(unavailable_grpc as _),
            outage.respond_with(unavailable_grpc as _),
        ))
    }

    /// A layer failing `probability` of the requests while `schedule` says.
    fn errors(
        &self,
        probability: f64,
        name: &str,
        schedule: FaultSchedule,
    ) -> Result<FaultLayer<InjectError>, ConfigError> {
        let config = FaultConfig {
            name: name.to_owned(),
            seed: self.seed.wrapping_add(name.len() as u64),
            error: (probability > 0.0).then_some(ErrorFault { probability }),
            schedule,
            ..FaultConfig::default()
        };
        config.build()
    }
}

/// A gRPC response as tonic's servers send it.
pub type GrpcResponse = http::Response<tonic::body::Body>;
/// Faults on the orders API, answering `503`.
pub type HttpFaults = FaultLayer<InjectResponse<fn() -> axum::response::Response>>;
/// Faults on the payments service, answering `UNAVAILABLE`.
pub type GrpcFaults = FaultLayer<InjectResponse<fn() -> GrpcResponse>>;

fn unavailable_http() -> axum::response::Response {
    use axum::response::IntoResponse;
    (http::StatusCode::SERVICE_UNAVAILABLE, "injected fault").into_response()
}

fn unavailable_grpc() -> GrpcResponse {
    tonic::Status::unavailable("injected fault").into_http()
}

/// SplitMix64: enough randomness for a chaos plan, and no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ===== the live replicas =====

/// One incarnation of a replica, as chaos reaches it.
#[derive(Debug)]
pub struct Incarnation {
    ctx: ChildContext,
    /// Cancelled when the incarnation crashes: its calls in flight and its
    /// workers stop at once.
    pub crashed: CancellationToken,
    stalled_until: Mutex<Option<Instant>>,
}

impl Incarnation {
    /// The instance's ordinal in its replica group (`app/orders-2` is 2).
    pub fn ordinal(ctx: &ChildContext) -> usize {
        ctx.id()
            .as_str()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Until when the readiness endpoint hangs, if it does now.
    pub fn stalled_until(&self) -> Option<Instant> {
        let until = self.stalled_until.lock().ok().and_then(|until| *until)?;
        (until > Instant::now()).then_some(until)
    }
}

/// The latest incarnation of every replica, by instance id.
#[derive(Debug, Default)]
pub struct Incarnations {
    live: Mutex<BTreeMap<String, Arc<Incarnation>>>,
}

impl Incarnations {
    /// Records the incarnation starting with `ctx`.
    pub fn register(&self, ctx: &ChildContext) -> Arc<Incarnation> {
        let incarnation = Arc::new(Incarnation {
            ctx: ctx.clone(),
            crashed: CancellationToken::new(),
            stalled_until: Mutex::new(None),
        });
        if let Ok(mut live) = self.live.lock() {
            live.insert(ctx.id().to_string(), Arc::clone(&incarnation));
        }
        incarnation
    }

    fn get(&self, target: Target, ordinal: usize) -> Option<Arc<Incarnation>> {
        let live = self.live.lock().ok()?;
        live.iter()
            .find(|(id, _)| id.ends_with(&format!("/{}-{ordinal}", target.child())))
            .map(|(_, incarnation)| Arc::clone(incarnation))
    }

    /// A running incarnation of `target` to crash: replica `ordinal` if it
    /// runs, else the first one that does. The planned one may be gone
    /// (scaled away, or restarting after an earlier fault) by the time its
    /// crash is due, and a crash the plan promised must still happen.
    fn victim(&self, target: Target, ordinal: usize) -> Option<Arc<Incarnation>> {
        let running = |incarnation: &Arc<Incarnation>| {
            !incarnation.crashed.is_cancelled() && !incarnation.ctx.is_cancelled()
        };
        if let Some(planned) = self.get(target, ordinal).filter(running) {
            return Some(planned);
        }
        let live = self.live.lock().ok()?;
        let prefix = format!("/{}-", target.child());
        live.iter()
            .filter(|(id, incarnation)| id.contains(&prefix) && running(incarnation))
            .map(|(_, incarnation)| Arc::clone(incarnation))
            .next()
    }
}

/// A crash chaos caused, to check that the supervisor repaired it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crash {
    /// The instance (`app/orders-1`).
    pub instance: String,
    /// The incarnation that crashed.
    pub generation: u64,
}

/// Carries out `plan` against the live replicas from now on, until `stop`;
/// returns the crashes it caused.
pub async fn run(plan: ChaosPlan, incarnations: Arc<Incarnations>, stop: CancellationToken) -> Vec<Crash> {
    let started = Instant::now();
    let mut crashes = Vec::new();
    for (when, action) in plan.actions {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(started + when) => {}
        }
        match action {
            Action::Crash { target, ordinal } => {
                // No replica of the target running at all (every one
                // restarting): try again shortly, until the run stops.
                let victim = loop {
                    if let Some(victim) = incarnations.victim(target, ordinal) {
                        break Some(victim);
                    }
                    tokio::select! {
                        () = stop.cancelled() => break None,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                };
                let Some(victim) = victim else { break };
                tracing::info!(instance = %victim.ctx.id(), generation = victim.ctx.generation(), "chaos: crash");
                victim.crashed.cancel();
                victim.ctx.fail("chaos: crashed");
                crashes.push(Crash {
                    instance: victim.ctx.id().to_string(),
                    generation: victim.ctx.generation(),
                });
            }
            Action::StallReadiness { ordinal, stall } => {
                let Some(victim) = incarnations.get(Target::Orders, ordinal) else {
                    continue;
                };
                tracing::info!(instance = %victim.ctx.id(), stall_ms = stall.as_millis() as u64, "chaos: readiness probe stalls");
                if let Ok(mut until) = victim.stalled_until.lock() {
                    *until = Some(Instant::now() + stall);
                }
            }
        }
    }
    crashes
}
