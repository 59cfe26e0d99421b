//! A check's identity and the assertions it makes, each naming the check
//! in its panic message.

use std::time::Duration;

use bytes::Bytes;

use super::Timing;
use crate::idempotency::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, ResponseStatus, SavedResponse, StoreError,
};

/// A check's name, scope and key, and the assertions it makes, each
/// naming the check in its panic message.
#[derive(Clone)]
pub(super) struct Check {
    pub(super) name: &'static str,
    pub(super) scope: String,
    pub(super) key: String,
    pub(super) timing: Timing,
}

impl Check {
    pub(super) fn new(name: &'static str, timing: Timing) -> Self {
        let id = uuid::Uuid::now_v7();
        Self {
            name,
            scope: format!("conformance/{name}/{id}"),
            key: id.to_string(),
            timing,
        }
    }

    pub(super) fn fail(&self, what: &str) -> ! {
        panic!("conformance check {} failed: {what}", self.name)
    }

    pub(super) fn ok<T>(&self, result: Result<T, StoreError>, what: &str) -> T {
        result.unwrap_or_else(|err| self.fail(&format!("{what}: {err:?}")))
    }

    pub(super) fn eq<T: PartialEq + std::fmt::Debug>(&self, got: &T, want: &T, what: &str) {
        if got != want {
            self.fail(&format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    pub(super) fn ne<T: PartialEq + std::fmt::Debug>(&self, got: &T, other: &T, what: &str) {
        if got == other {
            self.fail(&format!("{what}: must differ from {other:?}"));
        }
    }

    pub(super) fn stale(&self, result: Result<(), StoreError>, what: &str) {
        if !matches!(result, Err(StoreError::StaleToken)) {
            self.fail(&format!("{what} should be StaleToken, got {result:?}"));
        }
    }

    pub(super) fn retry_hint(&self, retry_after: Duration) {
        if retry_after.is_zero() || retry_after > self.timing.lease {
            self.fail(&format!(
                "InProgress retry_after {retry_after:?} outside (0, lease]"
            ));
        }
    }

    pub(super) async fn claim(&self, store: &dyn IdempotencyStore, key: &str, fp: u8) -> Claim {
        let result = store
            .claim(&self.scope, key, fingerprint(fp), self.timing.lease)
            .await;
        self.ok(result, "claim")
    }

    pub(super) async fn acquire(&self, store: &dyn IdempotencyStore, key: &str, fp: u8) -> FencingToken {
        match self.claim(store, key, fp).await {
            Claim::Acquired { token } => token,
            other => self.fail(&format!("claim of {key} should acquire, got {other:?}")),
        }
    }

    pub(super) async fn in_progress(&self, store: &dyn IdempotencyStore, key: &str, fp: u8, what: &str) {
        match self.claim(store, key, fp).await {
            Claim::InProgress { retry_after } => self.retry_hint(retry_after),
            other => self.fail(&format!("{what}: expected InProgress, got {other:?}")),
        }
    }

    pub(super) async fn completed(
        &self,
        store: &dyn IdempotencyStore,
        key: &str,
        fp: u8,
        want: &SavedResponse,
    ) {
        match self.claim(store, key, fp).await {
            Claim::Completed(saved) => self.eq(&saved, want, "replayed response"),
            other => self.fail(&format!("expected Completed, got {other:?}")),
        }
    }

    pub(super) async fn mismatch(&self, store: &dyn IdempotencyStore, key: &str, fp: u8, when: &str) {
        match self.claim(store, key, fp).await {
            Claim::Mismatch => {}
            other => self.fail(&format!(
                "another fingerprint {when}: expected Mismatch, got {other:?}"
            )),
        }
    }
}

pub(super) fn fingerprint(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

/// The response numbered `n`: a 201 with a header and a body that name it.
pub(super) fn response(n: u8) -> SavedResponse {
    SavedResponse::new(
        ResponseStatus::Http(201),
        Bytes::from(format!("{{\"order\":{n}}}")),
    )
    .with_header("content-type", "application/json")
    .with_header("location", format!("/orders/{n}"))
}
