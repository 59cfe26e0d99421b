//! The gRPC idempotency layer around a tonic service served on 127.0.0.1
//! and called through a tonic `Channel`: one run per key, replays with
//! their metadata, refusals as gRPC statuses, and which outcomes are saved.
//!
//! The service is written as tonic's generated code writes one
//! (`tonic::server::Grpc::unary` over a codec), with a codec of raw bytes,
//! so no protoc and no generated code are needed.

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
};

use bytes::{Buf, BufMut, Bytes};
use http::{Request, Response, uri::PathAndQuery};
use orch_resilience::idempotency::{
    MemoryStore,
    grpc::GrpcIdempotencyLayer,
    http::{IdempotencyConfig, IdempotencyLayer},
};
use tokio::sync::{Notify, Semaphore};
use tonic::{
    Code, Status,
    body::Body,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    server::{NamedService, UnaryService},
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};
use tower::{Layer, Service};

const KEY: &str = "\"018f6b2e-7c1a-7000-8000-0000000000aa\"";

// ===== the service =====

/// `test.Payments/Charge`: answers call n (from 0) with `codes[n]` (then
/// `OK` and "charged n: <message>"), once a permit of its gate is free.
#[derive(Clone)]
struct Payments {
    calls: Arc<AtomicUsize>,
    codes: Arc<Vec<Code>>,
    gate: Arc<Semaphore>,
    started: Arc<Notify>,
}

impl Payments {
    fn new(codes: &[Code]) -> Self {
        Self {
            calls: Arc::default(),
            codes: Arc::new(codes.to_vec()),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            started: Arc::default(),
        }
    }

    fn gated(mut self) -> Self {
        self.gate = Arc::new(Semaphore::new(0));
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct Charge(Payments);

impl UnaryService<Bytes> for Charge {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let payments = self.0.clone();
        Box::pin(async move {
            let n = payments.calls.fetch_add(1, Ordering::SeqCst);
            payments.started.notify_one();
            let _permit = payments.gate.acquire().await.unwrap();
            match payments.codes.get(n).copied().unwrap_or(Code::Ok) {
                Code::Ok => {
                    let message = String::from_utf8_lossy(request.get_ref()).into_owned();
                    let mut response = tonic::Response::new(Bytes::from(format!("charged {n}: {message}")));
                    response
                        .metadata_mut()
                        .insert("x-call", n.to_string().parse().unwrap());
                    Ok(response)
                }
                code => Err(Status::new(code, format!("refused {n}"))),
            }
        })
    }
}

impl Service<Request<Body>> for Payments {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let payments = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(Charge(payments), request).await)
        })
    }
}

impl NamedService for Payments {
    const NAME: &'static str = "test.Payments";
}

/// Sends and receives raw message bytes.
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

// ===== server and client =====

type Stop = tokio::sync::oneshot::Sender<()>;

/// Serves `payments` behind `layer` on an ephemeral 127.0.0.1 port, the
/// layer around the one service (`add_service(layer.layer(service))`).
async fn serve(layer: &GrpcIdempotencyLayer, payments: &Payments) -> (Channel, Stop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder().add_service(layer.layer(payments.clone()));
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    (channel_to(address), stop)
}

/// The same with the layer around the whole server (`Server::builder().layer(..)`).
async fn serve_all(layer: &GrpcIdempotencyLayer, payments: &Payments) -> (Channel, Stop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder()
        .layer(layer.clone())
        .add_service(payments.clone());
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    (channel_to(address), stop)
}

fn channel_to(address: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy()
}
fn grpc_layer(store: &MemoryStore, config: IdempotencyConfig) -> GrpcIdempotencyLayer {
    GrpcIdempotencyLayer::new(store.clone(), config).unwrap()
}

/// A unary `Charge` with an optional raw `idempotency-key`.
async fn charge(
    channel: &Channel,
    key: Option<&str>,
    message: &'static str,
) -> Result<tonic::Response<Bytes>, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(Bytes::from_static(message.as_bytes()));
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
    }
    client
        .unary(
            request,
            PathAndQuery::from_static("/test.Payments/Charge"),
            RawCodec,
        )
        .await
}

fn replayed(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata.get("idempotent-replayed").is_some_and(|v| v == "true")
}

