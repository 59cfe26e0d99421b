//! orch: resilient microservices for tokio and tower, served with axum or
//! tonic and called with hyper or tonic.
//!
//! This facade re-exports the workspace's crates so one dependency brings
//! them all:
//!
//! - [`core`] (`orch-core`): the embedded supervisor (trees, replica
//!   groups, restarts with backoff), health probes, lifecycle events, the
//!   `Scaler` seam and the autoscaler, served axum and tonic children,
//!   configuration loading.
//! - [`resilience`] (`orch-resilience`): tower layers for retry with
//!   budgets, circuit breaking, timeouts, bulkheads, rate limits, hedging
//!   and fallback, composed by `ResilienceLayer` with HTTP and gRPC presets;
//!   idempotency keys on the server (`IdempotencyLayer` for axum and hyper,
//!   `GrpcIdempotencyLayer` for tonic) over memory, Redis or PostgreSQL
//!   stores; seeded fault injection for chaos tests (`chaos`).
//! - [`discovery`] (`orch-discovery`): the endpoint registry and its
//!   sources, the client-side balancer and its hyper and tonic connectors.
//! - [`versioning`] (`orch-versioning`): API versions, their negotiation
//!   and lifecycle (deprecation, sunset, removal) as a tower layer for
//!   servers; Stripe-style version-change chains, so that a handler written
//!   for the latest version serves older clients; a client layer that
//!   sends a pinned version and reports deprecations; breaking-change
//!   checks between the JSON Schemas of versions.
//!
//! Cargo features: `http` (HTTP probes, served axum children, the hyper
//! connector), `grpc` (gRPC health probes, served tonic children, the tonic
//! connector, replay of tonic bodies), `config` (`orch::core::config`),
//! `backoff` (the unmaintained `backoff` crate's policies as restart
//! backoff), `schedule` (the autoscaler's cron windows), `nats` (a JetStream
//! consumer's backlog as the autoscaler's signal), `redis` and `postgres`
//! (idempotency stores), `etcd` (`orch::discovery::source::etcd`: replicas
//! register in etcd, clients follow it), `schema` (JSON Schemas of contracts). The README's quick start shows the whole client path.
#![forbid(unsafe_code)]

pub use orch_core as core;
pub use orch_discovery as discovery;
pub use orch_resilience as resilience;
pub use orch_versioning as versioning;
