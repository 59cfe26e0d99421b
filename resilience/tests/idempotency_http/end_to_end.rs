//! End to end: an axum server on 127.0.0.1 with the layer, and orch's own
//! client stack whose first attempt times out while the handler runs. The
//! retry carries the same key, the handler runs once, and the client gets
//! the first run's answer.
//!
//! Real sockets, so real time; nothing waits on the clock to order events:
//! the handler holds its answer until the retry has reached the server.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{Router, routing::post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use orch_resilience::{
    HttpClassifier, HttpSafety, ResilienceLayer, RetryConfig,
    idempotency::{MemoryStore, http::IdempotencyConfig},
    retry::BackoffConfig,
};
use tokio::sync::watch;
use tower::{Layer, ServiceExt};

use super::layer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_attempt_timeout_gets_the_first_answer_and_the_handler_runs_once() {
    // Requests reaching the server, counted outside the layer.
    let (arrived, arrivals) = watch::channel(0usize);
    let arrived = Arc::new(arrived);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler_runs = Arc::clone(&runs);
    let app = Router::new()
        .route(
            "/orders",
            post(move |body: String| {
                let mut arrivals = arrivals.clone();
                let run = handler_runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    // Answer only once the client has given up on this
                    // attempt and its retry has arrived.
                    arrivals.wait_for(|n| *n >= 2).await.unwrap();
                    (StatusCode::CREATED, format!("order {run} for {body}"))
                }
            }),
        )
        .layer(layer(MemoryStore::default(), IdempotencyConfig::default()))
        .layer(tower::util::MapRequestLayer::new(
            move |request: Request<axum::body::Body>| {
                arrived.send_modify(|n| *n += 1);
                request
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client: hyper_util::client::legacy::Client<_, UnsyncBoxBody<Bytes, Infallible>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let stack = ResilienceLayer::builder()
        // 409 says "the first attempt is still running": retry after its
        // Retry-After, as the draft suggests.
        .classifier(HttpClassifier::default().retry_on(StatusCode::CONFLICT))
        .safety(HttpSafety::default().add_idempotency_key(true))
        .overall_timeout(Duration::from_secs(20))
        .retry(
            RetryConfig::default()
                .max_attempts(5)
                .backoff(BackoffConfig::constant(Duration::from_millis(50)))
                .budget(None),
        )
        .attempt_timeout(Duration::from_millis(300))
        .buffer_bodies(64 * 1024)
        .build()
        .unwrap();
    let request = Request::post(format!("http://{address}/orders"))
        .body(Full::new(Bytes::from_static(b"two lamps")).boxed_unsync())
        .unwrap();

    let response = stack.layer(client).oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["idempotent-replayed"],
        "true",
        "the retry got the saved answer"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "order 0 for two lamps", "the first run's answer");
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the handler ran once"
    );
    server.abort();
}
