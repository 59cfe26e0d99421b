//! The response future of [`Chained`](super::Chained): a plain state
//! machine that buffers and upgrades the request body, calls the inner
//! service, then buffers and downgrades the response body. A request that
//! needs none of it stays in the one state that only polls the inner
//! future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header, request, response};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_service::Service;

use super::{
    ChangeChain,
    layer::{is_json, problem, too_large},
};
use crate::ApiVersion;

/// What the future needs to convert bodies of one request.
pub(crate) struct Walk {
    pub(crate) chain: Arc<ChangeChain>,
    pub(crate) version: ApiVersion,
    pub(crate) operation: String,
    /// Whether some change of this operation downgrades responses.
    pub(crate) downgrade: bool,
}

pin_project! {
    /// The response future of [`Chained`](crate::Chained).
    pub struct ChainFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>>,
    {
        #[pin]
        state: State<S, S::Future, ReqBody, ResBody>,
        walk: Option<Walk>,
    }
}

pin_project! {
    #[project = Projected]
    enum State<S, F, ReqBody, ResBody> {
        // Buffering the request body; `head` is taken when it is complete.
        // The heads are boxed: the slow path pays one allocation for them,
        // and the future every request of the latest version moves around
        // stays small.
        Reading { #[pin] body: ReqBody, buffer: BytesMut, limit: usize, head: Option<Box<(request::Parts, S)>> },
        // The inner service answers.
        Calling { #[pin] future: F },
        // Buffering the response body for the downgrade.
        Writing { #[pin] body: ResBody, buffer: BytesMut, head: Option<Box<response::Parts>> },
        // Answered here: a refusal, or a downgraded response.
        Answered { response: Option<Response<Full<Bytes>>> },
    }
}

impl<S, ReqBody, ResBody> ChainFuture<S, ReqBody, ResBody>
where
    S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>>,
{
    pub(crate) fn passing(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
            walk: None,
        }
    }

    pub(crate) fn calling(future: S::Future, walk: Walk) -> Self {
        Self {
            state: State::Calling { future },
            walk: Some(walk),
        }
    }

    pub(crate) fn reading(body: ReqBody, parts: request::Parts, inner: S, walk: Walk, limit: usize) -> Self {
        Self {
            state: State::Reading {
                body,
                buffer: BytesMut::new(),
                limit,
                head: Some(Box::new((parts, inner))),
            },
            walk: Some(walk),
        }
    }

    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
            walk: None,
        }
    }
}

impl<S, ReqBody, ResBody> Future for ChainFuture<S, ReqBody, ResBody>
where
    S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                Projected::Reading {
                    body,
                    buffer,
                    limit,
                    head,
                } => {
                    let walk = this.walk.as_ref().expect("a reading future has a walk");
                    match ready!(poll_buffer(body, buffer, Some(*limit), cx)) {
                        Err(BufferError::TooLarge) => answered(too_large(*limit)),
                        Err(BufferError::Body) => answered(problem(
                            StatusCode::BAD_REQUEST,
                            "request-body-unreadable",
                            "Request body unreadable",
                            "the request body ended in an error before it was complete".to_owned(),
                        )),
                        Ok(()) => {
                            let (mut parts, mut inner) = *head.take().expect("the head is taken once");
                            match upgrade(walk, buffer, &mut parts.headers) {
                                Ok(bytes) => {
                                    let request = Request::from_parts(parts, Either::Right(Full::new(bytes)));
                                    State::Calling {
                                        future: inner.call(request),
                                    }
                                }
                                Err(refusal) => answered(*refusal),
                            }
                        }
                    }
                }
                Projected::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    let downgrade = this.walk.as_ref().is_some_and(|w| w.downgrade)
                        && response.status().is_success()
                        && is_json(response.headers());
                    if !downgrade {
                        return Poll::Ready(Ok(response.map(Either::Left)));
                    }
                    let (parts, body) = response.into_parts();
                    State::Writing {
                        body,
                        buffer: BytesMut::new(),
                        head: Some(Box::new(parts)),
                    }
                }
                Projected::Writing { body, buffer, head } => {
                    let walk = this.walk.as_ref().expect("a writing future has a walk");
                    let read = ready!(poll_buffer(body, buffer, None, cx));
                    let mut parts = *head.take().expect("the head is taken once");
                    let downgraded = match read {
                        Ok(()) => downgrade(walk, buffer, &mut parts.headers),
                        Err(_) => Err(failed(walk, "the response body ended in an error")),
                    };
                    answered(match downgraded {
                        Ok(body) => Response::from_parts(parts, Full::new(body)),
                        Err(refusal) => *refusal,
                    })
                }
                Projected::Answered { response } => {
                    let response = response.take().expect("a ChainFuture polled after it completed");
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            };
            this.state.set(next);
        }
    }
}

