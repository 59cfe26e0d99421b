//! The idempotency layer's configuration: plain data that can come from a
//! file or the environment, checked when the layer is built.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check};
use crate::idempotency::ensure;

/// The longest key accepted by any configuration: the memory store leaves
/// room for 1 KiB of scope and key, and scopes are cut to 71 bytes (see
/// [`IdempotencyLayer::scope`](super::IdempotencyLayer::scope)).
pub const MAX_KEY_LENGTH: usize = 512;

/// The longest lease: a year and a day, as the stores' longest retention.
const MAX_LEASE: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Configuration of the HTTP and gRPC idempotency layers, as plain data.
///
/// Every field has a builder-style setter of the same name and a default
/// (below); unknown fields are rejected when deserialising, and durations
/// are humantime strings (`"30s"`). Nothing is checked until the layer is
/// built; then [`validate`](Self::validate) refuses what cannot work,
/// naming the field (`idempotency.lease`).
///
/// How long a saved response is replayed is the store's retention
/// ([`MemoryStoreConfig::retention`](crate::idempotency::MemoryStoreConfig::retention)
/// and its twins), not a layer setting: every replica must agree on it,
/// and the store is what they share.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::idempotency::http::{IdempotencyConfig, StoreFailure};
///
/// let config: IdempotencyConfig = serde_json::from_str(r#"{
///     "methods": ["POST"],
///     "key_required": true,
///     "lease": "10s",
///     "max_body_bytes": 65536,
///     "on_store_error": "pass_through"
/// }"#).unwrap();
/// assert_eq!(config.lease, Duration::from_secs(10));
/// assert_eq!(config.on_store_error, StoreFailure::PassThrough);
/// assert!(config.saved.client_error); // the default
/// config.validate().unwrap();
///
/// let err = IdempotencyConfig::default().lease(Duration::ZERO).validate().unwrap_err();
/// assert_eq!(err.field_name(), "idempotency.lease");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// Name used in tracing events and the `name` metric label. Default
    /// `"idempotency"`.
    pub name: String,
    /// HTTP methods whose requests the HTTP layer protects; others pass
    /// through untouched. Default `POST` and `PATCH`, the methods that are
    /// not idempotent by themselves (RFC 9110 §9.2.2). Ignored by the gRPC
    /// layer (every gRPC call is a `POST`).
    pub methods: Vec<String>,
    /// gRPC methods the gRPC layer protects, as full paths
    /// (`/orders.v1.Orders/Create`); empty means every method. Default
    /// empty. Ignored by the HTTP layer.
    pub grpc_methods: Vec<String>,
    /// Whether a protected request without a key is refused (`400`,
    /// `INVALID_ARGUMENT`) rather than run unprotected. Default `false`.
    pub key_required: bool,
    /// How long a claim holds a key while its handler runs. A repeat that
    /// arrives meanwhile is told to come back later; if the holder dies,
    /// the key can be claimed again once the lease ends. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Whether the lease is renewed (every half lease) while the handler
    /// runs, so a handler may run longer than one lease. Default `true`.
    pub renew_leases: bool,
    /// The longest `Retry-After` sent to a repeat that finds its key still
    /// running (the store knows only when the lease ends, which may be far
    /// later than the handler's end). Sent in whole seconds, at least 1.
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub in_progress_retry_after: Duration,
    /// The largest request body read for the fingerprint; a larger one is
    /// refused with `413` (`RESOURCE_EXHAUSTED`). Default 1 MiB.
    pub max_body_bytes: usize,
    /// The largest response body saved. A larger response reaches its
    /// client whole, but its key is released (the store cannot replay it).
    /// Default 1 MiB, the memory store's default `max_response_bytes`.
    pub max_response_bytes: usize,
    /// The longest key, in bytes. Default 255 (Stripe's limit); at most
    /// 512.
    pub max_key_length: usize,
    /// The shortest key, in bytes. Default 8: a UUID has 36, and keys such
    /// as `1` or `42` are counters that collide across clients and days.
    pub min_key_length: usize,
    /// The fewest distinct characters a key must have. Default 5, so
    /// `aaaaaaaa` or `00000001` are refused while any UUID (at least 12
    /// distinct characters in practice) passes easily.
    pub min_key_distinct_chars: usize,
    /// Whether a key may come as a bare value (`Idempotency-Key: abc-123`)
    /// rather than the sf-string the IETF draft requires
    /// (`Idempotency-Key: "abc-123"`). Default `false`.
    pub accept_bare_keys: bool,
    /// Which outcomes of a handler are saved and replayed; the others
    /// release the key so that the client may retry.
    pub saved: SavedOutcomes,
    /// What happens when the store fails (unreachable, full). Default
    /// [`StoreFailure::Reject`].
    pub on_store_error: StoreFailure,
    /// The `Retry-After` sent when the store fails without a hint of its
    /// own. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub store_retry_after: Duration,
}

/// Which outcomes of a handler are saved (and replayed to every repeat).
///
/// HTTP: `success` is 1xx to 3xx; `client_error` is 4xx except 408, 425
/// and 429 (they say "try again later", so they are never saved);
/// `server_error` is 5xx. gRPC: `success` is `OK`; `client_error` is
/// `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`,
/// `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `UNIMPLEMENTED` and
/// `UNAUTHENTICATED`; `server_error` is every other code. A handler that
/// fails (its service returns an error, panics, or its body fails) always
/// releases the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SavedOutcomes {
    /// Save successes. Default `true`.
    pub success: bool,
    /// Save client errors: the request was wrong and stays wrong. Default
    /// `true`.
    pub client_error: bool,
    /// Save server errors. Default `false`: the key is released and a
    /// retry runs the handler again.
    pub server_error: bool,
}

