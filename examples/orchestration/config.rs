//! The demo's configuration, 12-factor: defaults in code, then environment
//! variables with the prefix `ORCH_DEMO` (`ORCH_DEMO__DURATION=30s`,
//! `ORCH_DEMO__AUTOSCALER__MAX_REPLICAS=8`,
//! `ORCH_DEMO__ORDERS_CLIENT__RESILIENCE__RETRY__MAX_ATTEMPTS=2`), then the
//! command-line flags. One struct, so that the example and the end-to-end
//! tests run the same loop with different numbers.

use std::time::Duration;

use orch::core::autoscale::{
    AutoscalerConfig, Behavior, QueueBacklog, RatePolicy, ScalingRules, SelectPolicy,
};
use orch::core::config::ConfigLoader;
use orch::discovery::balance::{Algorithm, BalancerConfig};
use orch::resilience::{CircuitBreakerConfig, RetryConfig, retry::BackoffConfig, stack::StackConfig};
use serde::{Deserialize, Serialize};

use crate::chaos::ChaosLevel;

/// The prefix of the demo's environment variables.
pub const ENV_PREFIX: &str = "ORCH_DEMO";

/// The name of the backlog signal the autoscaler's policy reads.
pub const BACKLOG_METRIC: &str = "orders_backlog";

/// Everything the loop reads from its environment and flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// How long the load runs (ramp, peak, cool down); orders still in
    /// flight then are finished before the report.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Replicas of `orders` and `payments` at start; the autoscaler's floor
    /// for `orders`.
    pub replicas: usize,
    /// Workers each `orders` replica runs: how many orders it fulfils at once.
    pub workers: usize,
    /// How long fulfilling one order takes besides the payment.
    #[serde(with = "humantime_serde")]
    pub job_time: Duration,
    /// Concurrent clients at the peak of the load.
    pub peak_users: usize,
    /// Times an order without a definitive answer is sent again, with the
    /// same idempotency key, before it counts as never answered.
    pub order_attempts: u32,
    /// Fault injection.
    pub chaos: ChaosLevel,
    /// Seed of the chaos plan and of the injected faults.
    pub seed: u64,
    /// How `orders` is scaled on its backlog.
    pub autoscaler: AutoscalerConfig,
    /// The load generator's client of `orders`.
    pub orders_client: ClientConfig,
    /// The `orders` replicas' client of `payments`.
    pub payments_client: ClientConfig,
}

/// One client: its balancer and its resilience stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The balancer over the registry's endpoints.
    pub balancer: BalancerConfig,
    /// Timeouts, retry with budget, circuit breaker.
    pub resilience: StackConfig,
}

impl Default for DemoConfig {
    fn default() -> Self {
        let replicas = 2;
        Self {
            duration: Duration::from_secs(20),
            replicas,
            workers: 2,
            job_time: Duration::from_millis(40),
            peak_users: 40,
            order_attempts: 20,
            chaos: ChaosLevel::Low,
            seed: 1,
            autoscaler: autoscaler(replicas, 6, Duration::from_secs(3)),
            orders_client: client("orders", Duration::from_secs(1)),
            payments_client: client("payments", Duration::from_millis(500)),
        }
    }
}

/// Scales `orders` on its backlog: four waiting orders per replica, checked
/// four times a second. Up at once (double, or add four, per second), down
/// only after `stabilization` without a higher recommendation: HPA's
/// behaviour with in-process periods.
pub fn autoscaler(min: usize, max: usize, stabilization: Duration) -> AutoscalerConfig {
    let second = Duration::from_secs(1);
    AutoscalerConfig::default()
        .replicas(min, max)
        .evaluation_period(Duration::from_millis(250))
        .policy(QueueBacklog::new(BACKLOG_METRIC, 4.0))
        .behavior(Behavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                cooldown: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![RatePolicy::percent(100, second), RatePolicy::replicas(4, second)],
            },
            scale_down: ScalingRules {
                stabilization_window: stabilization,
                cooldown: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![RatePolicy::percent(100, second)],
            },
        })
}

