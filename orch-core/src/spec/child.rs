//! Child specs: what to run, how many, and what to do when it ends.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackoffPolicy, RestartBackoff, SpecError, SupervisorSpec};
use crate::child::{ChildContext, ProcessSpec, TaskFactory};
use crate::probe::{ProbeKind, ProbeSet, ProbeSpec};

/// When an exited child is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always restarted, whatever the exit (the default; OTP's and
    /// Kubernetes' `Always`).
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit
    /// ([`ExitReason::is_abnormal`](crate::ExitReason::is_abnormal));
    /// a normal exit removes it (Kubernetes' `OnFailure`).
    Transient,
    /// Never restarted; once it exits it is removed, and a one-for-all or
    /// rest-for-one restart of its siblings removes it too (Kubernetes' `Never`).
    Temporary,
}

/// The plain-data part of a child spec, loadable from configuration.
///
/// ```
/// use std::time::Duration;
/// use orch_core::{ChildPolicy, RestartType};
///
/// let p: ChildPolicy = serde_json::from_str(
///     r#"{"restart":"transient","shutdown_grace":"30s","replicas":3}"#,
/// ).unwrap();
/// assert_eq!(p.restart, RestartType::Transient);
/// assert_eq!(p.shutdown_grace, Duration::from_secs(30));
/// assert_eq!(p.replicas, Some(3));
/// assert_eq!(p.drain_delay, Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChildPolicy {
    /// When to restart.
    pub restart: RestartType,
    /// How long a stopping instance may take, counted from the moment the
    /// supervisor publishes `Stopping`, before it is aborted (tasks) or
    /// killed with SIGKILL (processes). Zero kills at once (OTP's
    /// `brutal_kill`). Default 5 s, OTP's default for workers; nested
    /// supervisors wait without limit.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long an instance that is in rotation keeps running after
    /// `Stopping` is published and before it is cancelled, so that
    /// subscribers (the discovery registry, and the balancers it feeds) take
    /// it out of rotation while it still serves. Kubernetes users know this
    /// as a `preStop` sleep.
    ///
    /// Default zero: cancelled at once. Like a `preStop` hook, the delay
    /// counts inside [`shutdown_grace`](Self::shutdown_grace), which must
    /// therefore be longer; the instance has the rest of the grace to finish
    /// after its cancellation. Only instances that are ready when they are
    /// asked to stop wait: a starting or not-ready instance receives no
    /// traffic and is cancelled at once, and so is an instance that is
    /// asked to stop a second time (a shutdown during a scale-down drain).
    /// A crashed instance has already stopped and never waits. Nested
    /// supervisors take no delay; set it on their children.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Restart delays.
    pub backoff: BackoffPolicy,
    /// `Some(n)`: a replica group of `n` identical instances, resizable at
    /// run time. `None`: a single instance.
    pub replicas: Option<usize>,
}

impl Default for ChildPolicy {
    fn default() -> Self {
        Self {
            restart: RestartType::Permanent,
            shutdown_grace: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            backoff: BackoffPolicy::default(),
            replicas: None,
        }
    }
}

#[derive(Clone)]
pub(crate) enum ChildKind {
    Task(TaskFactory),
    Process(Arc<ProcessSpec>),
    Supervisor(Arc<SupervisorSpec>),
}

/// When an instance counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadyGate {
    /// Once started (and, if configured, once the startup and readiness probes pass).
    Started,
    /// Once the child has called [`ChildContext::announce`] (and the probes pass).
    Announced,
}

