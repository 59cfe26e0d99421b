//! The checks of the suite, one method each.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::time::sleep;

use super::{
    Conformance,
    check::{Check, fingerprint, response},
};
use crate::idempotency::{Claim, IdempotencyStore, ResponseStatus, SavedResponse, StoreError};

impl<F, Fut, S> Conformance<F>
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = S>,
    S: IdempotencyStore + 'static,
{
    /// 64 concurrent claims of one key: exactly one acquires, the others
    /// wait until it completes, and all 64 end with its response.
    pub async fn one_winner_among_concurrent_claims(&self) {
        let check = Check::new("one_winner_among_concurrent_claims", self.timing);
        let store = Arc::new(self.store().await);
        let winners = Arc::new(AtomicUsize::new(0));
        let tasks = (0..64).map(|_| {
            let (store, winners, check) = (Arc::clone(&store), Arc::clone(&winners), check.clone());
            tokio::spawn(async move {
                // Bounded: the winner completes within one hold.
                for _ in 0..10_000 {
                    match check.claim(&*store, &check.key, 1).await {
                        Claim::Acquired { token } => {
                            winners.fetch_add(1, Ordering::SeqCst);
                            sleep(check.timing.hold()).await;
                            check.ok(store.complete(&token, response(1)).await, "winner's complete");
                            return response(1);
                        }
                        Claim::InProgress { retry_after } => {
                            check.retry_hint(retry_after);
                            sleep(check.timing.poll).await;
                        }
                        Claim::Completed(saved) => return saved,
                        Claim::Mismatch => check.fail("same fingerprint answered Mismatch"),
                    }
                }
                check.fail("the winner never completed")
            })
        });
        for result in join_all(tasks).await {
            let saved = result.unwrap_or_else(|err| panic!("{}: a claimer panicked: {err}", check.name));
            check.eq(&saved, &response(1), "every claimer gets the winner's response");
        }
        check.eq(
            &winners.load(Ordering::SeqCst),
            &1,
            "exactly one of 64 claims acquires",
        );
        check.completed(&*store, &check.key, 1, &response(1)).await;
    }

    /// A lease that ends mid-flight: of eight claims after it, exactly one
    /// acquires, under a new generation; the old holder can neither
    /// complete, release nor renew, and the new holder's response is kept.
    pub async fn expired_lease_is_reclaimed_once_and_fences_the_old_holder(&self) {
        let check = Check::new(
            "expired_lease_is_reclaimed_once_and_fences_the_old_holder",
            self.timing,
        );
        let store = self.store().await;
        let old = check.acquire(&store, &check.key, 1).await;
        sleep(self.timing.lease + self.timing.slack).await;
        let claims = join_all((0..8).map(|_| check.claim(&store, &check.key, 1))).await;
        let mut tokens = claims.into_iter().filter_map(|claim| match claim {
            Claim::Acquired { token } => Some(token),
            Claim::InProgress { retry_after } => {
                check.retry_hint(retry_after);
                None
            }
            other => check.fail(&format!(
                "after the lease ended, expected Acquired or InProgress, got {other:?}"
            )),
        });
        let Some(new) = tokens.next() else {
            check.fail("no claim re-acquired an expired lease")
        };
        check.eq(&tokens.count(), &0, "exactly one of 8 claims re-acquires");
        check.ne(
            &new.generation(),
            &old.generation(),
            "a re-claim takes a new generation",
        );
        check.stale(store.complete(&old, response(9)).await, "old holder's complete");
        check.stale(store.release(&old).await, "old holder's release");
        check.stale(store.renew(&old, self.timing.lease).await, "old holder's renew");
        check
            .in_progress(&store, &check.key, 1, "the old holder's release freed nothing")
            .await;
        check.ok(store.complete(&new, response(2)).await, "new holder's complete");
        check.stale(
            store.complete(&old, response(9)).await,
            "old holder's complete after the new one's",
        );
        check.completed(&store, &check.key, 1, &response(2)).await;
    }

    /// A holder whose lease ran out but whose record nobody re-claimed may
    /// still complete: the request ran once, its response is replayed.
    pub async fn late_completion_without_reclaim_is_kept(&self) {
        let check = Check::new("late_completion_without_reclaim_is_kept", self.timing);
        let store = self.store().await;
        let token = check.acquire(&store, &check.key, 1).await;
        sleep(self.timing.lease + self.timing.slack).await;
        check.ok(store.complete(&token, response(3)).await, "late complete");
        check.completed(&store, &check.key, 1, &response(3)).await;
    }

    /// A claim with another fingerprint gets Mismatch, whether the record
    /// is running, completed or orphaned, and changes nothing.
    pub async fn mismatch_changes_nothing(&self) {
        let check = Check::new("mismatch_changes_nothing", self.timing);
        let store = self.store().await;
        let token = check.acquire(&store, &check.key, 1).await;
        check.mismatch(&store, &check.key, 2, "while running").await;
        check
            .in_progress(&store, &check.key, 1, "a mismatch leaves the holder be")
            .await;
        check.ok(store.complete(&token, response(1)).await, "complete");
        check.mismatch(&store, &check.key, 2, "once completed").await;
        check.completed(&store, &check.key, 1, &response(1)).await;

        let orphan = format!("{}-orphan", check.key);
        check.acquire(&store, &orphan, 1).await;
        sleep(self.timing.lease + self.timing.slack).await;
        check.mismatch(&store, &orphan, 2, "while orphaned").await;
        check.acquire(&store, &orphan, 1).await;
    }

    /// The same key in two scopes, and names that concatenate alike, are
    /// different records.
    pub async fn scopes_and_keys_are_independent(&self) {
        let check = Check::new("scopes_and_keys_are_independent", self.timing);
        let store = self.store().await;
        let lease = self.timing.lease;
        for (scope, key) in [("a", "bc"), ("ab", "c"), ("b", "bc")] {
            let scope = format!("{}{scope}", check.scope);
            match store.claim(&scope, key, fingerprint(1), lease).await {
                Ok(Claim::Acquired { .. }) => {}
                other => check.fail(&format!(
                    "claim of ({scope}, {key}) should acquire, got {other:?}"
                )),
            }
        }
    }

    /// A completed record is replayed until its retention ends, then
    /// forgotten; an orphaned record is forgotten a retention after its
    /// claim. Old tokens stay stale for the new records.
    pub async fn records_expire_after_retention(&self) {
        let check = Check::new("records_expire_after_retention", self.timing);
        let (retention, slack) = (self.timing.retention, self.timing.slack);
        let store = self.store().await;
        let orphan = format!("{}-orphan", check.key);
        let orphaned = check.acquire(&store, &orphan, 1).await;
        let token = check.acquire(&store, &check.key, 1).await;
        check.ok(store.complete(&token, response(4)).await, "complete");
        sleep(retention - slack).await;
        check.completed(&store, &check.key, 1, &response(4)).await;
        sleep(slack * 2).await;
        // Forgotten: even another fingerprint acquires it now.
        let fresh = check.acquire(&store, &check.key, 2).await;
        check.ne(
            &fresh.generation(),
            &token.generation(),
            "an expired record's generation",
        );
        check.stale(
            store.complete(&token, response(9)).await,
            "complete with a spent token",
        );
        let reclaimed = check.acquire(&store, &orphan, 2).await;
        check.stale(
            store.complete(&orphaned, response(9)).await,
            "orphan's complete after expiry",
        );
        check.ok(
            store.complete(&reclaimed, response(5)).await,
            "new holder's complete",
        );
    }

    /// Saved errors (a 4xx, a gRPC status with its message) are replayed
    /// exactly as saved: status, headers in order, body, trailers.
    pub async fn saved_errors_are_replayed(&self) {
        let check = Check::new("saved_errors_are_replayed", self.timing);
        let store = self.store().await;
        let saved = [
            SavedResponse::new(
                ResponseStatus::Http(422),
                Bytes::from_static(b"{\"title\":\"bad amount\"}"),
            )
            .with_header("content-type", "application/problem+json")
            .with_header("vary", "accept")
            .with_header("vary", "accept-language"),
            SavedResponse::new(ResponseStatus::Http(404), Bytes::new()),
            SavedResponse::new(ResponseStatus::Grpc(9), Bytes::new())
                .with_header("content-type", "application/grpc")
                .with_trailer("grpc-status", "9")
                .with_trailer("grpc-message", "account frozen")
                .with_trailer("detail-bin", Bytes::from_static(&[0, 159, 255])),
        ];
        for (n, response) in saved.iter().enumerate() {
            let key = format!("{}-{n}", check.key);
            let token = check.acquire(&store, &key, 1).await;
            check.ok(store.complete(&token, response.clone()).await, "complete");
            check.completed(&store, &key, 1, response).await;
        }
    }

    /// A renewed lease holds the record past its first deadline, then ends
    /// at the renewed one.
    pub async fn renew_extends_the_lease(&self) {
        let check = Check::new("renew_extends_the_lease", self.timing);
        let (lease, slack) = (self.timing.lease, self.timing.slack);
        let store = self.store().await;
        let token = check.acquire(&store, &check.key, 1).await;
        sleep(lease / 2).await;
        check.ok(store.renew(&token, lease).await, "renew");
        sleep(lease * 3 / 4).await;
        check
            .in_progress(
                &store,
                &check.key,
                1,
                "past the first deadline, within the renewed one",
            )
            .await;
        sleep(lease / 4 + slack).await;
        let new = check.acquire(&store, &check.key, 1).await;
        check.stale(store.renew(&token, lease).await, "renew after a re-claim");
        check.ok(store.renew(&new, lease).await, "the new holder's renew");
    }

    /// Release frees the key at once for the next claim; the released
    /// token is spent.
    pub async fn release_lets_the_next_claim_acquire(&self) {
        let check = Check::new("release_lets_the_next_claim_acquire", self.timing);
        let store = self.store().await;
        let token = check.acquire(&store, &check.key, 1).await;
        check.ok(store.release(&token).await, "release");
        let next = check.acquire(&store, &check.key, 2).await;
        check.ne(
            &next.generation(),
            &token.generation(),
            "generation after a release",
        );
        check.stale(store.release(&token).await, "second release");
        check.stale(
            store.complete(&token, response(9)).await,
            "complete after release",
        );
        check
            .in_progress(&store, &check.key, 2, "the spent token changed nothing")
            .await;
    }

    /// Complete spends a token: a second complete, a release or a renew
    /// with it is stale, and the first response stays.
    pub async fn tokens_are_spent_by_complete(&self) {
        let check = Check::new("tokens_are_spent_by_complete", self.timing);
        let store = self.store().await;
        let token = check.acquire(&store, &check.key, 1).await;
        check.ok(store.complete(&token, response(6)).await, "complete");
        check.stale(store.complete(&token, response(9)).await, "second complete");
        check.stale(store.release(&token).await, "release after complete");
        check.stale(
            store.renew(&token, self.timing.lease).await,
            "renew after complete",
        );
        check.completed(&store, &check.key, 1, &response(6)).await;
    }

    /// Leases of zero or beyond the retention are refused and store
    /// nothing: every record in progress has a deadline within reach.
    pub async fn invalid_leases_are_refused(&self) {
        let check = Check::new("invalid_leases_are_refused", self.timing);
        let store = self.store().await;
        for lease in [Duration::ZERO, self.timing.retention + Duration::from_secs(1)] {
            match store.claim(&check.scope, &check.key, fingerprint(1), lease).await {
                Err(StoreError::InvalidLease { .. }) => {}
                other => check.fail(&format!(
                    "claim with lease {lease:?} should be InvalidLease, got {other:?}"
                )),
            }
        }
        let token = check.acquire(&store, &check.key, 1).await;
        match store.renew(&token, Duration::ZERO).await {
            Err(StoreError::InvalidLease { .. }) => {}
            other => check.fail(&format!(
                "renew with a zero lease should be InvalidLease, got {other:?}"
            )),
        }
    }
}
