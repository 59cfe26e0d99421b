//! Idempotency keys for tonic services (feature `tonic`): the guarantees
//! of the [HTTP layer](super::http) for gRPC calls.
//!
//! A gRPC call is an HTTP/2 `POST` whose response status travels in
//! trailers, so the gRPC layer is the HTTP layer's flow with three
//! differences:
//!
//! - **Which calls.** Every method carrying a key, or only the full method
//!   paths in [`grpc_methods`](super::http::IdempotencyConfig::grpc_methods).
//!   The key is the `idempotency-key` metadata entry, read as the HTTP
//!   field is (an sf-string by default, with the same limits).
//! - **What is saved.** The whole HTTP response of the call: initial
//!   metadata, the message frames as sent, and the trailers with
//!   `grpc-status` and `grpc-message` (or, for a trailers-only answer, the
//!   status in the headers). The outcome is classed by its gRPC code: `OK`
//!   is a success, codes that blame the request (`INVALID_ARGUMENT`,
//!   `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`,
//!   `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `UNIMPLEMENTED`,
//!   `UNAUTHENTICATED`) are client errors, every other code a server
//!   error, as in [`SavedOutcomes`](super::http::SavedOutcomes).
//! - **Refusals are statuses**, trailers-only, with a message saying what
//!   to do: a missing or bad key is `INVALID_ARGUMENT`; a key still
//!   running is `ABORTED` with `grpc-retry-pushback-ms` (gRPC's retry
//!   pushback, gRFC A6) and `retry-after` metadata; a key reused for
//!   another request is `FAILED_PRECONDITION`; a message over
//!   `max_body_bytes` is `RESOURCE_EXHAUSTED`; a failing store is
//!   `UNAVAILABLE` with the same retry hints.
//!
//! A replay carries `idempotent-replayed: true` in its initial metadata.
//!
//! ```
//! use orch_resilience::idempotency::{MemoryStore, grpc::GrpcIdempotencyLayer, http::IdempotencyConfig};
//!
//! let layer = GrpcIdempotencyLayer::new(
//!     MemoryStore::default(),
//!     IdempotencyConfig::default().grpc_methods(vec!["/payments.v1.Payments/Charge".into()]),
//! )
//! .unwrap();
//! // `Server::builder().add_service(tower::Layer::layer(&layer, PaymentsServer::new(svc)))`,
//! // or `Server::builder().layer(layer)` for every service of the server.
//! # let _ = layer;
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tonic::{body::Body, server::NamedService};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    Fingerprint, IdempotencyStore,
    http::{
        IdempotencyConfig, IdempotencyLayer, ResponseFuture, build_shared, guard,
        shared::{Protocol, Shared},
    },
};
use crate::{BoxError, ConfigError};

/// Applies [`GrpcIdempotency`] to a tonic service or a whole tonic server
/// (`Server::builder().layer(..)`).
///
/// Built like [`IdempotencyLayer`], from a store and an
/// [`IdempotencyConfig`] (its `methods` field is ignored: every gRPC call
/// is a `POST`), with the same scope and fingerprint functions. The
/// default fingerprint covers the method path and the request message
/// bytes.
#[derive(Clone)]
pub struct GrpcIdempotencyLayer {
    // The HTTP layer's builder, speaking gRPC.
    layer: IdempotencyLayer,
}

impl GrpcIdempotencyLayer {
    /// A layer over `store` with `config`, validated first.
    pub fn new<St>(store: St, config: IdempotencyConfig) -> Result<Self, ConfigError>
    where
        St: IdempotencyStore + 'static,
    {
        Self::with_shared_store(Arc::new(store), config)
    }

    /// A layer over a store shared as a trait object.
    pub fn with_shared_store(
        store: Arc<dyn IdempotencyStore>,
        config: IdempotencyConfig,
    ) -> Result<Self, ConfigError> {
        let shared = build_shared(store, config, Protocol::Grpc)?;
        Ok(Self {
            layer: IdempotencyLayer::from_shared(Arc::new(shared)),
        })
    }

    /// Sets the scope function (see [`IdempotencyLayer::scope`]); gRPC
    /// metadata is in `parts.headers`.
    pub fn scope<F>(self, scope: F) -> Self
    where
        F: Fn(&Parts) -> String + Send + Sync + 'static,
    {
        Self {
            layer: self.layer.scope(scope),
        }
    }

    /// Sets the fingerprint function (see
    /// [`IdempotencyLayer::fingerprint`]); the body is the call's message
    /// frames as sent.
    pub fn fingerprint<F>(self, fingerprint: F) -> Self
    where
        F: Fn(&Parts, &Bytes) -> Fingerprint + Send + Sync + 'static,
    {
        Self {
            layer: self.layer.fingerprint(fingerprint),
        }
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> &IdempotencyConfig {
        self.layer.config()
    }
}

impl fmt::Debug for GrpcIdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcIdempotencyLayer")
            .field("config", self.config())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GrpcIdempotencyLayer {
    type Service = GrpcIdempotency<S>;

    fn layer(&self, inner: S) -> GrpcIdempotency<S> {
        GrpcIdempotency {
            inner,
            shared: self.layer.clone().into_shared(),
        }
    }
}

/// A tonic service whose keyed calls run at most once, every repeat
/// getting the first call's response. Made by [`GrpcIdempotencyLayer`];
/// it keeps the inner service's name, so `add_service` takes it.
#[derive(Clone)]
pub struct GrpcIdempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> GrpcIdempotency<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for GrpcIdempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcIdempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S: NamedService> NamedService for GrpcIdempotency<S> {
    const NAME: &'static str = S::NAME;
}

/// The request body a handler gets: the buffered message frames.
fn rebuild(bytes: Bytes) -> Body {
    Body::new(Full::new(bytes))
}

impl<S, ResBody> Service<Request<Body>> for GrpcIdempotency<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GrpcResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        GrpcResponseFuture {
            future: guard::start(&self.shared, &mut self.inner, request, rebuild),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcIdempotency`]: the HTTP layer's, with
    /// the body boxed as tonic's [`Body`].
    pub struct GrpcResponseFuture<F, ResBody, E> {
        #[pin]
        future: ResponseFuture<F, ResBody, E>,
    }
}

impl<F, ResBody, E> Future for GrpcResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.project().future.poll(cx));
        Poll::Ready(result.map(|response| response.map(Body::new)))
    }
}

impl<F, ResBody, E> fmt::Debug for GrpcResponseFuture<F, ResBody, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcResponseFuture").finish_non_exhaustive()
    }
}
