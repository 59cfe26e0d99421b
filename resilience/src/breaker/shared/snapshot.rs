//! The snapshot behind
//! [`CircuitBreaker::metrics`](crate::breaker::CircuitBreaker::metrics): the
//! numbers of the window that decides the current state.
//!
//! Off the hot path: it sums every shard's window, and takes the control
//! lock while half-open to read the trials.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::breaker::{
    BreakerMetrics,
    state::BreakerState,
    window::{self, Shard, Totals},
};

impl Shared {
    pub(in crate::breaker) fn metrics(&self) -> BreakerMetrics {
        let word = self.load_state();
        let window_epoch = self.hot.window_epoch.load(Ordering::Relaxed);
        let totals = if word.state == BreakerState::HalfOpen {
            let control = self.lock_control();
            if control.trials.epoch == word.epoch {
                control.trials.totals
            } else {
                Totals::default()
            }
        } else {
            let now = if self.settings().time_window {
                self.now_nanos()
            } else {
                0
            };
            window::aggregate(&self.hot.shards, window_epoch, now)
        };
        BreakerMetrics {
            state: word.state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            consecutive_failures: self.consecutive_in(window_epoch),
            rejections: self.hot.shards.iter().map(Shard::rejections).sum(),
        }
    }
}
