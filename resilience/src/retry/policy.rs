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
//! writes no shared memory, and looks the plan up only when it retries.
//! The service's [`Route`] also keeps what `call` needs of such a plan
//! (whether it retries, whether it has a timeout), so the call reads
//! neither the policy nor, without a timeout, the clock. Any other layer
//! gives each call a reference count ([`Reach::Shared`]) of a [`Lane`]: a
//! handle to the policy private to the calling thread's shard (see
//! [`shard`](crate::shard)), so threads do not share one counter.

use std::{fmt, mem::size_of, sync::Arc, time::Duration};

use super::{
    BackoffConfig, RetryBudget, RetryThrottle,
    backoff::{ActiveBackoff, BackoffSource},
};
use crate::{
    intern::Table,
    label::Label,
    shard::{Lane, Lanes},
};

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
    /// The policy with its classifier, safety and replay replaced by what
    /// `f` makes of them; the one place that lists every field.
    pub(crate) fn map<C2, P2, R2>(self, f: impl FnOnce(C, P, R) -> (C2, P2, R2)) -> Policy<C2, P2, R2> {
        let (classifier, safety, replay) = f(self.classifier, self.safety, self.replay);
        Policy {
            name: self.name,
            plan: self.plan,
            overall_timeout: self.overall_timeout,
            backoff: self.backoff,
            classifier,
            safety,
            replay,
            budget: self.budget,
            throttle: self.throttle,
        }
    }

    /// Whether calls need the clock: with an attempt or an overall timeout.
    #[inline(always)]
    pub(crate) fn timed(&self) -> bool {
        self.plan.attempt_timeout.is_some() || self.overall_timeout.is_some()
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

/// Every distinct plain plan interned so far.
static PLANS: Table<(Plan, BackoffConfig)> = Table::new();

/// A plain plan and its backoff settings, interned (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanId(u32);

impl PlanId {
    /// The id of `(plan, backoff)`, interning it on first use.
    fn intern(plan: Plan, backoff: BackoffConfig) -> Self {
        let entry = (plan, backoff);
        Self(PLANS.intern(|e| *e == entry, || entry))
    }

    /// The plan and backoff settings.
    fn get(self) -> (Plan, BackoffConfig) {
        PLANS.get(self.0)
    }
}

/// How the calls of one service reach its policy, decided once per service
/// (see the module docs).
pub(crate) enum Route<C, P, R> {
    /// A plain policy: calls carry its interned id. `timed` when it has an
    /// attempt or overall timeout, so calls need the clock; `retries` when
    /// it allows more than one attempt.
    Interned {
        plan: PlanId,
        timed: bool,
        retries: bool,
    },
    /// Calls clone their thread's lane.
    Lanes(Arc<Lanes<Policy<C, P, R>>>),
}

impl<C, P, R> Route<C, P, R> {
    pub(crate) fn new(policy: &Arc<Policy<C, P, R>>) -> Self {
        let plain = size_of::<C>() == 0
            && size_of::<R>() == 0
            && policy.budget.is_none()
            && policy.throttle.is_none();
        match &policy.backoff {
            BackoffSource::Config(backoff) if plain => Self::Interned {
                plan: PlanId::intern(policy.plan, *backoff),
                timed: policy.timed(),
                retries: policy.plan.max_attempts > 1,
            },
            _ => Self::Lanes(Arc::new(Lanes::new(policy))),
        }
    }

    /// Whether calls need the clock (see [`Policy::timed`]); for a plain
    /// policy without reading the policy.
    #[inline(always)]
    pub(crate) fn timed(&self, policy: &Policy<C, P, R>) -> bool {
        match self {
            Self::Interned { timed, .. } => *timed,
            Self::Lanes(_) => {
                lanes_path();
                policy.timed()
            }
        }
    }

    /// Whether the policy allows more than one attempt; for a plain policy
    /// without reading the policy.
    #[inline(always)]
    pub(crate) fn retries(&self, policy: &Policy<C, P, R>) -> bool {
        match self {
            Self::Interned { retries, .. } => *retries,
            Self::Lanes(_) => {
                lanes_path();
                policy.plan.max_attempts > 1
            }
        }
    }
}

impl<C, P, R> Clone for Route<C, P, R> {
    fn clone(&self) -> Self {
        match self {
            Self::Interned { plan, timed, retries } => Self::Interned {
                plan: *plan,
                timed: *timed,
                retries: *retries,
            },
            Self::Lanes(lanes) => Self::Lanes(Arc::clone(lanes)),
        }
    }
}

/// Marks the path it is called on as the unlikely one, so the compiler
/// lays out the other as the straight path: called on every use of lanes.
/// A plain policy's call is short enough that taken branches show (about
/// 5 %), while a call through lanes spends most of its time on the budget
/// and the reference count.
#[cold]
#[inline(always)]
fn lanes_path() {}

/// How one call's future reaches its layer's policy (see the module docs).
pub(crate) enum Reach<C, P, R> {
    Shared(Arc<Lane<Policy<C, P, R>>>),
    Interned { plan: PlanId, classifier: C, replay: R },
}

impl<C: Clone, P, R: Clone> Reach<C, P, R> {
    /// The reach of one call of a service over `policy` by `route`; the
    /// call is deposited in the budget, if any (a plain policy has none, so
    /// one test of the route decides both).
    #[inline(always)]
    pub(crate) fn enter(policy: &Policy<C, P, R>, route: &Route<C, P, R>) -> Self {
        match route {
            Route::Interned { plan, .. } => Self::Interned {
                plan: *plan,
                classifier: policy.classifier.clone(),
                replay: policy.replay.clone(),
            },
            Route::Lanes(lanes) => {
                lanes_path();
                if let Some(budget) = &policy.budget {
                    budget.deposit();
                }
                Self::Shared(lanes.for_thread())
            }
        }
    }
}

impl<C, P, R> Reach<C, P, R> {
    /// The plan; a table lookup for an interned one, so for the slow path.
    pub(crate) fn plan(&self) -> Plan {
        match self {
            Self::Shared(lane) => lane.plan,
            Self::Interned { plan, .. } => plan.get().0,
        }
    }

    #[inline(always)]
    pub(crate) fn classifier(&self) -> &C {
        match self {
            Self::Shared(lane) => &lane.classifier,
            Self::Interned { classifier, .. } => classifier,
        }
    }

    pub(crate) fn replay(&self) -> &R {
        match self {
            Self::Shared(lane) => &lane.replay,
            Self::Interned { replay, .. } => replay,
        }
    }

    #[inline(always)]
    pub(crate) fn throttle(&self) -> Option<&RetryThrottle> {
        match self {
            Self::Shared(lane) => {
                lanes_path();
                lane.throttle.as_deref()
            }
            Self::Interned { .. } => None,
        }
    }

    pub(crate) fn budget(&self) -> Option<&RetryBudget> {
        match self {
            Self::Shared(lane) => lane.budget.as_deref(),
            Self::Interned { .. } => None,
        }
    }

    /// A fresh backoff schedule for a call that retries.
    pub(crate) fn start_backoff(&self) -> ActiveBackoff {
        match self {
            Self::Shared(lane) => lane.backoff.start(),
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
