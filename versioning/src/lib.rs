//! API versions for services that evolve without breaking their clients.
//!
//! A service declares the versions of its API in a [`VersionSet`] (numbered
//! like Kubernetes' `v1`, or dated like Stripe's `2024-06-20`), each
//! [`Lifecycle`]: stable, deprecated with a sunset, or removed, per
//! version and per operation. A [`Negotiation`] reads the version a
//! request asks for from a header (or gRPC metadata), a path prefix or a
//! media type, in a configurable precedence, and falls back to a per-client
//! pin or the default. The [`VersioningLayer`] applies it to every request
//! of an axum, hyper or tonic server:
//!
//! - the handler finds the [`Negotiated`] version in the request's
//!   extensions;
//! - the response says which version answered (`Api-Version: 2`) and, for
//!   a deprecated one, when it goes away: `Deprecation` (RFC 9745),
//!   `Sunset` (RFC 8594) and a `Link` to the migration notes;
//! - a version that is malformed or unknown gets `400` (`406` when it came
//!   from `Accept`), a removed one `410 Gone`, as
//!   `application/problem+json` (RFC 9457) listing the supported versions,
//!   or as a gRPC status for gRPC requests;
//! - `orch_api_requests_total{api, version, lifecycle}` counts who still
//!   calls an old version.
//!
//! On the other side, a [`ClientVersioningLayer`] in a hyper or tonic
//! client sends the version the client was written against (header, gRPC
//! metadata or media type) and reads those `Deprecation`/`Sunset`/`Link`
//! answers: one `tracing` warning per operation, a count in
//! `orch_api_deprecated_responses_total{api, version, operation}`, and a
//! [`Deprecations`] handle to assert on in tests (see [`client`]).
//!
//! Before a version ships, [`compat`] compares the JSON Schemas of a
//! contract's versions (generated with `schemars` under the `schema`
//! feature, or checked in) and reports what breaks clients, and
//! [`compat::assert_schema_unchanged_compatibly`] keeps a released
//! version's checked-in schema from changing incompatibly.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use orch_versioning::{Lifecycle, Negotiation, VersionSet, VersioningLayer};
//!
//! let set = VersionSet::builder("orders")
//!     .version("1", Lifecycle::deprecated(UNIX_EPOCH + Duration::from_secs(1_719_878_400)))
//!     .version("2", Lifecycle::Stable)
//!     .build()?;
//! let layer = VersioningLayer::new(Negotiation::new(set).build()?);
//! # let _ = layer;
//! # Ok::<(), orch_versioning::VersionError>(())
//! ```
//!
//! A handler is written once, against the latest version: a
//! [`ChangeChain`] of [`VersionChange`]s (Stripe's version changes) upgrades
//! older clients' JSON requests to it and downgrades its responses back,
//! through the [`ChainLayer`] placed inside the `VersioningLayer`, and
//! writes the API's changelog from the changes' descriptions.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chain;
pub mod client;
pub mod compat;
mod echo;
mod error;
mod layer;
mod lifecycle;
mod negotiate;
mod problem;
mod set;
mod version;

#[cfg(feature = "testing")]
pub use chain::testing;
pub use chain::{
    ChainError, ChainFuture, ChainLayer, Chained, ChangeChain, ChangeChainBuilder, ConversionError,
    Direction, VersionChange,
};
pub use client::{ClientVersioning, ClientVersioningLayer, DeprecationNotice, Deprecations, SendAs};
pub use error::VersionError;
pub use layer::{ResponseFuture, Versioning, VersioningLayer};
pub use lifecycle::{DEPRECATION, Deprecation, Lifecycle, SUNSET, parse_deprecation, parse_sunset};
pub use negotiate::{Negotiated, Negotiation, NegotiationBuilder, OperationFn, Rejection, Source};
pub use set::{PinFn, VersionSet, VersionSetBuilder};
pub use version::{ApiDate, ApiVersion, ParseVersionError};