fn answered<S, F, B, R>(response: Response<Full<Bytes>>) -> State<S, F, B, R> {
    State::Answered {
        response: Some(response),
    }
}

enum BufferError {
    TooLarge,
    Body,
}

/// Polls `body` to its end into `buffer`; data frames only (trailers of a
/// JSON body carry nothing a conversion needs).
fn poll_buffer<B: Body<Data = Bytes>>(
    mut body: Pin<&mut B>,
    buffer: &mut BytesMut,
    limit: Option<usize>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), BufferError>> {
    loop {
        match ready!(body.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(Ok(())),
            Some(Err(_)) => return Poll::Ready(Err(BufferError::Body)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if limit.is_some_and(|limit| buffer.len() + data.len() > limit) {
                        return Poll::Ready(Err(BufferError::TooLarge));
                    }
                    buffer.extend_from_slice(&data);
                }
            }
        }
    }
}

/// A response sent instead of the inner service's or its conversion
/// (boxed: errors are the rare path, and the `Result`s stay small).
type Refusal = Box<Response<Full<Bytes>>>;

/// The upgraded request body, or the refusal to send.
fn upgrade(walk: &Walk, buffer: &mut BytesMut, headers: &mut HeaderMap) -> Result<Bytes, Refusal> {
    if buffer.is_empty() {
        return Ok(Bytes::new());
    }
    let refuse = |kind, title, detail: String| {
        metrics::counter!(
            "orch_api_chain_failures_total",
            "api" => walk.chain.set().name().to_owned(),
            "direction" => "upgrade"
        )
        .increment(1);
        tracing::debug!(version = %walk.version, operation = %walk.operation, %detail, "request body refused");
        Box::new(problem(StatusCode::BAD_REQUEST, kind, title, detail))
    };
    let mut value: Value = serde_json::from_slice(buffer).map_err(|e| {
        refuse(
            "request-body-not-json",
            "Request body is not JSON",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    walk.chain
        .upgrade_between(walk.version, walk.chain.latest(), &walk.operation, &mut value)
        .map_err(|e| {
            refuse(
                "request-not-upgradable",
                "Request cannot be upgraded",
                format!("a request body of version {} cannot be served: {e}", walk.version),
            )
        })?;
    write(&value, headers).map_err(|e| refuse("request-not-upgradable", "Request cannot be upgraded", e))
}

/// The downgraded response body, or the `500` to send instead.
fn downgrade(walk: &Walk, buffer: &mut BytesMut, headers: &mut HeaderMap) -> Result<Bytes, Refusal> {
    if buffer.is_empty() {
        // A `HEAD` answer or an empty body: nothing to convert, and its
        // `Content-Length` still describes what a `GET` would get.
        return Ok(Bytes::new());
    }
    let mut value: Value = serde_json::from_slice(buffer).map_err(|e| {
        failed(
            walk,
            &format!("the handler's JSON response is not valid JSON: {e}"),
        )
    })?;
    walk.chain
        .downgrade_between(walk.chain.latest(), walk.version, &walk.operation, &mut value)
        .map_err(|e| failed(walk, &e.to_string()))?;
    write(&value, headers).map_err(|e| failed(walk, &e))
}

/// The serialized body, with the headers that describe its length fixed.
fn write(value: &Value, headers: &mut HeaderMap) -> Result<Bytes, String> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| format!("the converted body does not serialize: {e}"))?;
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Bytes::from(bytes))
}

/// A response the server cannot give in the client's version: logged in
/// full, answered without internals.
fn failed(walk: &Walk, cause: &str) -> Refusal {
    let api = walk.chain.set().name();
    metrics::counter!("orch_api_chain_failures_total", "api" => api.to_owned(), "direction" => "downgrade")
        .increment(1);
    tracing::error!(api, version = %walk.version, operation = %walk.operation, cause, "response not downgraded");
    Box::new(problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "response-not-downgradable",
        "Response cannot be downgraded",
        format!(
            "the server could not express its answer in version {} of {api}",
            walk.version
        ),
    ))
}
