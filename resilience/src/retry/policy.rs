//! What the services of one retry layer share, and how a call reaches it.
//!
//! A response future must be `'static` (a call may outlive its service, as
//! with `oneshot`), so it cannot borrow its layer's settings. Owning one
//! shared `Arc` costs two atomic read-modify-writes per call on one counter:
//! little on one thread, but threads calling one layer at once all write
//! that counter's cache line, which made two threads several times slower
//! per call than one. (`tower::retry` clones its policy into every future
//! instead; copying our policy into each call measured no faster than the
//! reference count, as the copy is assembled on the stack and read back
//! wider than it was written.)
//!
//! So a layer whose policy is plain numbers (no budget, no throttle, no
//! custom backoff, a zero-sized classifier and replay) interns its [`Plan`]
//! and backoff settings in a process-wide table, once per distinct plan, as
//! [`Label`] interns names: each call then carries a 4-byte [`PlanId`],
//! writes no shared memory, and looks the plan up only when it retries. Any
//! other layer gives each call a reference count ([`Reach::Shared`]) of a
//! [`Lane`]: a handle to the policy private to the calling thread's shard
//! (see [`shard`](crate::shard)), so threads do not share one counter.

use std::{
    fmt,
    mem::size_of,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use super::{
    BackoffConfig, RetryBudget, RetryThrottle,
    backoff::{ActiveBackoff, BackoffSource},
};
use crate::{label::Label, shard};

/// The numbers a call's attempts follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// The layer's name as events and metrics report it.
    pub(crate) label: Label,
    pub(crate) max_attempts: u32,
    pub(crate) attempt_timeout: Option<Duration>,
    /// How long an attempt may take when planning against the deadline:
    /// `attempt_timeout`, or the limit of an attempt timeout layer below
    /// this one (set by the composition builder), which arms no timer here.
    pub(crate) planned_attempt: Option<Duration>,
}

/// Everything the services of one layer share.
#[derive(Clone)]
pub(crate) struct Policy<C, P, R> {
    pub(crate) name: Arc<str>,
    pub(crate) plan: Plan,
    pub(crate) overall_timeout: Option<Duration>,
    pub(crate) backoff: BackoffSource,
    pub(crate) classifier: C,
    pub(crate) safety: P,
    pub(crate) replay: R,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) throttle: Option<Arc<RetryThrottle>>,
}

impl<C, P, R> Policy<C, P, R> {
    /// The interned plan calls may carry instead of a reference count (see
    /// the module docs), or `None` when calls must share the policy.
    pub(crate) fn interned(&self) -> Option<PlanId> {
        let plain =
            size_of::<C>() == 0 && size_of::<R>() == 0 && self.budget.is_none() && self.throttle.is_none();
        match &self.backoff {
            BackoffSource::Config(backoff) if plain => Some(PlanId::intern(self.plan, *backoff)),
            _ => None,
        }
    }
}

impl<C, P, R> fmt::Debug for Policy<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("max_attempts", &self.plan.max_attempts)
            .field("attempt_timeout", &self.plan.attempt_timeout)
            .field("overall_timeout", &self.overall_timeout)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

/// Every distinct plain plan interned so far; a plan's id is its index.
static PLANS: RwLock<Vec<(Plan, BackoffConfig)>> = RwLock::new(Vec::new());

/// A plain plan and its backoff settings, interned (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanId(u32);

impl PlanId {
    /// The id of `(plan, backoff)`, interning it on first use. The table
    /// grows only with distinct plans, however many layers are built.
    fn intern(plan: Plan, backoff: BackoffConfig) -> Self {
        let entry = (plan, backoff);
        if let Some(index) = PLANS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|e| *e == entry)
        {
            return Self(index as u32);
        }
        let mut plans = PLANS.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have interned it between the two locks.
        if let Some(index) = plans.iter().position(|e| *e == entry) {
            return Self(index as u32);
        }
        plans.push(entry);
        Self((plans.len() - 1) as u32)
    }

    /// The plan and backoff settings. Ids are made only by `intern`, and the
    /// table never shrinks.
    fn get(self) -> (Plan, BackoffConfig) {
        let plans = PLANS.read().unwrap_or_else(PoisonError::into_inner);
        plans[self.0 as usize]
    }
}

