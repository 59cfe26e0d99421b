//! Health probes with Kubernetes semantics: liveness, readiness and startup.
//!
//! A [`Probe`] answers one question about one instance; a [`ProbeSpec`]
//! pairs it with its [`ProbeTiming`] (initial delay, period, timeout,
//! thresholds). The supervisor runs the probes of every instance and reacts:
//!
//! - **startup**: while it has not succeeded, liveness and readiness are not
//!   run; `failure_threshold` consecutive failures kill and restart the instance.
//! - **liveness**: `failure_threshold` consecutive failures kill and restart
//!   the instance (exit reason [`LivenessFailed`](crate::ExitReason::LivenessFailed)).
//! - **readiness**: the instance starts not ready; `success_threshold`
//!   consecutive successes make it ready, `failure_threshold` consecutive
//!   failures take it out of rotation. It is never restarted for this.
//!
//! A check that outlives `timeout` counts as a failure. A check that answers
//! [`ProbeOutcome::Unknown`] changes nothing: counters keep their values.
//!
//! Built-in probes, like Kubernetes' probe handlers: [`TcpProbe`]
//! (`tcpSocket`), `HttpProbe` (`httpGet`, feature `http`) and
//! `GrpcHealthProbe` (`grpc`, speaking `grpc.health.v1`, feature `grpc`).
//! Each is unknown until the instance announces an address.

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod runner;
mod tcp;

#[cfg(feature = "grpc")]
pub use grpc::GrpcHealthProbe;
#[cfg(feature = "http")]
pub use http::{HttpProbe, HttpProbeBuilder};
pub(crate) use runner::{ProbeSet, ProbeTransition, run_probes};
pub use tcp::TcpProbe;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{InstanceId, SpecError};

/// The longest initial delay, period or timeout a probe accepts.
const MAX_TIMING: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What a probe learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The check passed.
    Healthy,
    /// The check failed.
    Unhealthy,
    /// The check could not tell (for example, no address announced yet);
    /// counters are left as they are.
    Unknown,
}

/// The instance a probe checks.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Which instance.
    pub id: InstanceId,
    /// Its incarnation.
    pub generation: u64,
    /// The address it announced, if it has announced one yet.
    pub address: Option<SocketAddr>,
}

impl ProbeTarget {
    /// A target outside any supervisor, to run a probe by hand (a test, a
    /// command-line health check): incarnation `generation` of the instance
    /// `{supervisor}/{child}`, serving at `address` if given.
    ///
    /// ```
    /// use orch_core::ProbeTarget;
    ///
    /// let t = ProbeTarget::new("app", "web-0", 0, Some(([127, 0, 0, 1], 8080).into()));
    /// assert_eq!(t.id.as_str(), "app/web-0");
    /// ```
    pub fn new(supervisor: &str, child: &str, generation: u64, address: Option<SocketAddr>) -> Self {
        Self {
            id: InstanceId::new(supervisor, child, None),
            generation,
            address,
        }
    }
}

/// One health check. Implement it for anything; [`TcpProbe`] and
/// [`probe_fn`] cover the common cases.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    /// Checks `target` once. The supervisor enforces the timeout, so an
    /// implementation need not.
    async fn check(&self, target: &ProbeTarget) -> ProbeOutcome;
}

/// A probe from an async closure.
///
/// ```
/// use orch_core::{probe_fn, ProbeOutcome};
///
/// let always_up = probe_fn(|_target| async { ProbeOutcome::Healthy });
/// # let _ = always_up;
/// ```
pub fn probe_fn<F, Fut>(f: F) -> FnProbe<F>
where
    F: Fn(ProbeTarget) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProbeOutcome> + Send + 'static,
{
    FnProbe(f)
}

/// A probe built by [`probe_fn`].
#[derive(Clone)]
pub struct FnProbe<F>(F);

impl<F> fmt::Debug for FnProbe<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnProbe")
    }
}

#[async_trait::async_trait]
impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn(ProbeTarget) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProbeOutcome> + Send + 'static,
{
    async fn check(&self, target: &ProbeTarget) -> ProbeOutcome {
        (self.0)(target.clone()).await
    }
}

