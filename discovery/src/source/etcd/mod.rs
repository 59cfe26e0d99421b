//! The etcd backend (feature `etcd`): replicas on several machines
//! register themselves in etcd, and clients follow etcd into their
//! [`Registry`](crate::Registry), which feeds the balancer as any source does.
//!
//! * [`EtcdRegistration`] is the replica side: it writes the replica's
//!   endpoint under `<prefix><id>`, attached to a lease that it keeps alive,
//!   and revokes the lease when the replica deregisters or is dropped; if
//!   the process dies, the lease's TTL removes the key.
//! * [`EtcdSource`] is the client side: it lists the prefix, then watches it,
//!   so the registry holds exactly the endpoints stored there.
//! * [`EtcdPublisher`] mirrors a local registry into etcd, one registration
//!   per endpoint: with a [`SupervisorSource`](crate::SupervisorSource)
//!   feeding that registry, a process's supervised replicas appear in etcd
//!   when they are ready and leave it when they are not.
//!
//! # Key layout and value format
//!
//! One key per endpoint, `<prefix><id>` (`/orch/services/orders/orders-1`),
//! whose value is a [`StaticEndpoint`](crate::StaticEndpoint) in JSON, the
//! same fields and validation as a static list:
//!
//! ```json
//! {"id": "orders-1", "address": "10.0.0.7:8080", "weight": 2, "zone": "a",
//!  "version": "1.4.0", "labels": {"track": "stable"}}
//! ```
//!
//! The `id` must be the key's part after the prefix. A value that is not
//! valid is skipped with a warning naming the key and the field.
//!
//! # When etcd is down
//!
//! A source keeps the endpoints it last saw and reconnects with a capped
//! exponential delay; once etcd answers again it lists the prefix, so the
//! registry converges on etcd's content. A registration keeps sending
//! keepalives; if its lease expired meanwhile, it registers again.
//!
//! # Transport
//!
//! etcd's JSON gateway (`/v3/kv/range`, `/v3/watch`, `/v3/lease/...`, etcd
//! 3.4 and later) over HTTP/1.1 with hyper: no protoc and no gRPC stack.
//! Plain `http://` client URLs only; several are tried in order.
//!
//! # Example
//!
//! ```no_run
//! use orch_discovery::{Registry, StaticEndpoint};
//! use orch_discovery::source::etcd::{EtcdConfig, EtcdRegistration, EtcdSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = EtcdConfig::new(["http://127.0.0.1:2379"], "/orch/services/orders/");
//!
//! // On each replica:
//! let me = StaticEndpoint::new("orders-1", "10.0.0.7:8080".parse()?);
//! let registration = EtcdRegistration::start(&config, &me)?;
//! registration.registered().await;
//!
//! // On each client:
//! let registry = Registry::new("orders");
//! let source = EtcdSource::new(&config)?.start(&registry)?;
//! source.synced().await;
//! assert!(registry.contains(&"orders-1".into()));
//!
//! // On shutdown, before the replica stops serving:
//! registration.deregister().await?;
//! # drop(source);
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod publisher;
mod registration;
mod source;
mod value;
mod wire;

pub use config::EtcdConfig;
pub use error::EtcdError;
pub use publisher::{EtcdPublisher, EtcdPublisherGuard};
pub use registration::EtcdRegistration;
pub use source::{EtcdSource, EtcdSourceGuard};
