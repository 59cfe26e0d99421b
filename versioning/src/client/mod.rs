//! The client side: a `tower` layer for hyper and tonic clients that sends
//! the API version the client was written against and listens for the
//! server saying that version is going away.
//!
//! A client pinned to a version learns that the version is deprecated only
//! from response headers nobody reads: `Deprecation` (RFC 9745), `Sunset`
//! (RFC 8594) and a `Link` to the migration notes. This layer reads them on
//! every response so that a team hears about it before the sunset, not
//! from the `410 Gone` after it:
//!
//! - each request carries the version, in the `api-version` header (which
//!   is also the gRPC metadata key) or as a media type in `Accept`
//!   (`application/vnd.NAME.v2+json`);
//! - the first deprecated answer to each operation logs one `tracing`
//!   warning with the version, the deprecation and sunset dates and the
//!   link; later answers to the same operation stay quiet;
//! - every deprecated answer counts in
//!   `orch_api_deprecated_responses_total{api, version, operation}`;
//! - [`Deprecations`], a cheap `Clone` handle, holds what was seen per
//!   operation, for tests and health pages.
//!
//! The inner service's errors and response bodies pass through untouched:
//! the layer reads headers only, so a streamed body is never buffered.
//! Headers that gRPC servers send as trailers are not read.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use orch_versioning::ClientVersioningLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let versioning = ClientVersioningLayer::builder("orders", "1").build()?;
//! let deprecations = versioning.deprecations();
//! // In a real client the inner service is a hyper `Client` or a tonic
//! // `Channel`; this one answers like a server whose v1 is deprecated.
//! let client = ServiceBuilder::new().layer(versioning).service(service_fn(
//!     |request: Request<String>| async move {
//!         assert_eq!(request.headers()["api-version"], "1");
//!         Ok::<_, Infallible>(Response::builder().header("deprecation", "@1719878400").body("[]").unwrap())
//!     },
//! ));
//! client.oneshot(Request::get("/orders").body(String::new())?).await?;
//! assert_eq!(deprecations.get("GET /orders").map(|seen| seen.responses), Some(1));
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod notice;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

pub use future::ResponseFuture;
pub use layer::{ClientOperationFn, ClientVersioningBuilder, ClientVersioningLayer, SendAs};
pub use notice::{DeprecationNotice, Deprecations};

use layer::Shared;

/// The service [`ClientVersioningLayer`] makes: sends the version, reads
/// the deprecation headers of the answers.
#[derive(Clone)]
pub struct ClientVersioning<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ClientVersioning<S> {
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

    /// What this client has seen of deprecations (shared with its layer
    /// and every clone).
    pub fn deprecations(&self) -> Deprecations {
        self.shared.seen.clone()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ClientVersioning<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVersioning")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientVersioning<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        self.shared.stamp(&mut parts.headers);
        // Named now, while the request is at hand: the answer no longer
        // carries its method and path.
        let operation = self.shared.operation(&parts);
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(future, operation, Arc::clone(&self.shared))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

    use std::convert::Infallible;

    use http::header;
    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn errors_of_the_inner_service_pass_through_unchanged() {
        #[derive(Debug, PartialEq)]
        struct Refused(u16);
        let layer = ClientVersioningLayer::builder("orders", "1").build().unwrap();
        let client = tower_layer::Layer::layer(
            &layer,
            service_fn(|_: Request<()>| async { Err::<Response<()>, _>(Refused(7)) }),
        );
        let error = client.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(error, Refused(7));
        assert!(layer.deprecations().is_empty());
    }

    #[tokio::test]
    async fn a_version_the_request_already_names_is_left_alone() {
        let echo = |request: Request<()>| async move {
            let mut response = Response::new(());
            *response.headers_mut() = request.headers().clone();
            Ok::<_, Infallible>(response)
        };
        let header_layer = ClientVersioningLayer::builder("orders", "1").build().unwrap();
        let client = tower_layer::Layer::layer(&header_layer, service_fn(echo));
        let request = Request::get("/orders")
            .header("api-version", "3")
            .body(())
            .unwrap();
        let answer = client.oneshot(request).await.unwrap();
        assert_eq!(answer.headers()["api-version"], "3");

        let media_layer = ClientVersioningLayer::builder("orders", "2024-06-20")
            .send_as(SendAs::MediaType)
            .build()
            .unwrap();
        let client = tower_layer::Layer::layer(&media_layer, service_fn(echo));
        let plain = Request::get("/orders")
            .header(header::ACCEPT, "application/json")
            .body(())
            .unwrap();
        let answer = client.clone().oneshot(plain).await.unwrap();
        let accept: Vec<_> = answer.headers().get_all(header::ACCEPT).iter().collect();
        assert_eq!(
            accept,
            ["application/json", "application/vnd.orders.2024-06-20+json"]
        );
        let named = Request::get("/orders")
            .header(header::ACCEPT, "application/json; version=2025-01-01")
            .body(())
            .unwrap();
        let answer = client.oneshot(named).await.unwrap();
        assert_eq!(answer.headers().get_all(header::ACCEPT).iter().count(), 1);
    }
}
