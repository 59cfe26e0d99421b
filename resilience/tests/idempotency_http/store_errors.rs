//! A failing store never loses a request silently: 503 with `Retry-After`,
//! or, by configuration, the request runs unprotected.

use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use orch_resilience::idempotency::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, SavedResponse, StoreError,
    http::{IdempotencyConfig, StoreFailure},
};
use tower::Layer;

use super::{Handler, KEY, layer, post, send, support::Metrics};

/// A store whose server is down.
struct Down;

#[async_trait]
impl IdempotencyStore for Down {
    async fn claim(&self, _: &str, _: &str, _: Fingerprint, _: Duration) -> Result<Claim, StoreError> {
        Err(StoreError::unavailable("connection refused").with_retry_after(Duration::from_secs(3)))
    }

    async fn complete(&self, _: &FencingToken, _: SavedResponse) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }

    async fn release(&self, _: &FencingToken) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }

    async fn renew(&self, _: &FencingToken, _: Duration) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
}

#[tokio::test]
async fn a_store_error_is_503_with_the_stores_retry_after_and_nothing_runs() {
    let handler = Handler::new();
    let service = layer(Down, IdempotencyConfig::default()).layer(handler.service());
    let seen = send(&service, post(KEY, "x")).await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.headers["retry-after"], "3");
    assert_eq!(seen.problem()["type"], "urn:orch:problem:idempotency-unavailable");
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn pass_through_runs_the_request_unprotected_and_counts_it() {
    let metrics = Metrics::default();
    let _recording = metrics.install();
    let handler = Handler::new();
    let config = IdempotencyConfig::default()
        .name("orders".into())
        .on_store_error(StoreFailure::PassThrough);
    let service = layer(Down, config).layer(handler.service());
    for _ in 0..2 {
        let seen = send(&service, post(KEY, "x")).await;
        assert_eq!((seen.status, seen.replayed()), (StatusCode::CREATED, false));
    }
    assert_eq!(handler.calls(), 2, "unprotected: each request ran");
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.counter(
            "orch_idempotency_requests_total",
            &[("name", "orders"), ("outcome", "unprotected")]
        ),
        2
    );
}
