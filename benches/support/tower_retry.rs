//! `tower::retry` policies as the benchmarks compare against them: the
//! cheapest one that can retry, one with tower's `TpsBudget`, one with
//! tower's exponential backoff, each for `u64` requests that answer `u64`.

use std::{
    future::{Ready, ready},
    sync::Arc,
    time::Duration,
};

/// `tower::retry` with a policy of at most `0` retries left to spend: the
/// cheapest policy that can retry at all.
#[derive(Clone)]
pub struct Attempts(pub usize);

impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

/// `tower::retry` as its documentation sets it up for production: a
/// Finagle-style `TpsBudget` shared by clones of the policy, deposited on
/// every success (tower's defaults: 10 s TTL, 10 retries/s, 20 %).
#[derive(Clone)]
pub struct BudgetedAttempts {
    left: usize,
    budget: Arc<tower::retry::budget::TpsBudget>,
}

impl<E> tower::retry::Policy<u64, u64, E> for BudgetedAttempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget as _;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.left > 0 && self.budget.withdraw() => {
                self.left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

/// `tower::retry` as a production policy without a budget looks: a limit
/// on attempts and tower's own exponential backoff with jitter between them
/// (the policy is cloned into every call, backoff state included).
#[derive(Clone)]
pub struct BackoffAttempts {
    left: usize,
    backoff: tower::retry::backoff::ExponentialBackoff,
}

impl<E> tower::retry::Policy<u64, u64, E> for BackoffAttempts {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        use tower::retry::backoff::Backoff as _;
        match result {
            Err(_) if self.left > 0 => {
                self.left -= 1;
                Some(self.backoff.next_backoff())
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

/// [`BackoffAttempts`] with two retries and tower's exponential backoff
/// from 100 ms to 1 s with full jitter.
pub fn backoff_attempts() -> BackoffAttempts {
    use tower::retry::backoff::{ExponentialBackoffMaker, MakeBackoff as _};
    use tower::util::rng::HasherRng;
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
        1.0,
        HasherRng::default(),
    )
    .expect("valid backoff")
    .make_backoff();
    BackoffAttempts { left: 2, backoff }
}

/// [`BudgetedAttempts`] with two retries and a fresh `TpsBudget` with
/// tower's defaults.
pub fn budgeted_attempts() -> BudgetedAttempts {
    BudgetedAttempts {
        left: 2,
        budget: Arc::new(tower::retry::budget::TpsBudget::default()),
    }
}
