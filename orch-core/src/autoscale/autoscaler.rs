//! The loop that ties signals, policies and behaviour to a [`Scaler`]:
//! every evaluation period it reads the scaler's status and every source,
//! asks each policy, applies the behaviour and the bounds, acts (or, dry,
//! does not) and publishes a [`Decision`].

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use futures_util::future::join_all;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{
    AutoscaleError, AutoscalerConfig, Decision, DecisionSubscription, MetricSource, MetricState, Outcome,
    Reading, Recommendation, Steps, Vote,
    behavior::History,
    decision::DecisionLog,
    policy::{Inputs, Policy},
};
use crate::{ScaleStatus, Scaler};

/// Decides how many replicas a [`Scaler`] should have, every evaluation
/// period, from the policies of its [`AutoscalerConfig`].
///
/// ```
/// use std::time::Duration;
/// use orch_core::autoscale::{Autoscaler, AutoscalerConfig, QueueBacklog, WorkQueue};
/// # use orch_core::{ScaleError, Scaler};
/// # struct Group;
/// # #[async_trait::async_trait]
/// # impl Scaler for Group {
/// #     async fn current(&self) -> Result<usize, ScaleError> { Ok(1) }
/// #     async fn scale_to(&self, _: usize) -> Result<(), ScaleError> { Ok(()) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let jobs: WorkQueue<String> = WorkQueue::new();
/// let config = AutoscalerConfig::default()
///     .replicas(0, 8)
///     .evaluation_period(Duration::from_millis(200))
///     .policy(QueueBacklog::new("jobs", 10.0));
/// let mut autoscaler = Autoscaler::builder(config)
///     .name("workers")
///     .source("jobs", jobs.clone())
///     .scaler(Group) // e.g. supervisor.replica_group("workers")
///     .build()?;
/// for n in 0..25 {
///     jobs.push(format!("job {n}"));
/// }
/// let decision = autoscaler.evaluate().await;
/// assert_eq!(decision.steps.target, 3);
/// // In a service: tokio::spawn(autoscaler.run(shutdown_token));
/// # Ok(()) }
/// ```
pub struct Autoscaler {
    name: Arc<str>,
    config: AutoscalerConfig,
    policies: Vec<(Policy, Recommendation)>,
    sources: BTreeMap<String, Arc<dyn MetricSource>>,
    scaler: Arc<dyn Scaler>,
    history: History,
    last_active: Instant,
    clock: WallClock,
    log: Arc<DecisionLog>,
}

