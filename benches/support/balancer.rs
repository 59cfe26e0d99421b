//! Our balancer as the benchmarks build it: `n` endpoints whose services
//! answer at once, one algorithm, a fixed seed.

use std::{convert::Infallible, future::Ready};

use futures_util::{Stream, stream};
use orch::discovery::{
    Endpoint, EndpointChange,
    balance::{Algorithm, Balancer, BalancerConfig, connect_fn},
};
use tower::Service;

use super::drive::{Bare, bare};

/// A balancer over `n` [`Bare`] endpoints with `algorithm`.
pub fn orch_balancer(
    n: usize,
    algorithm: Algorithm,
) -> Balancer<
    impl Stream<Item = EndpointChange> + Unpin,
    impl Service<Endpoint, Response = Bare, Error = Infallible, Future = Ready<Result<Bare, Infallible>>>,
> {
    let changes: Vec<EndpointChange> = (0..n)
        .map(|i| {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
            EndpointChange::Insert(Endpoint::new(format!("e{i}"), address))
        })
        .collect();
    let config = BalancerConfig::default().algorithm(algorithm).seed(1);
    let connect = connect_fn(|_: &Endpoint| bare());
    Balancer::with_config(&config, stream::iter(changes), connect).expect("a valid config")
}
