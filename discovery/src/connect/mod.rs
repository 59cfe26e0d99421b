//! Connectors for the [`Balancer`](crate::Balancer): each turns an
//! [`Endpoint`] into the service the balancer calls for it, over hyper or
//! tonic, so users write none of that glue.
//!
//! | feature | connector | endpoint service | for |
//! |---|---|---|---|
//! | `hyper` | `HyperConnector` | `HyperEndpoint` | `http::Request<B>` over one pooled hyper-util client (HTTP/1.1 and HTTP/2) |
//! | `tonic` | `TonicConnector` | `TonicEndpoint` | a tonic `Channel` per endpoint, so `MyServiceClient::new(shared_balancer)` works |
//!
//! Both speak plain `http` only (no TLS), to the endpoint's [`SocketAddr`]:
//! an endpoint's address is checked when it is connected (port 0 or an
//! unspecified, multicast or broadcast IP is a
//! [`ConnectorError::BadAddress`] naming `endpoint.address`).
//!
//! # Failures reach the balancer as the endpoint's
//!
//! Both connect eagerly: the connector's future resolves only once a TCP
//! connection (with tonic, the HTTP/2 handshake too) succeeded, so an
//! endpoint that refuses connections never enters rotation and is tried
//! again after the balancer's reconnect backoff.
//!
//! Once in rotation, an endpoint service whose connection failed (hyper: a
//! request could not connect; tonic: the connection closed or broke, where
//! tonic's own `Channel` would keep answering ready, grpc-rust issue 2839)
//! marks itself broken and wakes the balancer: its next `poll_ready` fails,
//! so the balancer evicts it, routes around it, and connects it again
//! after its backoff. A [`SharedBalancer`](crate::balance::SharedBalancer)'s
//! driver acts on that wake at once, so a replica whose connection closed
//! while no request was on its way costs no caller anything. What a break
//! can still cost:
//!
//! - a call picked before the break was noticed fails at once with
//!   [`ConnectorError::Connect`]: never sent, safe to retry for any method;
//! - a call already on the connection when it died fails with
//!   [`ConnectorError::Request`]: it may have reached the server, so only
//!   an idempotent request should be retried;
//! - with hyper, a replica that dies between requests is found by the
//!   first request that cannot connect to it (a `Connect` error; the pool
//!   opens connections lazily).
//!
//! [`ConnectorError::is_connect`] (or
//! [`BalanceError::is_connect`](crate::balance::BalanceError::is_connect))
//! tells them apart.
//!
//! # What counts against an endpoint
//!
//! With the balancer's default classifier
//! ([`ErrorsAreFailures`](crate::balance::ErrorsAreFailures)) and with
//! [`HttpFailures`](crate::balance::HttpFailures):
//!
//! - a transport error ([`ConnectorError::Connect`],
//!   [`ConnectorError::Request`]) is the endpoint's failure;
//! - so is a response with status 5xx or 429, or a trailers-only gRPC
//!   `UNAVAILABLE`: a replica that answers 503 fast gets less traffic,
//!   not more, and five in a row eject it (outlier detection);
//! - an input error ([`ConnectorError::is_invalid_input`]: an `https`
//!   request URI, a malformed endpoint address) is not: the caller's
//!   mistake ejects no healthy replica. Retrying it cannot help either; its
//!   source is an `io::Error` of kind `InvalidInput` for layers that cannot
//!   name [`ConnectorError`].

mod error;
#[cfg(any(feature = "hyper", feature = "tonic"))]
mod future;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(any(feature = "hyper", feature = "tonic"))]
mod tcp;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "tonic")]
mod watched;

#[cfg(feature = "hyper")]
pub use self::hyper::{HyperConnector, HyperEndpoint};
#[cfg(feature = "tonic")]
pub use self::tonic::{TonicConnector, TonicEndpoint};
pub use error::ConnectorError;
#[cfg(any(feature = "hyper", feature = "tonic"))]
pub use future::EndpointFuture;

#[cfg(doc)]
use crate::Endpoint;
#[cfg(doc)]
use std::net::SocketAddr;