impl std::fmt::Debug for Autoscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Autoscaler`]: its config, the sources its policies name,
/// the scaler it drives.
pub struct AutoscalerBuilder {
    config: AutoscalerConfig,
    name: String,
    sources: BTreeMap<String, Arc<dyn MetricSource>>,
    scaler: Option<Arc<dyn Scaler>>,
    wall_origin: Option<SystemTime>,
}

impl AutoscalerBuilder {
    /// Names the autoscaler in metrics labels and traces (default
    /// `autoscaler`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The source the policies call `name`.
    pub fn source(mut self, name: impl Into<String>, source: impl MetricSource + 'static) -> Self {
        self.sources.insert(name.into(), Arc::new(source));
        self
    }

    /// The scaler to drive (a supervisor's
    /// [`replica_group`](crate::SupervisorHandle::replica_group)).
    pub fn scaler(mut self, scaler: impl Scaler + 'static) -> Self {
        self.scaler = Some(Arc::new(scaler));
        self
    }

    /// The wall-clock time at which the autoscaler starts, for schedule
    /// policies; later wall times follow tokio's clock from there, so a
    /// paused-time test sees windows open with simulated time. Default:
    /// the system clock at [`build`](Self::build).
    pub fn wall_clock_origin(mut self, origin: SystemTime) -> Self {
        self.wall_origin = Some(origin);
        self
    }

    /// Validates everything; nothing runs before [`Autoscaler::run`] or
    /// [`Autoscaler::evaluate`].
    pub fn build(self) -> Result<Autoscaler, AutoscaleError> {
        let compiled = self.config.compile()?;
        for (i, policy) in self.config.policies.iter().enumerate() {
            if let Some(metric) = policy.metric()
                && !self.sources.contains_key(metric)
            {
                return Err(AutoscaleError::UnknownMetric {
                    field: format!("policies[{i}].metric"),
                    metric: metric.to_owned(),
                });
            }
        }
        let scaler = self.scaler.ok_or(AutoscaleError::NoScaler)?;
        let policies = compiled
            .into_iter()
            .zip(&self.config.policies)
            .map(|(policy, config)| {
                let label = Recommendation {
                    policy: config.name(),
                    vote: Vote::Abstain,
                    active: false,
                    reason: String::new(),
                };
                (policy, label)
            })
            .collect();
        let now = Instant::now();
        Ok(Autoscaler {
            name: self.name.into(),
            policies,
            sources: self.sources,
            scaler,
            history: History::default(),
            // A fresh autoscaler waits one cooldown before scaling to zero,
            // as if the group had just been active.
            last_active: now,
            clock: WallClock {
                origin: self.wall_origin.unwrap_or_else(SystemTime::now),
                at: now,
            },
            log: Arc::new(DecisionLog::new()),
            config: self.config,
        })
    }
}

/// Wall-clock time derived from tokio's clock, from one origin.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    origin: SystemTime,
    at: Instant,
}

impl WallClock {
    fn now(&self, now: Instant) -> SystemTime {
        self.origin + now.saturating_duration_since(self.at)
    }
}

/// Reads an autoscaler's decisions from anywhere; cheap to clone.
#[derive(Debug, Clone)]
pub struct AutoscalerHandle {
    log: Arc<DecisionLog>,
}

impl AutoscalerHandle {
    /// The last decision, if any evaluation ran.
    pub fn last_decision(&self) -> Option<Arc<Decision>> {
        self.log.last()
    }

    /// The last decision in words (see [`Decision`]'s `Display`).
    pub fn explain(&self) -> String {
        self.last_decision()
            .map_or_else(|| "no evaluation yet".to_owned(), |d| d.to_string())
    }

    /// The last decision and every later one.
    pub fn subscribe(&self) -> DecisionSubscription {
        self.log.subscribe()
    }
}

impl Autoscaler {
    /// Starts building an autoscaler for `config`.
    pub fn builder(config: AutoscalerConfig) -> AutoscalerBuilder {
        AutoscalerBuilder {
            config,
            name: "autoscaler".to_owned(),
            sources: BTreeMap::new(),
            scaler: None,
            wall_origin: None,
        }
    }

    /// A handle to read decisions while [`run`](Self::run) owns the
    /// autoscaler.
    pub fn handle(&self) -> AutoscalerHandle {
        AutoscalerHandle {
            log: Arc::clone(&self.log),
        }
    }

    /// Evaluates every evaluation period (the first at once) until
    /// `shutdown` is cancelled. A slow evaluation delays the next one
    /// rather than bunching them up.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.evaluation_period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.evaluate().await;
        }
    }

    /// One evaluation now: read, decide, act, publish. [`run`](Self::run)
    /// calls it every period; tests and simulations may call it directly.
    pub async fn evaluate(&mut self) -> Arc<Decision> {
        let now = Instant::now();
        let wall = self.clock.now(now);
        metrics::counter!("orch_autoscaler_evaluations_total", "autoscaler" => self.name.to_string())
            .increment(1);
        let status = match self.scaler.status().await {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(autoscaler = %self.name, %error, "autoscaler: no status from the scaler");
                return self.log.publish(Decision {
                    at: now,
                    wall,
                    current: 0,
                    ready: 0,
                    inputs: Vec::new(),
                    recommendations: Vec::new(),
                    steps: Steps::default(),
                    outcome: Outcome::StatusUnavailable(error.to_string()),
                    reason: "the scaler could not report its replicas; nothing decided".to_owned(),
                });
            }
        };
        let inputs = self.sample(now).await;
        let recommendations = self.recommend(status, &inputs, wall);
        let (steps, reason) = self.decide(now, status.desired, &recommendations);
        let outcome = self.act(now, status.desired, steps.target).await;
        let decision = Decision {
            at: now,
            wall,
            current: status.desired,
            ready: status.ready,
            inputs,
            recommendations,
            steps,
            outcome,
            reason,
        };
        decision.report(&self.name);
        self.log.publish(decision)
    }

    /// Every source's reading, concurrently, judged fresh, stale or
    /// missing.
    async fn sample(&self, now: Instant) -> Vec<(String, MetricState)> {
        let limit = self.config.sample_age_limit();
        let readings = join_all(self.sources.values().map(|source| source.sample())).await;
        self.sources
            .keys()
            .zip(readings)
            .map(|(name, reading)| {
                let state = match reading {
                    Reading::Sample { value, .. } if !value.is_finite() => {
                        MetricState::Missing(format!("not a finite number: {value}"))
                    }
                    Reading::Sample { value, at } => {
                        let age = now.saturating_duration_since(at);
                        if age > limit {
                            MetricState::Stale {
                                value,
                                age_secs: age.as_secs_f64(),
                            }
                        } else {
                            MetricState::Fresh(value)
                        }
                    }
                    Reading::Missing { reason } => MetricState::Missing(reason),
                };
                (name.clone(), state)
            })
            .collect()
    }

    fn recommend(
        &self,
        status: ScaleStatus,
        inputs: &[(String, MetricState)],
        wall: SystemTime,
    ) -> Vec<Recommendation> {
        #[cfg(not(feature = "schedule"))]
        let _ = wall;
        self.policies
            .iter()
            .zip(&self.config.policies)
            .map(|((policy, label), config)| {
                let metric = match config.metric() {
                    None => Err("no metric"),
                    Some(name) => match inputs.iter().find(|(n, _)| n == name).map(|(_, s)| s) {
                        Some(MetricState::Fresh(value)) => Ok(*value),
                        Some(MetricState::Stale { .. }) => Err("the metric is stale"),
                        _ => Err("the metric is missing"),
                    },
                };
                let (vote, active, reason) = policy.recommend(&Inputs {
                    status,
                    metric,
                    #[cfg(feature = "schedule")]
                    wall: jiff::Timestamp::try_from(wall).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                });
                Recommendation {
                    policy: label.policy.clone(),
                    vote,
                    active,
                    reason,
                }
            })
            .collect()
    }

    /// The target through each step, and the sentence that explains it.
    fn decide(
        &mut self,
        now: Instant,
        current: usize,
        recommendations: &[Recommendation],
    ) -> (Steps, String) {
        let config = &self.config;
        let highest = recommendations
            .iter()
            .filter_map(|r| match r.vote {
                Vote::Replicas(n) => Some((n, r)),
                _ => None,
            })
            .max_by_key(|(n, _)| *n);
        let holding = recommendations.iter().find(|r| r.vote == Vote::Hold);
        // A hold that decides (no policy wants more than the current count)
        // is no recommendation at all: HPA ends such a sync in an error and
        // keeps nothing, so a metric that comes back after an outage is not
        // held up by the outage's holds in the scale-down window.
        let held = holding.is_some() && highest.is_none_or(|(n, _)| n < current);
        let recommended = match (highest, holding) {
            (Some((n, _)), Some(_)) => n.max(current),
            (Some((n, _)), None) => n,
            (None, Some(_)) => current,
            (None, None) => config.min_replicas,
        };
        if recommendations.iter().any(|r| r.active) {
            self.last_active = now;
        }
        let cooling = now.saturating_duration_since(self.last_active) < config.scale_to_zero_cooldown;
        // The cooldown guards the step to zero only: with a floor above
        // zero the clamp below decides, and names the floor as the reason.
        let cooled = if recommended == 0 && current > 0 && config.min_replicas == 0 && cooling {
            1
        } else {
            recommended
        };
        let stabilized = if held {
            current
        } else {
            self.history.stabilize(&config.behavior, now, current, cooled)
        };
        let cooldown_left = self.history.cooling(&config.behavior, now, current, stabilized);
        let rate_limited = if cooldown_left.is_some() {
            current
        } else {
            self.history.limit(&config.behavior, now, current, stabilized)
        };
        let target = rate_limited.clamp(config.min_replicas, config.max_replicas);
        let steps = Steps {
            recommended,
            cooled,
            stabilized,
            rate_limited,
            target,
        };
        let direction = |to: usize, from: usize| if to > from { "up" } else { "down" };
        let reason = if target != rate_limited {
            format!(
                "{rate_limited} clamped to {target} (min_replicas {}, max_replicas {})",
                config.min_replicas, config.max_replicas
            )
        } else if let Some(left) = cooldown_left {
            let (way, cooldown) = if stabilized > current {
                ("up", config.behavior.scale_up.cooldown)
            } else {
                ("down", config.behavior.scale_down.cooldown)
            };
            format!(
                "the scale-{way} cooldown ({cooldown:?}) holds {current} against {stabilized} for {left:?} more"
            )
        } else if rate_limited != stabilized {
            format!(
                "the scale-{} rate policies allow {rate_limited} of {stabilized} now",
                direction(stabilized, current)
            )
        } else if stabilized != cooled {
            let window = if cooled > current {
                config.behavior.scale_up.stabilization_window
            } else {
                config.behavior.scale_down.stabilization_window
            };
            format!(
                "the scale-{} stabilization window ({window:?}) holds {stabilized} against {cooled} recommended",
                direction(cooled, current),
            )
        } else if cooled != recommended {
            format!(
                "held at 1 until the scale-to-zero cooldown ({:?}) after the last activity ends",
                config.scale_to_zero_cooldown
            )
        } else {
            match (highest, holding) {
                (_, Some(hold)) if held => format!(
                    "{} holds the current count: {} (kept out of the stabilization window)",
                    hold.policy, hold.reason
                ),
                (Some((n, by)), _) => format!(
                    "{by_policy} recommends {n}: {why}",
                    by_policy = by.policy,
                    why = by.reason
                ),
                (None, _) => format!("no policy has an opinion: the floor {}", config.min_replicas),
            }
        };
        (steps, reason)
    }

    async fn act(&mut self, now: Instant, current: usize, target: usize) -> Outcome {
        if target == current {
            return Outcome::Unchanged;
        }
        if self.config.dry_run {
            return Outcome::DryRun { would: target };
        }
        match self.scaler.scale_to(target).await {
            Ok(()) => {
                self.history
                    .record_change(&self.config.behavior, now, current, target);
                Outcome::Scaled {
                    from: current,
                    to: target,
                }
            }
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }
}
