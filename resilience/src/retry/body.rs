//! Replaying HTTP requests whose bodies are streams.
//!
//! `tower`'s retry needs `Clone` requests, and an `http::Request` with a
//! streaming body (hyper's `Incoming`, tonic's `Body`, a channel) is not
//! `Clone`: its bytes can be read once. [`BufferBodies`] reads such a body
//! into memory before the first attempt, up to a limit, and gives every
//! attempt a [`ReplayBody`] that yields the same bytes (and trailers). A
//! body over the limit is not lost: the attempt gets the part already read
//! followed by the rest of the stream, and the call simply cannot be
//! retried (`NotRetried { reason: BodyTooLarge }`).

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use http::{HeaderMap, request::Parts};
use http_body::{Body, Frame, SizeHint};

use super::replay::{Prepared, Replay};
use crate::error::{BoxError, NotRetriedReason};

/// Replays HTTP requests with streaming bodies by buffering bodies of up to
/// `max_bytes` in memory. Set with
/// [`RetryLayer::buffer_bodies`](super::RetryLayer::buffer_bodies).
///
/// The inner service receives `http::Request<ReplayBody<B>>`. For each call:
/// - a request that cannot be retried (unsafe, or `max_attempts` 1) is not
///   buffered: its body streams straight through;
/// - a body whose size hint already exceeds `max_bytes` is not read ahead:
///   it streams through and the call cannot be retried;
/// - otherwise the body is read before the first attempt. If it ends within
///   `max_bytes`, every attempt gets the same chunks and trailers. If it
///   grows past `max_bytes`, reading stops there; the first attempt gets the
///   chunks already read followed by the rest of the stream, intact, and a
///   retryable result then ends the call with `NotRetried { reason:
///   BodyTooLarge }` (or returns the response) with a `tracing` event saying so.
///
/// Reading ahead costs latency for large uploads: the first byte reaches
/// the service when the whole body (up to the limit) has arrived. An error
/// of the body while it is read fails the call with
/// `ResilienceError::Inner(error)` without calling the service (the request
/// could not have been sent intact).
#[derive(Debug, Clone, Copy)]
pub struct BufferBodies {
    max_bytes: u64,
}

impl BufferBodies {
    /// Buffers bodies of up to `max_bytes`.
    pub const fn new(max_bytes: u64) -> Self {
        Self { max_bytes }
    }

    /// The largest body that is buffered.
    pub const fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl<B> Replay<http::Request<B>> for BufferBodies
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Request = http::Request<ReplayBody<B>>;
    type Source = ReplaySource;
    type Prepare = BufferRequest<B>;

    fn prepare(
        &self,
        request: http::Request<B>,
        replayable: bool,
    ) -> Prepared<Self::Request, ReplaySource, BufferRequest<B>> {
        let (parts, body) = request.into_parts();
        if !replayable {
            let request = http::Request::from_parts(parts, ReplayBody::new(body));
            return Prepared::Ready(request, None);
        }
        if body.size_hint().lower() > self.max_bytes {
            tracing::debug!(
                max_bytes = self.max_bytes,
                size_hint = body.size_hint().lower(),
                "request body larger than the replay buffer; it is streamed once and cannot be retried",
            );
            let request = http::Request::from_parts(parts, ReplayBody::new(body));
            return Prepared::Ready(request, Some(ReplaySource::too_large()));
        }
        Prepared::Reading(BufferRequest {
            reading: Some(Reading {
                parts,
                body: Box::pin(body),
                chunks: Vec::new(),
                len: 0,
                trailers: None,
                max_bytes: self.max_bytes,
            }),
        })
    }

    fn replay(&self, source: &ReplaySource) -> Result<Self::Request, NotRetriedReason> {
        match &source.kind {
            SourceKind::Buffered { parts, body } => Ok(http::Request::from_parts(
                parts.clone(),
                ReplayBody::buffered(Arc::clone(body)),
            )),
            SourceKind::TooLarge => Err(NotRetriedReason::BodyTooLarge),
        }
    }

    fn once(&self, request: http::Request<B>) -> Self::Request {
        request.map(ReplayBody::new)
    }
}

/// What [`BufferBodies`] keeps between attempts: the request head and the
/// buffered body, or the fact that the body was too large to keep.
pub struct ReplaySource {
    kind: SourceKind,
}

// The retry future holds room for the large variant whatever it holds;
// boxing the head would only add an allocation per call.
#[allow(clippy::large_enum_variant)]
enum SourceKind {
    Buffered { parts: Parts, body: Arc<Buffered> },
    TooLarge,
}

impl ReplaySource {
    fn too_large() -> Self {
        Self {
            kind: SourceKind::TooLarge,
        }
    }

    /// True when the body was buffered and the request can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, SourceKind::Buffered { .. })
    }
}

impl fmt::Debug for ReplaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Buffered { parts, body } => f
                .debug_struct("ReplaySource")
                .field("method", &parts.method)
                .field("uri", &parts.uri)
                .field("body_bytes", &body.len)
                .finish(),
            SourceKind::TooLarge => f.write_str("ReplaySource(too large)"),
        }
    }
}

/// A fully read body.
#[derive(Debug)]
struct Buffered {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

/// The body of each attempt's request under [`BufferBodies`]: either a
/// replay of a fully buffered body (the same chunks and trailers every
/// time), or the original stream, preceded by the chunks already read from
/// it when it outgrew the buffer.
///
/// Its data is [`Bytes`]; replaying a chunk clones a reference, not the bytes.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use orch_resilience::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A body passed straight through (a request that is sent only once).
/// let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")));
/// assert!(!body.is_buffered());
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct ReplayBody<B> {
    kind: BodyKind<B>,
}

enum BodyKind<B> {
    Replay {
        body: Arc<Buffered>,
        next: usize,
        sent: u64,
        trailers_sent: bool,
    },
    Stream {
        prefix: VecDeque<Bytes>,
        prefix_len: u64,
        rest: Pin<Box<B>>,
    },
}

impl<B> ReplayBody<B> {
    /// `body` passed through unchanged (its data converted to [`Bytes`]).
    pub fn new(body: B) -> Self {
        Self::stream(VecDeque::new(), 0, Box::pin(body))
    }

