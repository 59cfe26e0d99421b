//! The one-call stack around gRPC clients whose request bodies are
//! `tonic::body::Body` (a stream, not `Clone`): an in-process service on
//! paused time, and a real tonic `Channel` to a loopback tonic server.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// this file also has helpers.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use orch_resilience::{
    AlwaysSafe, CircuitBreakerConfig, HedgeConfig, HedgeDelay, HttpSafety, IDEMPOTENCY_KEY, ResilienceLayer,
    RetryConfig, retry::BackoffConfig,
};
use tonic::{
    Code, Status,
    body::Body,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Retries with a fixed 10 ms delay and no budget.
fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .backoff(BackoffConfig::constant(Duration::from_millis(10)))
        .budget(None)
}

/// A trailers-only gRPC answer: the status in the headers, no message.
fn trailers_only(code: Code) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", (code as i32).to_string())
        .body(Body::empty())
        .unwrap()
}

/// A gRPC answer carrying `message` (one length-prefixed frame) and an OK status.
fn answer(message: Bytes) -> Response<Body> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(frame))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(StreamBody::new(frames)))
        .unwrap()
}

/// The message of a unary gRPC body (one frame).
async fn message_of(body: Body) -> Bytes {
    let mut body = body.collect().await.unwrap().to_bytes();
    assert!(body.len() >= 5, "a gRPC frame");
    body.advance(5);
    body
}

