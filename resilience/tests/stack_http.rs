//! The stack over `http` types: its default classifier reads HTTP statuses,
//! the `http` preset, streaming bodies, and a hyper client to a loopback
//! hyper server.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// this file also has helpers.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use orch_resilience::{
    BreakerState, CircuitBreakerConfig, ErrorClass, HedgeConfig, IDEMPOTENCY_KEY, ResilienceLayer,
    RetryConfig, retry::BackoffConfig,
};
use tower::{Layer, Service, ServiceExt, service_fn};

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .backoff(BackoffConfig::constant(Duration::from_millis(10)))
        .budget(None)
}

/// Answers call n (from 0) with `statuses[n]`, then 200 with the request body.
#[allow(clippy::type_complexity)]
fn scripted<B>(
    statuses: Vec<u16>,
) -> (
    impl Service<
        Request<B>,
        Response = Response<Bytes>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Bytes>, Infallible>> + Send,
    > + Clone
    + Send,
    Arc<AtomicUsize>,
)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let statuses = Arc::new(statuses);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = service_fn(move |request: Request<B>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let status = statuses.get(n).copied().unwrap_or(200);
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::builder().status(status).body(body).unwrap())
        }
    });
    (service, calls)
}

fn request(method: Method, key: Option<&'static str>) -> Request<String> {
    let mut builder = Request::builder().method(method).uri("http://orders/1");
    if let Some(key) = key {
        builder = builder.header(IDEMPOTENCY_KEY, key);
    }
    builder.body("order".to_owned()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn by_default_a_get_answered_503_is_retried_and_an_unkeyed_post_is_not() {
    // No classifier named: over `http` types the default reads statuses.
    let stack = ResilienceLayer::builder().retry(retry(3)).build().unwrap();

    let (inner, calls) = scripted::<String>(vec![503]);
    let response = stack
        .layer(inner)
        .oneshot(request(Method::GET, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (inner, calls) = scripted::<String>(vec![503]);
    let response = stack
        .layer(inner)
        .oneshot(request(Method::POST, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "sent once");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (inner, calls) = scripted::<String>(vec![503]);
    let response = stack
        .layer(inner)
        .oneshot(request(Method::POST, Some("order-17")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body(), "order", "the retry carried the body");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_http_preset_retries_only_retryable_statuses() {
    let stack = ResilienceLayer::http().retry(retry(3)).build().unwrap();
    for (status, want_calls) in [(429, 2), (502, 2), (503, 2), (504, 2), (500, 1), (404, 1)] {
        let (inner, calls) = scripted::<String>(vec![status]);
        let _ = stack
            .layer(inner)
            .oneshot(request(Method::GET, None))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), want_calls, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn by_default_the_breaker_counts_5xx_and_opens_on_them() {
    let stack = ResilienceLayer::builder()
        .circuit_breaker(
            CircuitBreakerConfig::default()
                .name("orders")
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(0.5),
        )
        .build()
        .unwrap();
    let (inner, calls) = scripted::<String>(vec![200, 404, 500, 503]);
    let service = stack.layer(inner);
    for _ in 0..4 {
        let _ = service.clone().oneshot(request(Method::GET, None)).await.unwrap();
    }
    let m = stack.breaker().unwrap().metrics();
    assert_eq!((m.calls, m.failures), (4, 2), "500 and 503 count, 404 does not");
    assert_eq!(m.state, BreakerState::Open);

    let err = service.oneshot(request(Method::GET, None)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "rejected without a call");
}

type BoxedBody = UnsyncBoxBody<Bytes, Infallible>;

fn streaming(method: Method, body: &'static str) -> Request<BoxedBody> {
    Request::builder()
        .method(method)
        .uri("http://orders/1")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn streaming_bodies_are_buffered_and_the_client_gets_its_body_type() {
    let stack = ResilienceLayer::http()
        .retry(retry(3))
        .buffer_bodies(1024)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<BoxedBody>(vec![503, 502]);
    let response = stack
        .layer(inner)
        .oneshot(streaming(Method::PUT, "v2"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body(),
        "v2",
        "the third attempt carried the whole body"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn raw_buffering_hands_replay_bodies_to_the_client() {
    let stack = ResilienceLayer::http()
        .retry(retry(2))
        .buffer_bodies_raw(1024)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let inner = service_fn(move |request: Request<orch_resilience::ReplayBody<BoxedBody>>| {
        let record = Arc::clone(&record);
        async move {
            let buffered = request.body().is_buffered();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut seen = record.lock().unwrap();
            seen.push(buffered);
            let status = if seen.len() == 1 { 503 } else { 200 };
            Ok::<_, Infallible>(Response::builder().status(status).body(body).unwrap())
        }
    });
    let response = stack
        .layer(inner)
        .oneshot(streaming(Method::GET, "q"))
        .await
        .unwrap();
    assert_eq!(response.into_body(), "q");
    assert_eq!(*seen.lock().unwrap(), [true, true]);
}

#[test]
fn hedging_over_raw_replay_bodies_is_refused_at_build() {
    // A request that is not hedged would reach the client as another body
    // type; `buffer_bodies` (rebuilt bodies) is the way to hedge streams.
    let stack = ResilienceLayer::http()
        .hedge(HedgeConfig::default())
        .buffer_bodies_raw(1024)
        .build();
    match stack {
        Ok(_) => panic!("hedging over buffer_bodies_raw was built"),
        Err(error) => assert_eq!(error.field_name(), "stack.hedge"),
    }
}

// ===== a hyper client to a loopback hyper server =====

/// Serves HTTP/1.1 on an ephemeral 127.0.0.1 port, answering call n with
/// `statuses[n]`, then 200 echoing the body.
async fn serve(statuses: &[u16]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let statuses = Arc::new(statuses.to_vec());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let statuses = Arc::clone(&statuses);
            let counter = Arc::clone(&counter);
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let status = statuses.get(n).copied().unwrap_or(200);
                async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let mut response = Response::new(Full::new(body));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    Ok::<_, hyper::Error>(response)
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (address, calls)
}

#[tokio::test]
async fn a_hyper_client_through_the_http_preset_retries_a_503_from_a_real_server() {
    let (address, calls) = serve(&[503]).await;
    let client: hyper_util::client::legacy::Client<_, BoxedBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let stack = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(10))
        .retry(retry(3))
        .buffer_bodies(64 * 1024)
        .build()
        .unwrap();
    let service = stack.layer(client);
    let put = Request::put(format!("http://{address}/items/1"))
        .body(Full::new(Bytes::from_static(b"count=2")).boxed_unsync())
        .unwrap();

    let response = tokio::time::timeout(Duration::from_secs(10), service.clone().oneshot(put))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "count=2"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (address, calls) = serve(&[503]).await;
    let post = Request::post(format!("http://{address}/items"))
        .body(Full::new(Bytes::from_static(b"new")).boxed_unsync())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), service.oneshot(post))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "an unkeyed POST is sent once"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stack_without_retry_or_hedging_takes_bodies_it_could_not_repeat() {
    // Nothing in it repeats a request, so a streaming body (not `Clone`)
    // needs no `buffer_bodies`, and reaches the client as it was sent.
    let stack = ResilienceLayer::builder()
        .overall_timeout(Duration::from_secs(1))
        .circuit_breaker(CircuitBreakerConfig::default().name("send-once"))
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let client = service_fn(|request: Request<UnsyncBoxBody<Bytes, Infallible>>| async move {
        let sent = request.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(Response::new(sent))
    });
    let request = Request::post("/orders")
        .body(Full::new(Bytes::from("one order")).boxed_unsync())
        .unwrap();
    let response = stack.layer(client).oneshot(request).await.unwrap();
    assert_eq!(response.into_body(), "one order");
    assert_eq!(stack.breaker().unwrap().metrics().calls, 1);
}