    fn stream(prefix: VecDeque<Bytes>, prefix_len: u64, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: BodyKind::Stream {
                prefix,
                prefix_len,
                rest,
            },
        }
    }

    fn buffered(body: Arc<Buffered>) -> Self {
        Self {
            kind: BodyKind::Replay {
                body,
                next: 0,
                sent: 0,
                trailers_sent: false,
            },
        }
    }

    /// True when this is a replay of a fully buffered body (the request can
    /// be, or was, sent again).
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, BodyKind::Replay { .. })
    }

    /// A fresh replay of the same buffered body, from its first byte; `None`
    /// for a body that streams through (it can be read once).
    pub(crate) fn replay_again(&self) -> Option<Self> {
        match &self.kind {
            BodyKind::Replay { body, .. } => Some(Self::buffered(Arc::clone(body))),
            BodyKind::Stream { .. } => None,
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            BodyKind::Replay {
                body,
                next,
                sent,
                trailers_sent,
            } => {
                if let Some(chunk) = body.chunks.get(*next) {
                    *next += 1;
                    *sent += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
                }
                match &body.trailers {
                    Some(trailers) if !*trailers_sent => {
                        *trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))))
                    }
                    _ => Poll::Ready(None),
                }
            }
            BodyKind::Stream {
                prefix,
                prefix_len,
                rest,
            } => {
                if let Some(chunk) = prefix.pop_front() {
                    *prefix_len -= chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                let frame = ready!(rest.as_mut().poll_frame(cx));
                Poll::Ready(frame.map(|result| {
                    result.map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Replay {
                body,
                next,
                trailers_sent,
                ..
            } => *next >= body.chunks.len() && (body.trailers.is_none() || *trailers_sent),
            BodyKind::Stream { prefix, rest, .. } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Replay { body, sent, .. } => SizeHint::with_exact(body.len - sent),
            BodyKind::Stream { prefix_len, rest, .. } => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(*prefix_len));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(*prefix_len));
                }
                hint
            }
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Replay { body, sent, .. } => f
                .debug_struct("ReplayBody::Buffered")
                .field("len", &body.len)
                .field("sent", sent)
                .finish(),
            BodyKind::Stream { prefix_len, .. } => f
                .debug_struct("ReplayBody::Stream")
                .field("buffered_prefix", prefix_len)
                .finish(),
        }
    }
}

/// Reads a request body into memory for [`BufferBodies`]; resolves to the
/// first attempt's request and the source of later ones.
pub struct BufferRequest<B> {
    // `None` once the request is handed over.
    reading: Option<Reading<B>>,
}

type FirstRequest<B> = (http::Request<ReplayBody<B>>, Option<ReplaySource>);

struct Reading<B> {
    parts: Parts,
    body: Pin<Box<B>>,
    chunks: Vec<Bytes>,
    len: u64,
    trailers: Option<HeaderMap>,
    max_bytes: u64,
}

impl<B> Future for BufferRequest<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<FirstRequest<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = &mut self.get_mut().reading;
        loop {
            let (outgrown, ended) = match state {
                None => return Poll::Ready(Err(polled_after_completion())),
                Some(Reading {
                    body,
                    chunks,
                    len,
                    trailers,
                    max_bytes,
                    ..
                }) => {
                    // Trailers are the last frame of a body (http-body's contract).
                    if trailers.is_some() || body.is_end_stream() {
                        (false, true)
                    } else {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            None => (false, true),
                            Some(Err(error)) => {
                                *state = None;
                                return Poll::Ready(Err(error.into()));
                            }
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    let bytes = data.copy_to_bytes(data.remaining());
                                    *len += bytes.len() as u64;
                                    if !bytes.is_empty() {
                                        chunks.push(bytes);
                                    }
                                    (*len > *max_bytes, false)
                                }
                                Err(frame) => {
                                    if let Ok(t) = frame.into_trailers() {
                                        *trailers = Some(t);
                                    }
                                    (false, false)
                                }
                            },
                        }
                    }
                }
            };
            if !(outgrown || ended) {
                continue;
            }
            let Some(Reading {
                parts,
                body,
                chunks,
                len,
                trailers,
                max_bytes,
            }) = state.take()
            else {
                return Poll::Ready(Err(polled_after_completion()));
            };
            if outgrown {
                tracing::debug!(
                    max_bytes,
                    buffered = len,
                    "request body outgrew the replay buffer; it is streamed once and cannot be retried",
                );
                let request = http::Request::from_parts(parts, ReplayBody::stream(chunks.into(), len, body));
                return Poll::Ready(Ok((request, Some(ReplaySource::too_large()))));
            }
            let buffered = Arc::new(Buffered {
                chunks,
                trailers,
                len,
            });
            let request =
                http::Request::from_parts(parts.clone(), ReplayBody::buffered(Arc::clone(&buffered)));
            let source = ReplaySource {
                kind: SourceKind::Buffered {
                    parts,
                    body: buffered,
                },
            };
            return Poll::Ready(Ok((request, Some(source))));
        }
    }
}

impl<B> fmt::Debug for BufferRequest<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.reading {
            Some(_) => "reading body",
            None => "done",
        };
        f.debug_struct("BufferRequest").field("state", &state).finish()
    }
}

fn polled_after_completion() -> BoxError {
    "BufferRequest polled after completion".into()
}
