//! The accept loop served children share: bind, announce, serve each
//! connection as its own task, and drain on cancellation.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::ChildContext;

/// How long to wait before accepting again after an accept error that is
/// not about one connection (out of file descriptors, for example): the
/// condition needs time to clear, and retrying at once would spin. hyper's
/// and axum's own loops wait the same.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Binds `bind`, announces the bound address, and serves `router` until the
/// child is cancelled, then drains (see the [module docs](super)).
///
/// Connections run in a [`JoinSet`] owned by this future, so when the
/// supervisor drops it after the grace period no connection outlives the
/// instance.
pub(crate) async fn serve_router(
    ctx: ChildContext,
    bind: SocketAddr,
    router: axum::Router,
) -> io::Result<()> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("binding {bind}: {e}")))?;
    let local = listener.local_addr()?;
    tracing::debug!(instance = %ctx.id(), address = %local, "serving");
    ctx.announce(local);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper enforces its HTTP/1 header read timeout only with a timer.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let router: axum::Router = router.with_state(());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((io, peer)) => {
                    // Without it, Nagle's algorithm holds small responses
                    // back until the client's delayed ACK: tens of
                    // milliseconds at p99 for gRPC's small frames.
                    if let Err(e) = io.set_nodelay(true) {
                        tracing::trace!(%peer, error = %e, "could not set TCP_NODELAY");
                    }
                    let service = TowerToHyperService::new(router.clone());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::trace!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(instance = %ctx.id(), error = %e, "accept failed; pausing");
                    tokio::select! {
                        () = ctx.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            },
            // Reap finished connections so the set does not grow with every one served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Closing the socket first makes the kernel refuse new connections
    // while the ones already open drain.
    drop(listener);
    tracing::debug!(instance = %ctx.id(), open = connections.len(), "draining connections");
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Errors that concern one connection only: the next accept may succeed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