/// A handle to the policy for the calls of one shard of threads, on cache
/// lines of its own (see the module docs).
#[repr(align(128))]
pub(crate) struct Lane<C, P, R> {
    policy: Arc<Policy<C, P, R>>,
}

/// One [`Lane`] per shard of calling threads.
pub(crate) struct Lanes<C, P, R> {
    lanes: Box<[Arc<Lane<C, P, R>>]>,
    mask: usize,
}

impl<C, P, R> Lanes<C, P, R> {
    pub(crate) fn new(policy: &Arc<Policy<C, P, R>>) -> Self {
        let count = shard::shard_count();
        Self {
            lanes: (0..count)
                .map(|_| {
                    Arc::new(Lane {
                        policy: Arc::clone(policy),
                    })
                })
                .collect(),
            mask: count - 1,
        }
    }

    /// The calling thread's lane.
    #[inline(always)]
    fn for_thread(&self) -> Arc<Lane<C, P, R>> {
        Arc::clone(&self.lanes[shard::shard_index(self.mask)])
    }
}

/// How one call's future reaches its layer's policy (see the module docs).
pub(crate) enum Reach<C, P, R> {
    Shared(Arc<Lane<C, P, R>>),
    Interned { plan: PlanId, classifier: C, replay: R },
}

impl<C: Clone, P, R: Clone> Reach<C, P, R> {
    /// The reach of one call of a service over `policy` and its `lanes`;
    /// `interned` is the service's [`Policy::interned`], decided once.
    #[inline(always)]
    pub(crate) fn for_call(
        policy: &Policy<C, P, R>,
        lanes: &Lanes<C, P, R>,
        interned: Option<PlanId>,
    ) -> Self {
        match interned {
            Some(plan) => Self::Interned {
                plan,
                classifier: policy.classifier.clone(),
                replay: policy.replay.clone(),
            },
            None => Self::Shared(lanes.for_thread()),
        }
    }
}

impl<C, P, R> Reach<C, P, R> {
    /// The plan; a table lookup for an interned one, so for the slow path.
    pub(crate) fn plan(&self) -> Plan {
        match self {
            Self::Shared(lane) => lane.policy.plan,
            Self::Interned { plan, .. } => plan.get().0,
        }
    }

    #[inline(always)]
    pub(crate) fn classifier(&self) -> &C {
        match self {
            Self::Shared(lane) => &lane.policy.classifier,
            Self::Interned { classifier, .. } => classifier,
        }
    }

    pub(crate) fn replay(&self) -> &R {
        match self {
            Self::Shared(lane) => &lane.policy.replay,
            Self::Interned { replay, .. } => replay,
        }
    }

    #[inline(always)]
    pub(crate) fn throttle(&self) -> Option<&RetryThrottle> {
        match self {
            Self::Shared(lane) => lane.policy.throttle.as_deref(),
            Self::Interned { .. } => None,
        }
    }

    pub(crate) fn budget(&self) -> Option<&RetryBudget> {
        match self {
            Self::Shared(lane) => lane.policy.budget.as_deref(),
            Self::Interned { .. } => None,
        }
    }

    /// A fresh backoff schedule for a call that retries.
    pub(crate) fn start_backoff(&self) -> ActiveBackoff {
        match self {
            Self::Shared(lane) => lane.policy.backoff.start(),
            Self::Interned { plan, .. } => BackoffSource::Config(plan.get().1).start(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(max_attempts: u32) -> Plan {
        Plan {
            label: Label::intern("policy-test"),
            max_attempts,
            attempt_timeout: None,
            planned_attempt: Some(Duration::from_millis(5)),
        }
    }

    #[test]
    fn a_plan_is_interned_once_and_comes_back() {
        let backoff = BackoffConfig::default();
        let a = PlanId::intern(plan(3), backoff);
        let b = PlanId::intern(plan(4), backoff);
        assert_ne!(a, b);
        assert_eq!(PlanId::intern(plan(3), backoff), a);
        assert_eq!(a.get(), (plan(3), backoff));
        let other = BackoffConfig::constant(Duration::from_millis(7));
        assert_ne!(PlanId::intern(plan(3), other), a);
    }
}
