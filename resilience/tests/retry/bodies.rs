//! Streaming request bodies: buffered up to a limit and replayed byte for
//! byte on every attempt; sent once, intact and unbuffered, when too large or
//! when the request is not retryable; and a body that fails or never ends
//! ends the call before any attempt.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use orch_resilience::{ErrorClass, NotRetriedReason, ReplayBody, ResilienceError, RetryLayer, TimeoutKind};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{config, not_retried, reset, response};
use crate::support::ms;

// ===== streaming bodies =====

type Frames = Result<Frame<Bytes>, io::Error>;

/// The frames of a channel, as a stream.
struct ChannelFrames(tokio::sync::mpsc::Receiver<Frames>);

impl futures_util::Stream for ChannelFrames {
    type Item = Frames;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frames>> {
        self.get_mut().0.poll_recv(cx)
    }
}

type Channel = StreamBody<ChannelFrames>;

/// A streaming body fed by a task, one chunk every 5 ms, then the trailers:
/// not `Clone`, readable once.
fn channel_body(chunks: &[&'static str], trailers: Option<http::HeaderMap>) -> Channel {
    let (tx, rx) = tokio::sync::mpsc::channel::<Frames>(1);
    let chunks: Vec<&'static str> = chunks.to_vec();
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(ms(5)).await;
            if tx
                .send(Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
                .await
                .is_err()
            {
                return;
            }
        }
        if let Some(t) = trailers {
            let _ = tx.send(Ok(Frame::trailers(t))).await;
        }
    });
    StreamBody::new(ChannelFrames(rx))
}

/// What the inner service read from one attempt's body.
struct Read {
    bytes: Bytes,
    trailers: Option<http::HeaderMap>,
    buffered: bool,
}

/// What the inner service read from each attempt's body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Read>>>);

fn body_reader<B>(
    seen: Seen,
    answer: impl Fn(usize) -> Result<Response<()>, io::Error> + Clone + Send + 'static,
) -> impl Service<Request<ReplayBody<B>>, Response = Response<()>, Error = io::Error, Future: Send> + Clone
where
    B: http_body::Body<Error = io::Error> + Send + 'static,
    B::Data: Send,
{
    service_fn(move |req: Request<ReplayBody<B>>| {
        let (seen, answer) = (seen.clone(), answer.clone());
        async move {
            let buffered = req.body().is_buffered();
            let collected = req.into_body().collect().await?;
            let trailers = collected.trailers().cloned();
            let n = {
                let mut seen = seen.0.lock().unwrap();
                seen.push(Read {
                    bytes: collected.to_bytes(),
                    trailers,
                    buffered,
                });
                seen.len() - 1
            };
            answer(n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_replayed_byte_identical_on_every_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |n| {
            Ok(response(if n < 2 { 503 } else { 200 }, &[]))
        }));
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let body = channel_body(&["hello ", "streaming ", "world"], Some(trailers.clone()));
    let request = Request::put("/blob").body(body).unwrap();
    // Spawned: the retry future of a streaming request is `Send`.
    let response = tokio::spawn(retry.oneshot(request)).await.unwrap();
    assert_eq!(response.unwrap().status(), 200);

    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for read in seen.iter() {
        assert_eq!(read.bytes, "hello streaming world");
        assert_eq!(read.trailers.as_ref(), Some(&trailers));
        assert!(read.buffered);
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_intact() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(10)
        .layer(body_reader(seen.clone(), |_| Err(reset())));
    let body = channel_body(&["0123456789", "abcdefghij", "KLMNOPQRST"], None);
    let err = retry
        .oneshot(Request::put("/blob").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::BodyTooLarge, 1));
    {
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].bytes, "0123456789abcdefghijKLMNOPQRST");
        assert!(!seen[0].buffered);
    }

    // A body whose size is known to exceed the limit is not read ahead.
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(10)
        .layer(body_reader(seen.clone(), |_| Ok(response(503, &[]))));
    let body = Full::new(Bytes::from(vec![7_u8; 100])).map_err(|e: Infallible| match e {});
    let request = Request::put("/blob").body(body).unwrap();
    assert_eq!(retry.oneshot(request).await.unwrap().status(), 503);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].bytes, vec![7_u8; 100]);
}

#[tokio::test(start_paused = true)]
async fn an_unsafe_request_body_streams_through_unbuffered() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Err(reset())));
    let body = channel_body(&["pay ", "now"], None);
    let err = retry
        .oneshot(Request::post("/pay").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::UnsafeRequest, 1));
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].bytes, "pay now");
    assert!(!seen[0].buffered);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_while_buffering_fails_the_call_before_any_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(2);
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    tx.send(Err(io::Error::other("client went away"))).await.unwrap();
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let err = retry
        .oneshot(Request::put("/blob").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner);
    assert_eq!(
        err.downcast_inner_ref::<io::Error>().unwrap().to_string(),
        "client went away"
    );
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_body_still_arriving_at_the_overall_deadline_ends_the_call_before_any_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config().overall_timeout(ms(250)))
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(2);
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let start = Instant::now();
    let call = retry.oneshot(Request::put("/blob").body(body).unwrap());
    let err = tokio::time::timeout(Duration::from_secs(3600), call)
        .await
        .expect("the deadline ends the call")
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == ms(250)),
        "{err:?}"
    );
    assert_eq!(Instant::now() - start, ms(250));
    assert!(seen.0.lock().unwrap().is_empty());
    // The sender stayed open to the end: the body never finished.
    drop(tx);
}

#[test]
fn a_buffered_call_with_a_deadline_can_be_made_outside_the_runtime_that_polls_it() {
    let seen = Seen::default();
    let mut retry = RetryLayer::http(config().overall_timeout(ms(250)))
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let body = Full::new(Bytes::from_static(b"late")).map_err(|e: Infallible| match e {});
    // No runtime here: the timer is armed when the future is first polled.
    let call = retry.call(Request::put("/blob").body(body).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(call).unwrap().status(), 200);
    assert_eq!(seen.0.lock().unwrap()[0].bytes, "late");
}
