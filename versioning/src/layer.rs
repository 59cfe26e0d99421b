//! The server side as a `tower` layer over `http` types, for axum and
//! hyper (and tonic, whose requests are `http` requests too): negotiate,
//! refuse what cannot be served, hand the handler the version, and tell
//! the client which version answered and whether it is going away.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Negotiated, Negotiation,
    echo::{Echo, Echoes},
    problem::rejection_response,
};

/// Versions every request through a [`Negotiation`].
///
/// Each request's version goes into its extensions as [`Negotiated`];
/// each response carries the version served in the version header
/// (`Api-Version: 2`) and, for a deprecated version, `Deprecation`,
/// `Sunset` and `Link`. A request whose version cannot be served gets
/// `400`/`406`/`410` as `application/problem+json` (a gRPC status for
/// gRPC requests) and never reaches the inner service.
///
/// With path prefixes (`/v2/orders`), wrap the whole axum `Router` in the
/// layer rather than using `Router::layer`: axum routes before the layers
/// it is given, so only a layer outside the router can hand it the
/// stripped path. `Router::new().fallback_service(layer.layer(router))`
/// is such a wrapping that `axum::serve` takes as it is.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use orch_versioning::{Lifecycle, Negotiated, Negotiation, VersionSet, VersioningLayer};
///
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::Stable)
///     .version("2", Lifecycle::Stable)
///     .build()
///     .unwrap();
/// let versioning = VersioningLayer::new(Negotiation::new(set).build().unwrap());
/// let app: Router = Router::new()
///     .route("/orders", get(|Extension(v): Extension<Negotiated>| async move { format!("orders v{}", v.version) }))
///     .layer(versioning);
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct VersioningLayer {
    shared: Arc<Shared>,
}

/// What every service of one layer reads.
#[derive(Debug)]
struct Shared {
    negotiation: Negotiation,
    echoes: Echoes,
}

impl VersioningLayer {
    /// A layer negotiating with `negotiation`.
    pub fn new(negotiation: Negotiation) -> Self {
        let echoes = Echoes::new(&negotiation);
        Self {
            shared: Arc::new(Shared { negotiation, echoes }),
        }
    }
}

impl<S> Layer<S> for VersioningLayer {
    type Service = Versioning<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Versioning {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`VersioningLayer`] makes.
#[derive(Debug, Clone)]
pub struct Versioning<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Versioning<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let Shared { negotiation, echoes } = &*self.shared;
        match negotiation.negotiate(&mut parts) {
            Ok(negotiated) => {
                let echo = echoes.of(&negotiated);
                metrics::counter!(
                    "orch_api_requests_total",
                    "api" => echoes.api.clone(),
                    "version" => echo.label.clone(),
                    "lifecycle" => negotiated.lifecycle.label()
                )
                .increment(1);
                parts.extensions.insert::<Negotiated>(negotiated);
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), echo)
            }
            Err(rejection) => {
                metrics::counter!(
                    "orch_api_version_rejections_total",
                    "api" => echoes.api.clone(),
                    "reason" => rejection.label()
                )
                .increment(1);
                tracing::debug!(?rejection, "api version refused");
                let grpc = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/grpc"));
                let response =
                    rejection_response(negotiation.set(), negotiation.header().as_str(), &rejection, grpc);
                ResponseFuture::refused(response.map(Full::new))
            }
        }
    }
}

pin_project! {
    /// The response future of [`Versioning`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Projected]
    enum State<F> {
        // The inner service answers; the echo's headers are added.
        Called { #[pin] future: F, echo: Option<Arc<Echo>> },
        // Refused before the inner service.
        Refused { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    fn called(future: F, echo: Arc<Echo>) -> Self {
        Self {
            state: State::Called {
                future,
                echo: Some(echo),
            },
        }
    }

    fn refused(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projected::Called { future, echo } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some(echo) = echo.take() {
                    for (name, value) in echo.headers.iter() {
                        response.headers_mut().append(name, value.clone());
                    }
                }
                Poll::Ready(Ok(response.map(Either::Left)))
            }
            Projected::Refused { response } => {
                let response = response
                    .take()
                    .expect("a ResponseFuture polled after it completed");
                Poll::Ready(Ok(response.map(Either::Right)))
            }
        }
    }
}
