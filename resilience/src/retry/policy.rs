//! What the services of one retry layer share, and what each call owns of it.
//!
//! A response future must be `'static` (a call may outlive its service, as
//! with `oneshot`), so it owns what it needs, in two parts:
//! - the plain [`Settings`], the classifier and the replay are copied into
//!   each call, as `tower::retry` clones its policy into each future:
//!   carrying them writes no shared memory; the [`TimeLimits`] only into
//!   the timer of a call that has one (`timer.rs`);
//! - what the calls write (the budget, the throttle) and a custom backoff
//!   builder are [`LayerState`], and each call clones the calling thread's
//!   shard's `Arc` of them ([`ShardHandles`], as the breaker's permits do), so two
//!   threads calling one layer write different cache lines. A layer with
//!   none of them gives its calls no `Arc` at all: cloning one costs about
//!   10 ns a call on the project's machines, more than the rest of the layer.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    BackoffConfig, RetryBudget, RetryThrottle,
    backoff::{ActiveBackoff, CustomBackoff},
};
use crate::{
    label::Label,
    shard::{ShardHandle, ShardHandles},
};

/// What a call's decisions to retry follow, copied into every call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// The layer's name as events and metrics report it.
    pub(crate) label: Label,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: BackoffConfig,
}

/// A layer's time limits, copied into the timer of each call when there
/// is one: most layers have none, and their calls then carry nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimeLimits {
    pub(crate) attempt_timeout: Option<Duration>,
    /// How long an attempt may take when planning against the deadline:
    /// `attempt_timeout`, or the limit of an attempt timeout layer below
    /// this one (set by the composition builder), which arms no timer here.
    pub(crate) planned_attempt: Option<Duration>,
    pub(crate) overall_timeout: Option<Duration>,
}

/// What the calls of a layer share and write.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerState {
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) throttle: Option<Arc<RetryThrottle>>,
    /// Replaces `Settings::backoff` when set.
    pub(crate) backoff: Option<CustomBackoff>,
}

impl LayerState {
    fn is_empty(&self) -> bool {
        self.budget.is_none() && self.throttle.is_none() && self.backoff.is_none()
    }
}

/// Everything the services of one layer (and their clones) share.
pub(crate) struct Policy<C, P, R> {
    pub(crate) name: Arc<str>,
    pub(crate) settings: Settings,
    pub(crate) limits: TimeLimits,
    pub(crate) classifier: C,
    pub(crate) safety: P,
    pub(crate) replay: R,
    /// One handle to the shared state per shard of calling threads; `None`
    /// when nothing is shared.
    shared: Option<ShardHandles<LayerState>>,
}

impl<C, P, R> Policy<C, P, R> {
    pub(crate) fn new(
        name: Arc<str>,
        (settings, limits): (Settings, TimeLimits),
        classifier: C,
        safety: P,
        replay: R,
        shared: LayerState,
    ) -> Self {
        let shared = (!shared.is_empty()).then(|| ShardHandles::new(&Arc::new(shared)));
        Self {
            name,
            settings,
            limits,
            classifier,
            safety,
            replay,
            shared,
        }
    }

    pub(crate) fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.as_ref()?.value().budget.as_ref()
    }

    pub(crate) fn throttle(&self) -> Option<&Arc<RetryThrottle>> {
        self.shared.as_ref()?.value().throttle.as_ref()
    }

    /// What one call owns (see the module docs).
    pub(crate) fn for_call(&self) -> CallPolicy<C, R>
    where
        C: Clone,
        R: Clone,
    {
        CallPolicy {
            settings: self.settings,
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
            shared: self.shared.as_ref().map(ShardHandles::for_thread),
        }
    }
}

impl<C, P, R> fmt::Debug for Policy<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.as_ref().map(|handles| handles.value());
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .field("shared", &shared)
            .finish_non_exhaustive()
    }
}

/// The part of a layer's policy that one call owns.
pub(crate) struct CallPolicy<C, R> {
    pub(crate) settings: Settings,
    pub(crate) classifier: C,
    pub(crate) replay: R,
    shared: Option<Arc<ShardHandle<LayerState>>>,
}

impl<C, R> CallPolicy<C, R> {
    pub(crate) fn budget(&self) -> Option<&RetryBudget> {
        self.shared.as_ref()?.budget.as_deref()
    }

    pub(crate) fn throttle(&self) -> Option<&RetryThrottle> {
        self.shared.as_ref()?.throttle.as_deref()
    }

    /// A fresh backoff schedule for a call that retries.
    pub(crate) fn start_backoff(&self) -> ActiveBackoff {
        match self.shared.as_ref().and_then(|shared| shared.backoff.as_ref()) {
            Some(custom) => custom.start(),
            None => ActiveBackoff::Config(backon::BackoffBuilder::build(self.settings.backoff)),
        }
    }
}