/// One child of a supervisor: what it runs, its policy and its probes.
///
/// ```
/// use std::time::Duration;
/// use orch_core::{ChildSpec, ProcessSpec, RestartType};
///
/// let worker = ChildSpec::task("worker", |ctx| async move {
///     ctx.cancelled().await; // serve until asked to stop
///     Ok::<_, std::io::Error>(())
/// })
/// .replicas(4)
/// .shutdown_grace(Duration::from_secs(10));
///
/// let sidecar = ChildSpec::process("sidecar", ProcessSpec::new("sleep").arg("3600"))
///     .restart(RestartType::Transient);
/// # let _ = (worker, sidecar);
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: Arc<str>,
    pub(crate) kind: ChildKind,
    pub(crate) policy: ChildPolicy,
    pub(crate) custom_backoff: Option<Arc<dyn RestartBackoff>>,
    pub(crate) probes: Arc<ProbeSet>,
    pub(crate) ready_gate: ReadyGate,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            ChildKind::Task(_) => "task",
            ChildKind::Process(_) => "process",
            ChildKind::Supervisor(_) => "supervisor",
        };
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("kind", &kind)
            .field("policy", &self.policy)
            .field("probes", &self.probes)
            .field("ready_gate", &self.ready_gate)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    fn new(id: &str, kind: ChildKind) -> Self {
        let mut policy = ChildPolicy::default();
        if matches!(kind, ChildKind::Supervisor(_)) {
            // OTP's `infinity` for supervisors: a subtree stops its own
            // children with their own grace periods.
            policy.shutdown_grace = Duration::MAX;
        }
        Self {
            id: id.into(),
            kind,
            policy,
            custom_backoff: None,
            probes: Arc::default(),
            ready_gate: ReadyGate::Started,
        }
    }

    /// A child that runs `factory(ctx)` as a tokio task. The future's
    /// `Ok(())` is a normal exit; an `Err` or a panic is a crash.
    pub fn task<F, Fut, E>(id: &str, factory: F) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self::new(id, ChildKind::Task(crate::child::task_factory(factory)))
    }

    /// A child that runs an OS process.
    pub fn process(id: &str, process: ProcessSpec) -> Self {
        Self::new(id, ChildKind::Process(Arc::new(process)))
    }

    /// A nested supervisor. If it gives up (its restart intensity is
    /// exceeded) this supervisor sees a crash of this child and applies its
    /// own strategy and intensity: escalation travels up the tree.
    pub fn supervisor(spec: SupervisorSpec) -> Self {
        let id = spec.name.clone();
        Self::new(&id, ChildKind::Supervisor(Arc::new(spec)))
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the whole plain-data policy (for example one loaded from configuration).
    pub fn policy(mut self, policy: ChildPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: RestartType) -> Self {
        self.policy.restart = restart;
        self
    }

    /// Sets the shutdown grace period.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.policy.shutdown_grace = grace;
        self
    }

    /// Sets the drain delay: how long a ready instance keeps running
    /// between `Stopping` and its cancellation (see
    /// [`ChildPolicy::drain_delay`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_core::ChildSpec;
    ///
    /// let web = ChildSpec::task("web", |ctx| async move {
    ///     ctx.cancelled().await;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .replicas(3)
    /// .drain_delay(Duration::from_secs(2))
    /// .shutdown_grace(Duration::from_secs(10));
    /// # let _ = web;
    /// ```
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.policy.drain_delay = delay;
        self
    }

    /// Sets the restart backoff.
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.policy.backoff = backoff;
        self.custom_backoff = None;
        self
    }

    /// Uses a custom source of restart delays; `backoff.reset_after` of the
    /// policy still decides when the schedule starts over.
    pub fn backoff_with(mut self, backoff: impl RestartBackoff) -> Self {
        self.custom_backoff = Some(Arc::new(backoff));
        self
    }

    /// Makes this child a replica group of `n` identical instances
    /// (`id-0` … `id-{n-1}`), resizable with
    /// [`SupervisorHandle::resize`](crate::SupervisorHandle::resize).
    pub fn replicas(mut self, n: usize) -> Self {
        self.policy.replicas = Some(n);
        self
    }

    /// Adds a liveness probe.
    pub fn liveness(mut self, probe: ProbeSpec) -> Self {
        Arc::make_mut(&mut self.probes).liveness = Some(probe);
        self
    }

    /// Adds a readiness probe.
    pub fn readiness(mut self, probe: ProbeSpec) -> Self {
        Arc::make_mut(&mut self.probes).readiness = Some(probe);
        self
    }

    /// Adds a startup probe.
    pub fn startup(mut self, probe: ProbeSpec) -> Self {
        Arc::make_mut(&mut self.probes).startup = Some(probe);
        self
    }

    /// The instance is not ready until the child calls
    /// [`ChildContext::announce`] with its address (like systemd's
    /// `Type=notify`). Only task children can announce.
    pub fn ready_on_announce(mut self) -> Self {
        self.ready_gate = ReadyGate::Announced;
        self
    }

    pub(crate) fn is_group(&self) -> bool {
        self.policy.replicas.is_some()
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        let scoped = |e: SpecError| e.within(&format!("children[{}]", self.id));
        if self.id.is_empty() {
            return Err(SpecError::field("children[].id", "must not be empty"));
        }
        if self.id.contains('/') {
            return Err(scoped(SpecError::field("id", "must not contain '/'")));
        }
        self.policy.backoff.validate().map_err(scoped)?;
        if !self.policy.drain_delay.is_zero() {
            if matches!(self.kind, ChildKind::Supervisor(_)) {
                return Err(scoped(SpecError::field(
                    "drain_delay",
                    "a nested supervisor serves nothing to drain; set it on its children",
                )));
            }
            if self.policy.drain_delay >= self.policy.shutdown_grace {
                return Err(scoped(SpecError::field(
                    "drain_delay",
                    "must be shorter than shutdown_grace (the drain counts inside the grace period)",
                )));
            }
        }
        for (kind, spec) in [
            (ProbeKind::Startup, &self.probes.startup),
            (ProbeKind::Liveness, &self.probes.liveness),
            (ProbeKind::Readiness, &self.probes.readiness),
        ] {
            if let Some(spec) = spec {
                spec.timing.validate(kind).map_err(scoped)?;
            }
        }
        match &self.kind {
            ChildKind::Task(_) => {}
            ChildKind::Process(p) => {
                p.validate().map_err(scoped)?;
                if self.ready_gate == ReadyGate::Announced {
                    return Err(scoped(SpecError::field(
                        "ready_on_announce",
                        "only task children can announce",
                    )));
                }
            }
            ChildKind::Supervisor(s) => {
                s.validate().map_err(scoped)?;
                if self.is_group() {
                    return Err(scoped(SpecError::field(
                        "replicas",
                        "a nested supervisor cannot be a replica group",
                    )));
                }
            }
        }
        Ok(())
    }
}