/// Answers call n (from 0) with `codes[n]`, then with the request's message.
#[derive(Clone)]
struct Scripted {
    codes: Arc<Vec<Code>>,
    calls: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(codes: impl IntoIterator<Item = Code>) -> Self {
        Self {
            codes: Arc::new(codes.into_iter().collect()),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<Body>> for Scripted {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let code = self.codes.get(n).copied();
        Box::pin(async move {
            // Every attempt must carry the whole body.
            let message = message_of(request.into_body()).await;
            Ok(match code {
                Some(code) => trailers_only(code),
                None => answer(message),
            })
        })
    }
}

impl tonic::server::NamedService for Scripted {
    const NAME: &'static str = "test.Echo";
}

/// Sends and receives raw message bytes, so no protobuf code is needed.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A unary call of `test.Echo/Get` through `service`, as generated clients make it.
async fn echo<S>(service: S, message: &'static str) -> Result<Bytes, Status>
where
    S: tonic::client::GrpcService<Body>,
    S::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut client = tonic::client::Grpc::new(service);
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.into().to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Get");
    let response = client
        .unary(
            tonic::Request::new(Bytes::from_static(message.as_bytes())),
            path,
            RawCodec,
        )
        .await?;
    Ok(response.into_inner())
}

/// A request as tonic sends it: a streaming, non-`Clone` body.
fn grpc_request(message: &'static [u8]) -> Request<Body> {
    let mut frame = vec![0, 0, 0, 0, u8::try_from(message.len()).unwrap()];
    frame.extend_from_slice(message);
    Request::post("http://inventory/test.Echo/Get")
        .header("content-type", "application/grpc")
        .body(Body::new(Full::new(Bytes::from(frame))))
        .unwrap()
}

// ===== in process =====

#[tokio::test(start_paused = true)]
async fn the_builder_wraps_a_tonic_body_service_and_retries_unavailable() {
    let inner = Scripted::new([Code::Unavailable, Code::Unavailable]);
    let stack = ResilienceLayer::builder()
        .overall_timeout(Duration::from_secs(2))
        .retry(retry(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("echo"))
        .attempt_timeout(Duration::from_millis(500))
        .safety(AlwaysSafe)
        .classifier(orch_resilience::GrpcClassifier::default())
        .buffer_bodies(64 * 1024)
        .build()
        .unwrap();
    let service = stack.layer(inner.clone());

    let response = service.oneshot(grpc_request(b"sku-7")).await.unwrap();

    assert_eq!(
        response.headers().get("grpc-status"),
        None,
        "the third attempt answered"
    );
    assert_eq!(message_of(response.into_body()).await, "sku-7");
    assert_eq!(inner.calls(), 3);
    let m = stack.breaker().unwrap().metrics();
    assert_eq!(
        (m.calls, m.failures),
        (3, 2),
        "the breaker counted both UNAVAILABLEs"
    );
}

#[tokio::test(start_paused = true)]
async fn the_grpc_preset_retries_unavailable_but_not_invalid_argument() {
    let stack = ResilienceLayer::grpc(AlwaysSafe).retry(retry(3)).build().unwrap();

    let inner = Scripted::new([Code::Unavailable]);
    let reply = echo(stack.layer(inner.clone()), "a").await.unwrap();
    assert_eq!(reply, "a");
    assert_eq!(inner.calls(), 2);

    let inner = Scripted::new([Code::InvalidArgument]);
    let status = echo(stack.layer(inner.clone()), "b").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(inner.calls(), 1, "an answer is not retried");
}

#[tokio::test(start_paused = true)]
async fn grpc_calls_are_posts_so_http_safety_retries_only_keyed_ones() {
    // The default classifier under `HttpSafety` reads gRPC statuses too.
    let stack = ResilienceLayer::builder()
        .retry(retry(3))
        .buffer_bodies(64 * 1024)
        .build()
        .unwrap();

    let inner = Scripted::new([Code::Unavailable]);
    let response = stack
        .layer(inner.clone())
        .oneshot(grpc_request(b"x"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["grpc-status"],
        "14",
        "an unkeyed POST is sent once"
    );
    assert_eq!(inner.calls(), 1);

    let inner = Scripted::new([Code::Unavailable]);
    let mut keyed = grpc_request(b"y");
    keyed
        .headers_mut()
        .insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
    let response = stack.layer(inner.clone()).oneshot(keyed).await.unwrap();
    assert_eq!(message_of(response.into_body()).await, "y");
    assert_eq!(inner.calls(), 2);

    // With keys added by the safety rules, every call may be retried.
    let stack = ResilienceLayer::grpc(HttpSafety::default().add_idempotency_key(true))
        .retry(retry(3))
        .build()
        .unwrap();
    let inner = Scripted::new([Code::Unavailable]);
    assert_eq!(echo(stack.layer(inner.clone()), "z").await.unwrap(), "z");
    assert_eq!(inner.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_buffer_limit_is_sent_once_and_not_retried() {
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .retry(retry(3))
        .buffer_bodies(4)
        .build()
        .unwrap();
    let inner = Scripted::new([Code::Unavailable]);
    let response = stack
        .layer(inner.clone())
        .oneshot(grpc_request(b"longer than four bytes"))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(inner.calls(), 1, "the body reached the service whole, once");
}

// ===== over a loopback tonic server =====

/// Serves `service` on an ephemeral 127.0.0.1 port; returns a lazy channel to it.
async fn serve(service: Scripted) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder().add_service(service);
    tokio::spawn(async move {
        let _ = server
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    (channel, stop)
}

#[tokio::test]
async fn a_tonic_channel_through_the_grpc_preset_retries_unavailable_from_a_real_server() {
    let server = Scripted::new([Code::Unavailable, Code::Unavailable]);
    let (channel, _stop) = serve(server.clone()).await;
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .overall_timeout(Duration::from_secs(10))
        .retry(retry(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("echo-loopback"))
        .build()
        .unwrap();
    // What a generated client does with `MyServiceClient::new(stack.layer(channel))`.
    let client = stack.layer(channel);

    let reply = tokio::time::timeout(Duration::from_secs(10), echo(client.clone(), "over the wire"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, "over the wire");
    assert_eq!(server.calls(), 3);

    let server_calls = server.calls();
    let refused = Scripted::new([Code::InvalidArgument]);
    let (channel, _stop2) = serve(refused.clone()).await;
    let status = tokio::time::timeout(Duration::from_secs(10), echo(stack.layer(channel), "bad"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(refused.calls(), 1);
    assert_eq!(server.calls(), server_calls);
    let m = stack.breaker().unwrap().metrics();
    assert_eq!(
        (m.calls, m.failures),
        (4, 2),
        "UNAVAILABLE counts, INVALID_ARGUMENT does not"
    );
}

// Service-fn style inner services work too (no named type needed).
#[tokio::test(start_paused = true)]
async fn a_service_fn_over_tonic_bodies_is_wrapped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |request: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let message = message_of(request.into_body()).await;
            Ok::<_, std::io::Error>(if n == 0 {
                trailers_only(Code::Unavailable)
            } else {
                answer(message)
            })
        }
    });
    let stack = ResilienceLayer::grpc(AlwaysSafe).retry(retry(2)).build().unwrap();
    assert_eq!(echo(stack.layer(inner), "fn").await.unwrap(), "fn");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ===== hedging over tonic bodies =====

type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// A service whose call n (from 0) answers the request's message after
/// `delays[n]` (then at once), counting calls.
fn delayed(
    delays: Vec<Duration>,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = Reply> + Clone + Send,
    Arc<AtomicUsize>,
) {
    let delays = Arc::new(delays);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = service_fn(move |request: Request<Body>| -> Reply {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let delay = delays.get(n).copied().unwrap_or_default();
        Box::pin(async move {
            let message = message_of(request.into_body()).await;
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(answer(message))
        })
    });
    (service, calls)
}

fn hedge_after(delay: Duration) -> HedgeConfig {
    HedgeConfig::default()
        .delay(HedgeDelay::fixed(delay))
        .max_hedged_attempts(1)
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_with_a_tonic_body_is_hedged_and_the_hedge_carries_the_whole_body() {
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .hedge(hedge_after(Duration::from_millis(50)))
        .build()
        .unwrap();
    let (inner, calls) = delayed(vec![Duration::from_secs(3600)]);
    let start = tokio::time::Instant::now();

    let reply = echo(stack.layer(inner), "hedged").await.unwrap();

    assert_eq!(reply, "hedged");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "the hedge answered at once"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn unsafe_or_oversized_tonic_requests_are_not_hedged() {
    // An unkeyed POST under HTTP rules is sent once and waited for.
    let stack = ResilienceLayer::grpc(HttpSafety::default())
        .hedge(hedge_after(Duration::from_millis(50)))
        .build()
        .unwrap();
    let (inner, calls) = delayed(vec![Duration::from_millis(200)]);
    let start = tokio::time::Instant::now();
    assert_eq!(echo(stack.layer(inner), "once").await.unwrap(), "once");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A body over the buffer limit streams through once.
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .buffer_bodies(4)
        .hedge(hedge_after(Duration::from_millis(50)))
        .build()
        .unwrap();
    let (inner, calls) = delayed(vec![Duration::from_millis(200)]);
    assert_eq!(
        echo(stack.layer(inner), "larger than four").await.unwrap(),
        "larger than four"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_key_added_before_buffering_is_on_the_primary_and_its_hedge() {
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&keys);
    let inner = service_fn(move |request: Request<Body>| -> Reply {
        let mut seen = seen.lock().unwrap();
        let first = seen.is_empty();
        seen.push(request.headers().get(IDEMPOTENCY_KEY).cloned());
        Box::pin(async move {
            let message = message_of(request.into_body()).await;
            if first {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, Infallible>(answer(message))
        })
    });
    let stack = ResilienceLayer::grpc(HttpSafety::default().add_idempotency_key(true))
        .hedge(hedge_after(Duration::from_millis(50)))
        .build()
        .unwrap();

    assert_eq!(echo(stack.layer(inner), "keyed").await.unwrap(), "keyed");

    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 2, "primary and hedge");
    assert!(keys[0].is_some(), "a key was added");
    assert_eq!(keys[0], keys[1], "the same key on both");
}
