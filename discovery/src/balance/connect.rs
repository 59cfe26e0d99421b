//! Turning an [`Endpoint`] into a service the balancer can call.
//!
//! The balancer takes any `tower::MakeService<Endpoint, Req>`-style
//! connector: a `Service<Endpoint>` whose response is the endpoint's
//! service. Connecting may be asynchronous (a TCP or HTTP/2 handshake) and
//! may fail; a failed connect is tried again after a backoff, and the
//! endpoint is not picked meanwhile. For services that need no handshake,
//! [`connect_fn`] turns a plain function into such a connector.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
};

use tower_service::Service;

use crate::Endpoint;

/// A connector from a synchronous function: see [`connect_fn`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectFn<F> {
    f: F,
}

/// A connector that builds each endpoint's service with `f`, at once and
/// infallibly.
///
/// ```
/// use std::convert::Infallible;
/// use orch_discovery::{Endpoint, balance::connect_fn};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut connect = connect_fn(|endpoint: &Endpoint| {
///     let port = endpoint.address().port();
///     service_fn(move |_request: ()| async move { Ok::<_, Infallible>(port) })
/// });
/// let endpoint = Endpoint::new("api-1", "127.0.0.1:8080".parse().unwrap());
/// let mut service = connect.ready().await.unwrap().call(endpoint).await.unwrap();
/// assert_eq!(service.ready().await.unwrap().call(()).await.unwrap(), 8080);
/// # }
/// ```
pub fn connect_fn<F>(f: F) -> ConnectFn<F> {
    ConnectFn { f }
}

impl<F, S> Service<Endpoint> for ConnectFn<F>
where
    F: FnMut(&Endpoint) -> S,
{
    type Response = S;
    type Error = Infallible;
    type Future = Ready<Result<S, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        ready(Ok((self.f)(&endpoint)))
    }
}