/// A client for loopback replicas: a 1 ms default RTT for replicas not yet
/// measured (linkerd's 30 ms assumes a network), a short fail-fast, three
/// attempts within a retry budget, and a breaker that judges the last 50
/// calls and waits `open_wait` before its trials.
fn client(name: &str, open_wait: Duration) -> ClientConfig {
    ClientConfig {
        balancer: BalancerConfig::default()
            .name(name)
            .algorithm(Algorithm::peak_ewma().default_rtt(Duration::from_millis(1)))
            .failfast_timeout(Duration::from_secs(1)),
        resilience: StackConfig {
            overall_timeout: Some(Duration::from_secs(4)),
            attempt_timeout: Some(Duration::from_secs(2)),
            retry: Some(RetryConfig::default().name(name).max_attempts(3).backoff(
                BackoffConfig::exponential(Duration::from_millis(10), Duration::from_millis(200)),
            )),
            breaker: Some(
                CircuitBreakerConfig::default()
                    .name(name)
                    .count_window(50)
                    .minimum_calls(20)
                    .open_wait(open_wait)
                    .half_open_permits(3),
            ),
            ..StackConfig::default()
        },
    }
}

/// What the command line asks besides the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Keep serving after the load, until Ctrl-C or SIGTERM.
    pub serve: bool,
    /// Log JSON lines instead of text.
    pub json: bool,
}

/// A flag or value the demo does not understand.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// A flag that is not one of the demo's.
    #[error(
        "unknown flag `{0}` (flags: --duration D, --replicas N, --chaos off|low|high, --seed N, --serve, --json)"
    )]
    Unknown(String),
    /// A flag without its value.
    #[error("flag `{0}` needs a value")]
    MissingValue(&'static str),
    /// A value that does not parse.
    #[error("bad value `{value}` for `{flag}`: {reason}")]
    BadValue {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
}

/// Loads the configuration from the environment, then applies `args` (the
/// command line without the program name) over it.
pub fn load(
    args: impl IntoIterator<Item = String>,
) -> Result<(DemoConfig, Flags), Box<dyn std::error::Error>> {
    let mut config: DemoConfig = ConfigLoader::new(ENV_PREFIX)
        .defaults(&DemoConfig::default())
        .load()?;
    let flags = apply_flags(&mut config, args)?;
    Ok((config, flags))
}

/// Applies command-line flags over `config`.
pub fn apply_flags(
    config: &mut DemoConfig,
    args: impl IntoIterator<Item = String>,
) -> Result<Flags, FlagError> {
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |flag: &'static str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(FlagError::MissingValue(flag))
        };
        match name.as_str() {
            "--serve" => flags.serve = true,
            "--json" => flags.json = true,
            "--duration" => {
                let given = value("--duration")?;
                config.duration = humantime_serde::re::humantime::parse_duration(&given)
                    .map_err(|e| bad("--duration", &given, e))?;
            }
            "--replicas" => {
                let given = value("--replicas")?;
                let replicas: usize = given.parse().map_err(|e| bad("--replicas", &given, e))?;
                if replicas == 0 {
                    return Err(bad("--replicas", &given, "must be at least 1"));
                }
                config.replicas = replicas;
                config.autoscaler.min_replicas = replicas;
                config.autoscaler.max_replicas = config.autoscaler.max_replicas.max(replicas);
            }
            "--chaos" => {
                let given = value("--chaos")?;
                config.chaos = given.parse().map_err(|e| bad("--chaos", &given, e))?;
            }
            "--seed" => {
                let given = value("--seed")?;
                config.seed = given.parse().map_err(|e| bad("--seed", &given, e))?;
            }
            _ => return Err(FlagError::Unknown(arg)),
        }
    }
    Ok(flags)
}

fn bad(flag: &'static str, value: &str, reason: impl std::fmt::Display) -> FlagError {
    FlagError::BadValue {
        flag,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}