impl Default for SavedOutcomes {
    fn default() -> Self {
        Self {
            success: true,
            client_error: true,
            server_error: false,
        }
    }
}

/// What the layer does when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    /// Refuse the request: `503` with `Retry-After` (`UNAVAILABLE` with a
    /// pushback for gRPC). The request is not run, so it cannot run twice.
    #[default]
    Reject,
    /// Run the request unprotected, as if it carried no key: availability
    /// over the at-most-once promise. Each such request is counted
    /// (`outcome="unprotected"`) and logged.
    PassThrough,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            name: "idempotency".to_owned(),
            methods: vec!["POST".to_owned(), "PATCH".to_owned()],
            grpc_methods: Vec::new(),
            key_required: false,
            lease: Duration::from_secs(30),
            renew_leases: true,
            in_progress_retry_after: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            max_key_length: 255,
            min_key_length: 8,
            min_key_distinct_chars: 5,
            accept_bare_keys: false,
            saved: SavedOutcomes::default(),
            on_store_error: StoreFailure::Reject,
            store_retry_after: Duration::from_secs(1),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

impl IdempotencyConfig {
    setters! {
        /// Sets the name.
        name: String,
        /// Sets the protected HTTP methods.
        methods: Vec<String>,
        /// Sets the protected gRPC methods (full paths; empty for all).
        grpc_methods: Vec<String>,
        /// Sets whether protected requests must carry a key.
        key_required: bool,
        /// Sets the lease.
        lease: Duration,
        /// Sets whether leases are renewed while handlers run.
        renew_leases: bool,
        /// Sets the cap of the in-progress `Retry-After`.
        in_progress_retry_after: Duration,
        /// Sets the largest request body.
        max_body_bytes: usize,
        /// Sets the largest response body saved.
        max_response_bytes: usize,
        /// Sets the longest key.
        max_key_length: usize,
        /// Sets the shortest key.
        min_key_length: usize,
        /// Sets the fewest distinct characters of a key.
        min_key_distinct_chars: usize,
        /// Sets whether bare (unquoted) keys are accepted.
        accept_bare_keys: bool,
        /// Sets which outcomes are saved.
        saved: SavedOutcomes,
        /// Sets what a store failure does.
        on_store_error: StoreFailure,
        /// Sets the `Retry-After` of a store failure.
        store_retry_after: Duration,
    }

    /// Rejects values that cannot work; the error names the field
    /// (`idempotency.max_key_length`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.is_empty(), "idempotency.name", "must not be empty")?;
        ensure(
            !self.methods.is_empty(),
            "idempotency.methods",
            "must name at least one method",
        )?;
        ensure(
            (self.methods.iter()).all(|m| http::Method::from_bytes(m.as_bytes()).is_ok()),
            "idempotency.methods",
            "must be HTTP method names",
        )?;
        ensure(
            self.grpc_methods.iter().all(|path| is_grpc_path(path)),
            "idempotency.grpc_methods",
            "must be full method paths like /package.Service/Method",
        )?;
        check::non_zero_duration("idempotency.lease", self.lease)?;
        ensure(
            self.lease <= MAX_LEASE,
            "idempotency.lease",
            "must be at most 366 days",
        )?;
        check::non_zero_duration(
            "idempotency.in_progress_retry_after",
            self.in_progress_retry_after,
        )?;
        check::non_zero_duration("idempotency.store_retry_after", self.store_retry_after)?;
        check::non_zero("idempotency.max_body_bytes", self.max_body_bytes)?;
        check::non_zero("idempotency.max_response_bytes", self.max_response_bytes)?;
        ensure(
            (1..=MAX_KEY_LENGTH).contains(&self.max_key_length),
            "idempotency.max_key_length",
            "must be from 1 to 512",
        )?;
        ensure(
            (1..=self.max_key_length).contains(&self.min_key_length),
            "idempotency.min_key_length",
            "must be from 1 to max_key_length",
        )?;
        ensure(
            self.min_key_distinct_chars <= self.max_key_length,
            "idempotency.min_key_distinct_chars",
            "must be at most max_key_length",
        )?;
        Ok(())
    }
}

/// `/package.Service/Method`: two non-empty segments.
fn is_grpc_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    matches!(rest.split_once('/'), Some((service, method))
        if !service.is_empty() && !method.is_empty() && !method.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named() {
        let base = IdempotencyConfig::default;
        let cases = [
            (base().name(String::new()), "idempotency.name"),
            (base().methods(vec![]), "idempotency.methods"),
            (base().methods(vec!["PO ST".into()]), "idempotency.methods"),
            (
                base().grpc_methods(vec!["pkg.Svc/M".into()]),
                "idempotency.grpc_methods",
            ),
            (base().lease(Duration::ZERO), "idempotency.lease"),
            (base().max_body_bytes(0), "idempotency.max_body_bytes"),
            (base().max_key_length(513), "idempotency.max_key_length"),
            (base().min_key_length(300), "idempotency.min_key_length"),
            (
                base().min_key_distinct_chars(256),
                "idempotency.min_key_distinct_chars",
            ),
            (
                base().store_retry_after(Duration::ZERO),
                "idempotency.store_retry_after",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field_name(), field);
        }
        base().grpc_methods(vec!["/pkg.Svc/M".into()]).validate().unwrap();
    }
}
