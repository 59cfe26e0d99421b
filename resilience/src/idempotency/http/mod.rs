//! The server side of idempotency keys over `http` types: a request with
//! an `Idempotency-Key` runs its handler at most once, and every repeat
//! gets the first response, for axum, hyper or any tower HTTP server.
//!
//! orch's clients send a key with each retried `POST`
//! ([`HttpSafety::add_idempotency_key`](crate::HttpSafety::add_idempotency_key));
//! this layer is what makes the retry safe on the server. It follows the
//! IETF draft "The Idempotency-Key HTTP Header Field" and Stripe's API:
//!
//! | request | answer | stored |
//! |---|---|---|
//! | method not protected (default: not `POST`/`PATCH`) | the handler's | nothing |
//! | no key, key optional (default) | the handler's | nothing |
//! | no key, [`key_required`](IdempotencyConfig::key_required) | `400` | nothing |
//! | bad key (not an sf-string, empty, too long or short, low entropy) | `400` | nothing |
//! | body over [`max_body_bytes`](IdempotencyConfig::max_body_bytes) | `413` | nothing |
//! | first use of the key | the handler's | response saved, or key released |
//! | repeat, first still running | `409` + `Retry-After` | nothing |
//! | repeat, first finished | the saved response + `Idempotent-Replayed: true` | nothing |
//! | same key, other method, path or body | `422` | nothing |
//! | store failing | `503` + `Retry-After`, or run unprotected ([`StoreFailure`]) | nothing |
//!
//! Every refusal is `application/problem+json` (RFC 9457) with `type`,
//! `title`, `status` and `detail`. Successes and 4xx (except 408, 425,
//! 429) are saved by default; 5xx, handler errors and panics release the
//! key so that a retry runs the handler again ([`SavedOutcomes`]).
//!
//! # How a keyed request runs
//!
//! 1. The body is read into memory (up to `max_body_bytes`) and the
//!    request fingerprinted (SHA-256 of method, path and body by default,
//!    [`IdempotencyLayer::fingerprint`] to choose).
//! 2. The key is claimed in the store under the request's scope
//!    ([`IdempotencyLayer::scope`]) with a lease.
//! 3. The handler runs in a task of its own, so that it runs to the end
//!    and its record is finished even if the client disconnects; its lease
//!    is renewed every half lease while it runs. Its response is read
//!    (up to [`max_response_bytes`](IdempotencyConfig::max_response_bytes)),
//!    saved or released, then handed to the caller.
//!
//! The handler receives the request with the same body type it was sent
//! with, rebuilt from the buffered bytes: the layer needs a body type made
//! `From<Bytes>` (axum's `Body`, `http_body_util::Full<Bytes>`, `String`).
//! A hyper server whose handlers take `Incoming` maps the request to such
//! a type below the layer's caller.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use orch_resilience::idempotency::{MemoryStore, http::{IdempotencyConfig, IdempotencyLayer}};
//!
//! # fn main() -> Result<(), orch_resilience::ConfigError> {
//! let idempotency = IdempotencyLayer::new(MemoryStore::default(), IdempotencyConfig::default())?
//!     .scope(|parts| {
//!         // The authenticated client; here an API key header, for brevity.
//!         parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
//!     });
//! let app: Router = Router::new()
//!     .route("/orders", post(|body: String| async move { format!("created order for {body}") }))
//!     .layer(idempotency);
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! - `orch_idempotency_requests_total{name, outcome}`: `executed`,
//!   `replayed`, `in_progress`, `mismatch`, `missing_key`, `bad_key`,
//!   `body_too_large`, `body_unreadable`, `store_unavailable`,
//!   `unprotected` (store failed, request ran anyway), `unkeyed`.
//! - `orch_idempotency_finished_total{name, result}`: how claimed keys
//!   ended: `saved`, `released`, `stale` (lease lost to another claim),
//!   `store_error`.
//! - `orch_idempotency_renewals_total{name, result}`: `renewed`, `stale`,
//!   `error`.

mod body;
mod config;
mod fingerprint;
mod future;
pub(crate) mod guard;
mod key;
mod layer;
mod problem;
pub(crate) mod shared;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

pub use body::IdempotentBody;
pub use config::{IdempotencyConfig, MAX_KEY_LENGTH, SavedOutcomes, StoreFailure};
pub use fingerprint::{FingerprintFn, FingerprintHasher, default_fingerprint};
pub use future::ResponseFuture;
pub use key::KeyError;
pub use layer::IdempotencyLayer;
#[cfg(feature = "tonic")]
pub(crate) use layer::shared as build_shared;
pub use shared::{IDEMPOTENT_REPLAYED, ScopeFn};

use crate::BoxError;
use shared::Shared;

/// A service that runs each keyed request at most once and replays its
/// response to every repeat. Made by [`IdempotencyLayer`]; see the
/// [module docs](self) for what each request gets.
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Idempotency<S> {
    pub(crate) fn from_parts(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

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

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Idempotency<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<IdempotentBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        guard::start(&self.shared, &mut self.inner, request, B::from)
    }
}
