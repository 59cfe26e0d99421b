//! The response body of the idempotency layers, and the reading of a
//! handler's body into memory so that it can be saved.
//!
//! One body type covers every path a response takes: passed through
//! untouched (a request the layer does not protect), whole in memory (a
//! fresh response that was saved, a replay, a rejection), or a prefix read
//! while saving followed by the rest of a stream too large to save.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The response body of [`Idempotency`](super::Idempotency): the
    /// handler's own body, or bytes held in memory (a saved or replayed
    /// response, a rejection).
    ///
    /// Its data is [`Bytes`] and its error a [`BoxError`], so axum, hyper
    /// and tonic servers take it as it is.
    pub struct IdempotentBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough { #[pin] body: B },
        Whole { data: Option<Bytes>, trailers: Option<HeaderMap>, error: Option<BoxError> },
        Rest { prefix: Option<Bytes>, rest: Pin<Box<B>> },
    }
}

impl<B> IdempotentBody<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    /// `data` then `trailers`.
    pub(crate) fn whole(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Whole {
                data: (!data.is_empty()).then_some(data),
                trailers,
                error: None,
            },
        }
    }

    /// `data` then `error`: a handler's body that failed while it was read.
    fn failed(data: Bytes, error: BoxError) -> Self {
        Self {
            kind: Kind::Whole {
                data: (!data.is_empty()).then_some(data),
                trailers: None,
                error: Some(error),
            },
        }
    }

    fn rest(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Rest {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }
}

impl<B> Default for IdempotentBody<B> {
    /// An empty body.
    fn default() -> Self {
        Self::whole(Bytes::new(), None)
    }
}

impl<B> Body for IdempotentBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => poll_data(body, cx),
            KindProj::Whole {
                data,
                trailers,
                error,
            } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(error) = error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Rest { prefix, rest } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => poll_data(rest.as_mut(), cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Whole {
                data,
                trailers,
                error,
            } => data.is_none() && trailers.is_none() && error.is_none(),
            Kind::Rest { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Whole { data, .. } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Rest { prefix, rest } => {
                let prefix = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(prefix));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(prefix));
                }
                hint
            }
        }
    }
}

fn poll_data<B>(body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let frame = ready!(body.poll_frame(cx));
    Poll::Ready(frame.map(|result| {
        result
            .map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
    }))
}

impl<B> fmt::Debug for IdempotentBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Whole { .. } => "whole",
            Kind::Rest { .. } => "rest",
        };
        f.debug_tuple("IdempotentBody").field(&kind).finish()
    }
}

/// A body read into memory, or as far as it could be.
pub(crate) enum Collected<B> {
    /// The whole body, within the limit.
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// The body grew past the limit: what was read, and the rest.
    TooLarge { prefix: Bytes, rest: Pin<Box<B>> },
    /// The body failed after `prefix`.
    Failed { prefix: Bytes, error: BoxError },
}

impl<B> Collected<B> {
    /// The body to hand on, whatever happened while reading it.
    pub(crate) fn into_body(self) -> IdempotentBody<B> {
        match self {
            Self::Whole { data, trailers } => IdempotentBody::whole(data, trailers),
            Self::TooLarge { prefix, rest } => IdempotentBody::rest(prefix, rest),
            Self::Failed { prefix, error } => IdempotentBody::failed(prefix, error),
        }
    }
}

/// Reads `body` until its end or until it holds more than `limit` bytes.
pub(crate) async fn collect<B>(body: B, limit: usize) -> Collected<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut data = BytesMut::new();
    // The first chunk is kept as it is: most bodies are one chunk, and
    // `Bytes` hands it on without a copy.
    let mut first: Option<Bytes> = None;
    let mut len = 0usize;
    let mut trailers: Option<HeaderMap> = None;
    let prefix = |first: Option<Bytes>, data: BytesMut| match first {
        Some(first) if data.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + data.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&data);
            all.freeze()
        }
        None => data.freeze(),
    };
    if body.size_hint().lower() > limit as u64 {
        return Collected::TooLarge {
            prefix: Bytes::new(),
            rest: body,
        };
    }
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                return Collected::Failed {
                    prefix: prefix(first, data),
                    error: error.into(),
                };
            }
        };
        match frame.into_data() {
            Ok(mut chunk) => {
                let chunk = chunk.copy_to_bytes(chunk.remaining());
                len = len.saturating_add(chunk.len());
                if first.is_none() && data.is_empty() {
                    first = Some(chunk);
                } else {
                    if let Some(first) = first.take() {
                        data.extend_from_slice(&first);
                    }
                    data.extend_from_slice(&chunk);
                }
                if len > limit {
                    return Collected::TooLarge {
                        prefix: prefix(first, data),
                        rest: body,
                    };
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    match &mut trailers {
                        Some(all) => all.extend(t),
                        None => trailers = Some(t),
                    }
                }
            }
        }
    }
    Collected::Whole {
        data: prefix(first, data),
        trailers,
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn bodies_are_read_whole_or_handed_on_intact() {
        let chunks = || {
            StreamBody::new(futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"ab"))),
                Ok(Frame::data(Bytes::from_static(b"cd"))),
                Ok(Frame::trailers(HeaderMap::new())),
            ]))
        };
        let Collected::Whole { data, trailers } = collect(chunks(), 4).await else {
            panic!("within the limit");
        };
        assert_eq!((data.as_ref(), trailers.is_some()), (&b"abcd"[..], true));

        let over = collect(chunks(), 3).await;
        assert!(matches!(over, Collected::TooLarge { .. }));
        let body = over.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "abcd", "nothing lost past the limit");

        let hinted = collect(Full::new(Bytes::from_static(b"12345")), 4).await;
        assert!(matches!(hinted, Collected::TooLarge { .. }));
    }
}
