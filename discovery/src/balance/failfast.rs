//! Fail-fast: how long `poll_ready` waits for a ready endpoint before it
//! gives up, so a caller with no endpoint gets an error instead of a hang.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;

use super::{Timer, error::BalanceError};

/// The fail-fast clock of one balancer: idle while endpoints are ready,
/// waiting once none is, failing every call at once after the timeout until
/// an endpoint is ready again.
pub(super) struct FailFast {
    /// [`BalancerConfig::failfast_timeout`](super::BalancerConfig::failfast_timeout).
    timeout: Duration,
    phase: Phase,
    timer: Timer,
}

/// Where `poll_ready` is in waiting for an endpoint.
enum Phase {
    /// An endpoint was ready last time (or it never waited).
    Idle,
    /// No endpoint is ready; fail at this deadline.
    Waiting(Instant),
    /// The deadline passed: fail at once until an endpoint is ready.
    Failing,
}

impl FailFast {
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            phase: Phase::Idle,
            timer: Timer::default(),
        }
    }

    /// An endpoint is ready: the next wait starts afresh.
    pub(super) fn reset(&mut self) {
        self.phase = Phase::Idle;
    }

    /// No endpoint is ready: `Pending` until the deadline, then the
    /// [`BalanceError::NoEndpoints`] of `known` endpoints, at once from then
    /// on. `balancer` names the balancer in the tracing event.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, balancer: &str, known: usize) -> Poll<BalanceError> {
        loop {
            match self.phase {
                Phase::Idle if self.timeout.is_zero() => self.phase = Phase::Failing,
                Phase::Idle => self.phase = Phase::Waiting(Instant::now() + self.timeout),
                Phase::Waiting(deadline) => {
                    if self.timer.poll_until(deadline, cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::debug!(balancer, known, waited = ?self.timeout, "no ready endpoint; failing fast");
                    self.phase = Phase::Failing;
                }
                Phase::Failing => {
                    return Poll::Ready(BalanceError::NoEndpoints {
                        waited: self.timeout,
                        known,
                    });
                }
            }
        }
    }
}