// ===== tests =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_call_runs_once_and_replays_the_message_and_metadata() {
    let store = MemoryStore::default();
    let payments = Payments::new(&[]);
    let (channel, _stop) = serve(&grpc_layer(&store, IdempotencyConfig::default()), &payments).await;

    let first = charge(&channel, Some(KEY), "7 EUR").await.unwrap();
    assert!(!replayed(first.metadata()));
    let again = charge(&channel, Some(KEY), "7 EUR").await.unwrap();

    assert_eq!(payments.calls(), 1);
    assert!(replayed(again.metadata()), "the replay is marked in the metadata");
    assert_eq!(again.metadata().get("x-call").unwrap(), "0");
    assert_eq!(again.into_inner(), "charged 0: 7 EUR");
    assert_eq!(store.len(), 1);

    // A call without a key runs each time.
    charge(&channel, None, "1 EUR").await.unwrap();
    charge(&channel, None, "1 EUR").await.unwrap();
    assert_eq!(payments.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_statuses_with_clear_messages_and_store_nothing() {
    let store = MemoryStore::default();
    let payments = Payments::new(&[]);
    let config = IdempotencyConfig::default().key_required(true);
    let (channel, _stop) = serve_all(&grpc_layer(&store, config), &payments).await;

    let missing = charge(&channel, None, "x").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().contains("Idempotency-Key is missing"),
        "{}",
        missing.message()
    );
    for bad in [
        "\"1\"",
        "018f6b2e-7c1a-7000-8000-0000000000aa",
        "\"aaaaaaaaaaaa\"",
    ] {
        let status = charge(&channel, Some(bad), "x").await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "key {bad}");
        assert!(
            status.message().contains("Idempotency-Key is invalid"),
            "{}",
            status.message()
        );
    }
    assert_eq!(payments.calls(), 0);
    assert!(store.is_empty());

    charge(&channel, Some(KEY), "x").await.unwrap();
    let mismatch = charge(&channel, Some(KEY), "y").await.unwrap_err();
    assert_eq!(mismatch.code(), Code::FailedPrecondition);
    assert!(
        mismatch.message().contains("another request"),
        "{}",
        mismatch.message()
    );
    assert_eq!(payments.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_still_running_is_aborted_with_a_retry_hint() {
    let store = MemoryStore::default();
    let payments = Payments::new(&[]).gated();
    let (channel, _stop) = serve(&grpc_layer(&store, IdempotencyConfig::default()), &payments).await;

    let first = tokio::spawn({
        let channel = channel.clone();
        async move { charge(&channel, Some(KEY), "x").await }
    });
    payments.started.notified().await;
    let busy = charge(&channel, Some(KEY), "x").await.unwrap_err();
    assert_eq!(busy.code(), Code::Aborted);
    assert!(
        busy.message().contains("still being processed"),
        "{}",
        busy.message()
    );
    assert_eq!(busy.metadata().get("grpc-retry-pushback-ms").unwrap(), "1000");
    assert_eq!(busy.metadata().get("retry-after").unwrap(), "1");

    payments.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().into_inner(), "charged 0: x");
    assert!(replayed(
        charge(&channel, Some(KEY), "x").await.unwrap().metadata()
    ));
    assert_eq!(payments.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_replayed_and_server_errors_release_the_key() {
    let store = MemoryStore::default();
    let payments = Payments::new(&[Code::InvalidArgument, Code::Unavailable]);
    let (channel, _stop) = serve(&grpc_layer(&store, IdempotencyConfig::default()), &payments).await;

    let refused = charge(&channel, Some(KEY), "x").await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::InvalidArgument, "refused 0")
    );
    let replay = charge(&channel, Some(KEY), "x").await.unwrap_err();
    assert_eq!(
        (replay.code(), replay.message()),
        (Code::InvalidArgument, "refused 0"),
        "saved"
    );
    assert_eq!(payments.calls(), 1);

    let other = "\"018f6b2e-7c1a-7000-8000-0000000000bb\"";
    assert_eq!(
        charge(&channel, Some(other), "x").await.unwrap_err().code(),
        Code::Unavailable
    );
    let retry = charge(&channel, Some(other), "x").await.unwrap();
    assert_eq!(retry.into_inner(), "charged 2: x", "UNAVAILABLE released the key");
    assert_eq!(payments.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listed_methods_are_protected_and_a_message_over_the_limit_is_refused() {
    let store = MemoryStore::default();
    let payments = Payments::new(&[]);
    let elsewhere = IdempotencyConfig::default().grpc_methods(vec!["/test.Payments/Refund".into()]);
    let (channel, _stop) = serve(&grpc_layer(&store, elsewhere), &payments).await;
    charge(&channel, Some(KEY), "x").await.unwrap();
    charge(&channel, Some(KEY), "x").await.unwrap();
    assert_eq!(payments.calls(), 2, "Charge is not listed");
    assert!(store.is_empty());

    let small = IdempotencyConfig::default().max_body_bytes(8);
    let (channel, _stop) = serve(&grpc_layer(&store, small), &payments).await;
    let status = charge(&channel, Some(KEY), "a long message").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(payments.calls(), 2);
    assert!(store.is_empty());
}

/// The HTTP layer's builder and the gRPC one share a store: a key is
/// one record whichever protocol claimed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_shared_with_the_http_layer_keeps_protocols_apart() {
    let store: Arc<dyn orch_resilience::idempotency::IdempotencyStore> = Arc::new(MemoryStore::default());
    let http = IdempotencyLayer::with_shared_store(Arc::clone(&store), IdempotencyConfig::default()).unwrap();
    let grpc = GrpcIdempotencyLayer::with_shared_store(store, IdempotencyConfig::default()).unwrap();
    let payments = Payments::new(&[]);
    let (channel, _stop) = serve(&grpc, &payments).await;
    charge(&channel, Some(KEY), "x").await.unwrap();

    // The same key over HTTP is another request (other path and body).
    let service = http.layer(tower::service_fn(
        |_: Request<http_body_util::Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::new())))
        },
    ));
    let request = Request::post("/test.Payments/Charge")
        .header("idempotency-key", KEY)
        .body(http_body_util::Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let response = tower::ServiceExt::oneshot(service, request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
}
