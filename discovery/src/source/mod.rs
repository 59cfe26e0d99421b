//! Sources: what keeps a [`Registry`](crate::Registry) in step with where
//! the endpoints really are.
//!
//! A registry does not know where its endpoints come from; a source does,
//! and writes into it. [`StaticSource`] is a fixed list, loadable from
//! configuration; [`SupervisorSource`] follows the lifecycle events of an
//! orch-core supervisor, so instances enter the registry when they are
//! ready and leave it as soon as they stop being ready, are stopped or crash.
//! `etcd` (feature `etcd`) follows a key prefix of etcd, where replicas on
//! other machines register themselves.

#[cfg(feature = "etcd")]
pub mod etcd;
mod static_list;
mod supervisor;

pub use static_list::{StaticEndpoint, StaticSource};
pub use supervisor::{ReadyInstance, SourceError, SupervisorSource, SupervisorSourceGuard};
