//! The probe loop of one instance: runs its probes on their schedules,
//! keeps the threshold counters, and reports only verdict changes.

use std::sync::Arc;

use tokio::time::{Instant, MissedTickBehavior};

use super::{ProbeKind, ProbeOutcome, ProbeSpec, ProbeTarget};

/// The probes configured for a child; every instance runs the same set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeSet {
    pub(crate) startup: Option<ProbeSpec>,
    pub(crate) liveness: Option<ProbeSpec>,
    pub(crate) readiness: Option<ProbeSpec>,
}

impl ProbeSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }
}

/// A change of verdict that the supervisor must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeTransition {
    StartupPassed,
    StartupFailed,
    LivenessFailed,
    Ready,
    NotReady,
}

/// Runs the probes of one instance until liveness or startup fails (then
/// returns) or the task is aborted (when the instance stops).
pub(crate) async fn run_probes(
    set: Arc<ProbeSet>,
    target: impl Fn() -> ProbeTarget,
    report: impl Fn(ProbeTransition),
) {
    if let Some(startup) = &set.startup {
        let passed = watch(startup, ProbeKind::Startup, false, &target, |_| {}).await;
        if passed {
            report(ProbeTransition::StartupPassed);
        } else {
            report(ProbeTransition::StartupFailed);
            return;
        }
    }
    let liveness = async {
        match &set.liveness {
            Some(spec) => {
                watch(spec, ProbeKind::Liveness, true, &target, |_| {}).await;
            }
            None => std::future::pending().await,
        }
    };
    let readiness = async {
        match &set.readiness {
            Some(spec) => {
                watch(spec, ProbeKind::Readiness, false, &target, |ready| {
                    report(if ready {
                        ProbeTransition::Ready
                    } else {
                        ProbeTransition::NotReady
                    })
                })
                .await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = liveness => report(ProbeTransition::LivenessFailed),
        () = readiness => {}
    }
}

/// Runs one probe. Readiness flips back and forth through `on_change` and
/// never returns; startup returns its verdict (true = passed) at the first
/// decision; liveness returns when it fails.
async fn watch(
    spec: &ProbeSpec,
    kind: ProbeKind,
    initially_passing: bool,
    target: &impl Fn() -> ProbeTarget,
    mut on_change: impl FnMut(bool),
) -> bool {
    let t = spec.timing;
    let mut ticker = tokio::time::interval_at(Instant::now() + t.initial_delay, t.period);
    // A slow check must not be followed by a burst of catch-up checks.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut passing = initially_passing;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        ticker.tick().await;
        let target = target();
        let outcome = tokio::time::timeout(t.timeout, spec.probe.check(&target))
            .await
            .unwrap_or(ProbeOutcome::Unhealthy);
        tracing::trace!(instance = %target.id, probe = kind.name(), ?outcome, "probe");
        match outcome {
            ProbeOutcome::Unknown => continue,
            ProbeOutcome::Healthy => {
                successes = successes.saturating_add(1);
                failures = 0;
                if !passing && successes >= t.success_threshold {
                    passing = true;
                    if kind != ProbeKind::Readiness {
                        return true;
                    }
                    on_change(true);
                }
            }
            ProbeOutcome::Unhealthy => {
                metrics::counter!("orch_probe_failures_total", "probe" => kind.name()).increment(1);
                failures = failures.saturating_add(1);
                successes = 0;
                // Startup starts out failing, so it fails on the threshold
                // alone; the others fail only when they were passing.
                if failures >= t.failure_threshold && (passing || kind == ProbeKind::Startup) {
                    tracing::debug!(instance = %target.id, probe = kind.name(), failures, "probe failed its threshold");
                    if kind != ProbeKind::Readiness {
                        return false;
                    }
                    passing = false;
                    on_change(false);
                }
            }
        }
    }
}
