//! The behaviour every [`IdempotencyStore`] must show, as a suite of async
//! checks that panic on the first violation, for the tests of a backend.
//!
//! Behind the `testing` feature: the checks panic (they are assertions),
//! pull in nothing a service needs, and are public API for anyone writing
//! a store, orch's Redis and PostgreSQL stores as much as a third party's.
//!
//! A suite is a store factory and a [`Timing`]. The factory gets the
//! retention to configure and returns a fresh store. Every check works in a
//! scope of its own (`conformance/<check>/<UUID v7>`), so checks and runs
//! never see each other's records on a shared server; a backend may still
//! give each store its own key prefix or schema.
//!
//! Time: every wait is a `tokio::time::sleep`. Under paused time
//! ([`Timing::paused`], `#[tokio::test(start_paused = true)]`) the waits
//! cost nothing, which suits stores that read `tokio::time::Instant`, like
//! [`MemoryStore`](super::MemoryStore). A store whose clock is a server's
//! runs with [`Timing::real_server`]: leases of a second, a retention of
//! three seconds; each check takes at most about four seconds.
//!
//! ```
//! use std::time::Duration;
//! use orch_resilience::idempotency::{MemoryStoreConfig, conformance::{Conformance, Timing}};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let suite = Conformance::new(
//!     |retention: Duration| async move { MemoryStoreConfig::default().retention(retention).build().unwrap() },
//!     Timing::paused(),
//! );
//! suite.run_all().await;
//! # }
//! ```
//!
//! [`idempotency_conformance_tests!`](crate::idempotency_conformance_tests)
//! turns the suite into one `#[test]` per check.

use std::{future::Future, time::Duration};

use super::IdempotencyStore;

mod check;
mod checks;

/// The durations a suite uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timing {
    /// The lease of every claim.
    pub lease: Duration,
    /// The retention the factory configures.
    pub retention: Duration,
    /// How far past a deadline a check waits before relying on it having
    /// passed, and how far before one it checks that it has not: covers
    /// the latency of an operation and the skew between clocks.
    pub slack: Duration,
    /// How long a waiting claimer sleeps between claims.
    pub poll: Duration,
}

impl Timing {
    /// For stores on tokio's clock under paused time: a 30 s lease and a
    /// 1 h retention, which cost nothing to wait for.
    pub const fn paused() -> Self {
        Self {
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
            slack: Duration::from_secs(1),
            poll: Duration::from_millis(10),
        }
    }

    /// For stores on a server's clock: a 1 s lease, a 3 s retention and
    /// 200 ms of slack, loose enough for a loaded CI machine on loopback.
    pub const fn real_server() -> Self {
        Self {
            lease: Duration::from_secs(1),
            retention: Duration::from_secs(3),
            slack: Duration::from_millis(200),
            poll: Duration::from_millis(10),
        }
    }

    /// How long the winner of a race holds its record before completing.
    fn hold(&self) -> Duration {
        self.poll * 5
    }
}

/// A conformance suite: a store factory and the [`Timing`] it runs with.
/// Each check is a method; [`run_all`](Self::run_all) runs them in turn.
pub struct Conformance<F> {
    make: F,
    timing: Timing,
}

/// Every check's name, in the order [`Conformance::run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "one_winner_among_concurrent_claims",
    "expired_lease_is_reclaimed_once_and_fences_the_old_holder",
    "late_completion_without_reclaim_is_kept",
    "mismatch_changes_nothing",
    "scopes_and_keys_are_independent",
    "records_expire_after_retention",
    "saved_errors_are_replayed",
    "renew_extends_the_lease",
    "release_lets_the_next_claim_acquire",
    "tokens_are_spent_by_complete",
    "invalid_leases_are_refused",
];

impl<F, Fut, S> Conformance<F>
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = S>,
    S: IdempotencyStore + 'static,
{
    /// A suite that builds each check's store with `make(retention)`.
    ///
    /// # Panics
    ///
    /// If the timing cannot tell deadlines apart: `slack` must be at most a
    /// quarter of `lease`, `hold` (five polls) below `lease`, and `lease`
    /// plus twice `slack` below `retention`.
    pub fn new(make: F, timing: Timing) -> Self {
        assert!(
            timing.slack * 4 <= timing.lease,
            "slack must be at most lease / 4"
        );
        assert!(timing.hold() < timing.lease, "five polls must fit in a lease");
        assert!(
            timing.lease + timing.slack * 2 < timing.retention,
            "lease must fit in retention"
        );
        Self { make, timing }
    }

    /// Runs every check in [`CHECKS`], each on a fresh store.
    pub async fn run_all(&self) {
        self.one_winner_among_concurrent_claims().await;
        self.expired_lease_is_reclaimed_once_and_fences_the_old_holder()
            .await;
        self.late_completion_without_reclaim_is_kept().await;
        self.mismatch_changes_nothing().await;
        self.scopes_and_keys_are_independent().await;
        self.records_expire_after_retention().await;
        self.saved_errors_are_replayed().await;
        self.renew_extends_the_lease().await;
        self.release_lets_the_next_claim_acquire().await;
        self.tokens_are_spent_by_complete().await;
        self.invalid_leases_are_refused().await;
    }

    async fn store(&self) -> S {
        (self.make)(self.timing.retention).await
    }
}

/// One `#[test]` per conformance check, each on the suite that `$suite()`
/// returns, or passing at once when it returns `None`: a backend whose
/// server is not configured prints why and returns `None` (where CI sets
/// the server's URL, it must not).
///
/// ```
/// use std::{future::{Ready, ready}, time::Duration};
/// use orch_resilience::idempotency::{MemoryStore, MemoryStoreConfig, conformance::{Conformance, Timing}};
///
/// fn make(retention: Duration) -> Ready<MemoryStore> {
///     ready(MemoryStoreConfig::default().retention(retention).build().expect("valid config"))
/// }
///
/// fn suite() -> Option<Conformance<fn(Duration) -> Ready<MemoryStore>>> {
///     Some(Conformance::new(make, Timing::paused()))
/// }
///
/// orch_resilience::idempotency_conformance_tests!(#[tokio::test(start_paused = true)] suite);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! idempotency_conformance_tests {
    (#[$attr:meta] $suite:path) => {
        $crate::idempotency_conformance_tests!(@checks #[$attr] $suite;
            one_winner_among_concurrent_claims,
            expired_lease_is_reclaimed_once_and_fences_the_old_holder,
            late_completion_without_reclaim_is_kept,
            mismatch_changes_nothing,
            scopes_and_keys_are_independent,
            records_expire_after_retention,
            saved_errors_are_replayed,
            renew_extends_the_lease,
            release_lets_the_next_claim_acquire,
            tokens_are_spent_by_complete,
            invalid_leases_are_refused,
        );
    };
    (@checks #[$attr:meta] $suite:path; $($check:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $check() {
                if let ::std::option::Option::Some(suite) = $suite() {
                    suite.$check().await;
                }
            }
        )*
    };
}