/// When and how often a probe runs, and how many results flip its verdict.
///
/// Defaults are Kubernetes': no initial delay, every 10 s, 1 s timeout,
/// 1 success, 3 failures. Liveness and startup probes must keep
/// `success_threshold` at 1 (Kubernetes rejects anything else too).
///
/// ```
/// use std::time::Duration;
/// use orch_core::ProbeTiming;
///
/// let t: ProbeTiming = serde_json::from_str(r#"{"period":"2s","failure_threshold":5}"#).unwrap();
/// assert_eq!(t.period, Duration::from_secs(2));
/// assert_eq!(t.timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeTiming {
    /// Wait this long after the instance starts before the first check.
    /// Each of the three durations is at most 365 days.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// Time between the starts of two checks.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// A check that takes longer fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that make a failing probe pass.
    pub success_threshold: u32,
    /// Consecutive failures that make a passing probe fail.
    pub failure_threshold: u32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

impl ProbeTiming {
    /// Sets the initial delay.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// Sets the period.
    pub fn period(mut self, d: Duration) -> Self {
        self.period = d;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sets the success threshold.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// Sets the failure threshold.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    pub(crate) fn validate(&self, kind: ProbeKind) -> Result<(), SpecError> {
        let name = kind.name();
        // A year is far past any sensible probe timing, and keeps every
        // instant computed from one on the clock (`Instant + Duration`
        // panics past it).
        for (field, value) in [
            ("initial_delay", self.initial_delay),
            ("period", self.period),
            ("timeout", self.timeout),
        ] {
            if value > MAX_TIMING {
                return Err(SpecError::field(
                    format!("{name}.{field}"),
                    "must be at most 365 days",
                ));
            }
        }
        if self.period.is_zero() {
            return Err(SpecError::field(
                format!("{name}.period"),
                "must be greater than zero",
            ));
        }
        if self.timeout.is_zero() {
            return Err(SpecError::field(
                format!("{name}.timeout"),
                "must be greater than zero",
            ));
        }
        if self.success_threshold == 0 {
            return Err(SpecError::field(
                format!("{name}.success_threshold"),
                "must be at least 1",
            ));
        }
        if self.failure_threshold == 0 {
            return Err(SpecError::field(
                format!("{name}.failure_threshold"),
                "must be at least 1",
            ));
        }
        if kind != ProbeKind::Readiness && self.success_threshold != 1 {
            return Err(SpecError::field(
                format!("{name}.success_threshold"),
                "must be 1 for liveness and startup probes",
            ));
        }
        Ok(())
    }
}

/// Which of the three probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Failure restarts the instance.
    Liveness,
    /// Failure takes the instance out of rotation.
    Readiness,
    /// Gates the other two until it first succeeds.
    Startup,
}

impl ProbeKind {
    /// `"liveness"`, `"readiness"` or `"startup"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Liveness => "liveness",
            Self::Readiness => "readiness",
            Self::Startup => "startup",
        }
    }
}

/// A probe and its timing.
#[derive(Clone)]
pub struct ProbeSpec {
    pub(crate) probe: Arc<dyn Probe>,
    pub(crate) timing: ProbeTiming,
}

impl fmt::Debug for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSpec")
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl ProbeSpec {
    /// `probe` with Kubernetes' default timing.
    pub fn new(probe: impl Probe) -> Self {
        Self {
            probe: Arc::new(probe),
            timing: ProbeTiming::default(),
        }
    }

    /// Replaces the timing.
    pub fn timing(mut self, timing: ProbeTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Sets the initial delay.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.timing.initial_delay = d;
        self
    }

    /// Sets the period.
    pub fn period(mut self, d: Duration) -> Self {
        self.timing.period = d;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timing.timeout = d;
        self
    }

    /// Sets the success threshold.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.timing.success_threshold = n;
        self
    }

    /// Sets the failure threshold.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.timing.failure_threshold = n;
        self
    }

    /// Runs one check of `target` as the supervisor runs it: a check that
    /// outlives the timeout is [`Unhealthy`](ProbeOutcome::Unhealthy).
    /// Thresholds and periods do not apply to a single check.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_core::{probe_fn, ProbeOutcome, ProbeSpec};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # let target = orch_core::ProbeTarget::new("app", "web", 0, None);
    /// let hangs = ProbeSpec::new(probe_fn(|_| std::future::pending()))
    ///     .timeout(Duration::from_millis(100));
    /// assert_eq!(hangs.check(&target).await, ProbeOutcome::Unhealthy);
    /// # }
    /// ```
    pub async fn check(&self, target: &ProbeTarget) -> ProbeOutcome {
        tokio::time::timeout(self.timing.timeout, self.probe.check(target))
            .await
            .unwrap_or(ProbeOutcome::Unhealthy)
    }
}
