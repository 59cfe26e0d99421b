//! Served children: one line turns an axum `Router` (feature `http`) or a
//! tonic service (feature `grpc`) into a supervised child that listens on a
//! loopback port.
//!
//! Every service behind a balancer needs the same glue: bind a port,
//! announce it so that the registry can route to it, serve until the
//! supervisor asks it to stop, then drain. Written by hand it is easy to get
//! the drain wrong (accept after the stop, or cut in-flight requests), so it
//! lives here once.
//!
//! Each incarnation of a served child:
//!
//! 1. builds a fresh router or service with the user's factory, which gets
//!    the child's [`ChildContext`](crate::ChildContext) (its id and generation);
//! 2. binds its address (`127.0.0.1:0` unless configured: an ephemeral port,
//!    so each restart gets a new one); a bind failure is the child's exit
//!    error ([`ExitReason::Failed`](crate::ExitReason::Failed));
//! 3. announces the bound address with
//!    [`ChildContext::announce`](crate::ChildContext::announce). The child is
//!    built with [`ready_on_announce`](crate::ChildSpec::ready_on_announce), so
//!    it becomes ready once it listens (and once its readiness probe passes, if
//!    it has one);
//! 4. serves HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC uses) on every
//!    connection it accepts;
//! 5. when cancelled, closes its listening socket at once (new connections are
//!    refused), lets requests in flight finish, closes idle keep-alive
//!    connections, and returns when every connection has closed. If that takes
//!    longer than the child's [`shutdown_grace`](crate::ChildPolicy::shutdown_grace),
//!    the supervisor drops the child and every connection with it.

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod listen;

use std::net::{Ipv4Addr, SocketAddr};

pub(crate) use listen::serve_router;

/// The address a served child binds unless told otherwise: an ephemeral
/// port on the IPv4 loopback, reachable only from this host.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
