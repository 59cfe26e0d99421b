//! Served axum children: `ChildSpec::serve_http`.

use std::net::SocketAddr;

use super::{DEFAULT_BIND, serve_router};
use crate::{ChildContext, ChildSpec};

impl ChildSpec {
    /// A child that serves the axum [`Router`](axum::Router) built by
    /// `router` on an ephemeral port of `127.0.0.1`, announces the bound
    /// address, and drains gracefully when stopped (see
    /// [`serve`](crate::serve) for the whole contract).
    ///
    /// `router` runs once per incarnation, so every restart serves a fresh
    /// router; the context gives it the instance's id and generation. The
    /// child becomes ready once it listens
    /// ([`ready_on_announce`](Self::ready_on_announce)) and its readiness
    /// probe, if any, passes. It is a task child like any other: replicas,
    /// probes, restart policy and grace period are set as usual.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use orch_core::{ChildSpec, HttpProbe, ProbeSpec};
    ///
    /// # fn main() -> Result<(), orch_core::SpecError> {
    /// let orders = ChildSpec::serve_http("orders", |ctx| {
    ///     let id = ctx.id().to_string();
    ///     Router::new().route("/whoami", get(move || async move { id }))
    /// })
    /// .replicas(3)
    /// .readiness(ProbeSpec::new(HttpProbe::get("/whoami")?));
    /// # let _ = orders;
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_http<F>(id: &str, router: F) -> Self
    where
        F: Fn(&ChildContext) -> axum::Router + Send + Sync + 'static,
    {
        Self::serve_http_on(id, DEFAULT_BIND, router)
    }

    /// Like [`serve_http`](Self::serve_http), bound to `bind` instead of
    /// `127.0.0.1:0`. A bind that fails (a fixed port still taken) is the
    /// incarnation's exit error, and the restart policy applies.
    pub fn serve_http_on<F>(id: &str, bind: SocketAddr, router: F) -> Self
    where
        F: Fn(&ChildContext) -> axum::Router + Send + Sync + 'static,
    {
        Self::task(id, move |ctx| {
            let router = router(&ctx);
            serve_router(ctx, bind, router)
        })
        .ready_on_announce()
    }
}
