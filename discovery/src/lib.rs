//! Service discovery and client-side load balancing.
//!
//! | module | what it is |
//! |---|---|
//! | [`endpoint`] | [`Endpoint`], [`EndpointId`], [`Weight`], [`EndpointChange`]: the vocabulary every part shares |
//! | [`registry`] | [`Registry`]: the current endpoints of a service, with gap-free snapshots and change streams for any number of balancers |
//! | [`discover`] | [`RegistryDiscover`]: a registry as a tower `Discover`, for tower's own balancers |
//! | [`source`] | [`StaticSource`] (a fixed list) and [`SupervisorSource`] (ready instances of an orch-core supervisor) write into a registry; `source::etcd` (feature `etcd`) follows etcd, where replicas register themselves |
//! | [`balance`] | [`Balancer`]: the client-side load balancer (P2C over peak-EWMA or requests in flight, smooth weighted round robin, Maglev by request key; weights, outlier ejection, panic threshold, slow start, fail-fast); [`SharedBalancer`](balance::SharedBalancer): its `Clone` handle for many tasks, which survives any outage of the endpoints |
//! | [`pick`] | [`SmoothWrr`](pick::SmoothWrr), [`Maglev`](pick::Maglev): table-based pickers over the balancer's slots |
//! | [`connect`] | connectors for the balancer: `HyperConnector` (feature `hyper`) and `TonicConnector` (feature `tonic`), with [`ConnectorError`](connect::ConnectorError) telling a request never sent from one that failed |
//! | [`health`] | passive health: outlier ejection (Envoy's), panic threshold, slow start |
//!
//! # Features
//!
//! None is on by default; without them the crate needs neither hyper nor
//! tonic.
//!
//! | feature | adds |
//! |---|---|
//! | `hyper` | `connect::HyperConnector`: the balancer over one pooled hyper-util client (HTTP/1.1, HTTP/2) |
//! | `tonic` | `connect::TonicConnector`: a tonic `Channel` per endpoint, so `MyServiceClient::new(balancer.into_shared())` works |
//! | `etcd` | `source::etcd`: `EtcdSource` (a registry that follows a key prefix of etcd) and `EtcdRegistration` (a replica's key under a kept-alive lease), over etcd's JSON gateway with hyper (no protoc) |
#![forbid(unsafe_code)]

pub mod balance;
mod config;
pub mod connect;
pub mod discover;
pub mod endpoint;
pub mod health;
pub mod pick;
pub mod registry;
pub mod source;

pub use balance::Balancer;
pub use config::ConfigError;
pub use discover::RegistryDiscover;
pub use endpoint::{Endpoint, EndpointChange, EndpointId, Weight, ZeroWeight};
pub use registry::{
    Applied, ChangeStream, DEFAULT_SUBSCRIBER_BUFFER, Registry, RegistryBuilder, RegistryError,
    RegistrySubscription,
};
pub use source::{
    ReadyInstance, SourceError, StaticEndpoint, StaticSource, SupervisorSource, SupervisorSourceGuard,
};
