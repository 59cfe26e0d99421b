//! Served tonic children: `ChildSpec::serve_grpc`.

use std::net::SocketAddr;

use tonic::service::Routes;

use super::{DEFAULT_BIND, serve_router};
use crate::{ChildContext, ChildSpec};

impl ChildSpec {
    /// A child that serves the tonic services built by `routes` over HTTP/2
    /// on an ephemeral port of `127.0.0.1`, announces the bound address, and
    /// drains gracefully when stopped (see [`serve`](crate::serve) for the
    /// whole contract).
    ///
    /// `routes` runs once per incarnation and returns anything that becomes
    /// a tonic [`Routes`]: `Routes::new(MyServiceServer::new(svc))`, a
    /// `Routes::builder()` with several services, or an axum `Router`.
    /// Requests for a service it does not hold answer `UNIMPLEMENTED`.
    ///
    /// ```
    /// use tonic::service::Routes;
    /// use orch_core::{ChildSpec, GrpcHealthProbe, ProbeSpec};
    ///
    /// let payments = ChildSpec::serve_grpc("payments", |_ctx| {
    ///     let (_reporter, health) = tonic_health::server::health_reporter();
    ///     Routes::new(health)
    /// })
    /// .readiness(ProbeSpec::new(GrpcHealthProbe::new()));
    /// # let _ = payments;
    /// ```
    pub fn serve_grpc<F, R>(id: &str, routes: F) -> Self
    where
        F: Fn(&ChildContext) -> R + Send + Sync + 'static,
        R: Into<Routes>,
    {
        Self::serve_grpc_on(id, DEFAULT_BIND, routes)
    }

    /// Like [`serve_grpc`](Self::serve_grpc), bound to `bind` instead of
    /// `127.0.0.1:0`.
    pub fn serve_grpc_on<F, R>(id: &str, bind: SocketAddr, routes: F) -> Self
    where
        F: Fn(&ChildContext) -> R + Send + Sync + 'static,
        R: Into<Routes>,
    {
        Self::task(id, move |ctx| {
            let router = routes(&ctx).into().prepare().into_axum_router();
            serve_router(ctx, bind, router)
        })
        .ready_on_announce()
    }
}
