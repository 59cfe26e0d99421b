//! The HTTP idempotency layer: what each request gets, at most one run per
//! key under concurrency, leases, disconnects and store failures on paused
//! time over the memory store; an axum server with orch's own client
//! stack; and the core flow over Redis and PostgreSQL when their URLs are
//! set.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// this file also has helpers.
#![allow(clippy::unwrap_used)]

mod answers;
mod backends;
mod concurrency;
mod end_to_end;
mod store_errors;
#[path = "../support/mod.rs"]
mod support;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use orch_resilience::{
    IDEMPOTENCY_KEY,
    idempotency::{
        IdempotencyStore, MemoryStore,
        http::{IdempotencyConfig, IdempotencyLayer},
    },
};
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt, service_fn};

pub(crate) type Req = Request<Full<Bytes>>;

/// A key as the draft wants it: a UUID in an sf-string.
pub(crate) const KEY: &str = "\"018f6b2e-7c1a-7000-8000-0000000000aa\"";

/// A handler that counts its calls and answers call n (from 0) with
/// `statuses[n]` (then 201), after `delays[n]` (then at once), once a
/// permit of its gate is free.
#[derive(Clone)]
pub(crate) struct Handler {
    calls: Arc<AtomicUsize>,
    statuses: Arc<Vec<u16>>,
    delays: Arc<Vec<Duration>>,
    gate: Arc<Semaphore>,
}

type Reply = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Handler {
    pub(crate) fn new() -> Self {
        Self {
            calls: Arc::default(),
            statuses: Arc::default(),
            delays: Arc::default(),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        }
    }

    pub(crate) fn statuses(mut self, statuses: &[u16]) -> Self {
        self.statuses = Arc::new(statuses.to_vec());
        self
    }

    pub(crate) fn delays(mut self, delays: &[Duration]) -> Self {
        self.delays = Arc::new(delays.to_vec());
        self
    }

    /// Calls wait for a permit of the returned gate.
    pub(crate) fn gated(mut self) -> (Self, Arc<Semaphore>) {
        self.gate = Arc::new(Semaphore::new(0));
        let gate = Arc::clone(&self.gate);
        (self, gate)
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Reply>
    + Clone
    + Send
    + 'static {
        let handler = self.clone();
        service_fn(move |request: Req| -> Reply {
            let n = handler.calls.fetch_add(1, Ordering::SeqCst);
            let status = handler.statuses.get(n).copied().unwrap_or(201);
            let delay = handler.delays.get(n).copied().unwrap_or_default();
            let gate = Arc::clone(&handler.gate);
            Box::pin(async move {
                let _permit = gate.acquire().await.unwrap();
                tokio::time::sleep(delay).await;
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let text = format!("call {n}: {}", String::from_utf8_lossy(&body));
                Ok(Response::builder()
                    .status(status)
                    .header("date", "Tue, 01 Jul 2025 10:00:00 GMT")
                    .header("x-call", n)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(text)))
                    .unwrap())
            })
        })
    }
}

/// The layer over `store` with `config`.
pub(crate) fn layer(store: impl IdempotencyStore + 'static, config: IdempotencyConfig) -> IdempotencyLayer {
    IdempotencyLayer::new(store, config).unwrap()
}

/// A memory store whose records the test can count.
pub(crate) fn memory() -> MemoryStore {
    MemoryStore::default()
}

/// A request with `method`, an optional raw `Idempotency-Key` value and `body`.
pub(crate) fn request(method: Method, key: Option<&str>, body: &'static str) -> Req {
    let mut builder = Request::builder().method(method).uri("http://api/orders?x=1");
    if let Some(key) = key {
        builder = builder.header(IDEMPOTENCY_KEY, key);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

pub(crate) fn post(key: &str, body: &'static str) -> Req {
    request(Method::POST, Some(key), body)
}

/// What a client sees: status, headers, whole body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Seen {
    pub(crate) fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The problem document of a refusal, checked for RFC 9457's members.
    pub(crate) fn problem(&self) -> serde_json::Value {
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let doc: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(doc["status"], self.status.as_u16());
        assert!(doc["type"].as_str().unwrap().starts_with("urn:orch:problem:"));
        assert!(!doc["title"].as_str().unwrap().is_empty());
        assert!(!doc["detail"].as_str().unwrap().is_empty());
        doc
    }
}

/// Sends `request` through `service` and reads the whole answer.
pub(crate) async fn send<S, B>(service: &S, request: Req) -> Seen
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Seen {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
