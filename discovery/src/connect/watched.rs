//! A TCP connection that records when it broke, so the endpoint service
//! above it can answer `poll_ready` with the truth (tonic's `Channel`
//! keeps answering ready on a dead connection, grpc-rust issue 2839).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures_util::future::BoxFuture;
use http::Uri;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tower_service::Service;

use super::tcp::Broken;
use crate::balance::BoxError;

/// Connects to one fixed address, whatever URI it is asked for, and hands
/// out the connection watched; refuses to connect again once a connection
/// broke, so the channel cannot revive the endpoint behind the balancer's
/// back (the balancer reconnects, after its backoff).
#[derive(Clone)]
pub(crate) struct WatchedConnector {
    pub(crate) tcp: HttpConnector,
    pub(crate) uri: Uri,
    pub(crate) broken: Arc<Broken>,
}

impl Service<Uri> for WatchedConnector {
    type Response = TokioIo<WatchedStream>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        if self.broken.get() {
            return Box::pin(async {
                Err("the endpoint's connection broke; the balancer reconnects it".into())
            });
        }
        let connect = self.tcp.call(self.uri.clone());
        let broken = Arc::clone(&self.broken);
        Box::pin(async move {
            let stream = connect.await?.into_inner();
            Ok(TokioIo::new(WatchedStream { stream, broken }))
        })
    }
}

/// A TCP stream that sets [`Broken`] at end of stream or on an I/O error.
pub(crate) struct WatchedStream {
    stream: TcpStream,
    broken: Arc<Broken>,
}

impl WatchedStream {
    fn watch<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &result {
            self.broken.set();
        }
        result
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let had_room = buf.remaining() > 0;
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.stream).poll_read(cx, buf));
        // A read with room that reads nothing is the peer's end of stream.
        if result.is_err() || (had_room && buf.filled().len() == before) {
            self.broken.set();
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        self.watch(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        self.watch(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(result)
    }
}
