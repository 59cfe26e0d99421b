//! Configuration of the Redis store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RedisStore;
use crate::config::{ConfigError, check};
use crate::idempotency::{MAX_RETENTION, ensure};

/// The largest response accepted as `max_response_bytes`: Redis holds at
/// most 512 MiB in one value, and the encoding adds a little.
const MAX_RESPONSE_LIMIT: usize = 256 << 20;

/// Configuration of a [`RedisStore`], as plain data that can be loaded from
/// a file or the environment.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::idempotency::redis::RedisStoreConfig;
///
/// let config: RedisStoreConfig = serde_json::from_str(
///     r#"{ "url": "redis://127.0.0.1:6379/", "key_prefix": "payments:idem:", "retention": "12h" }"#,
/// )
/// .unwrap();
/// assert_eq!(config.retention, Duration::from_secs(12 * 3600));
/// config.validate().unwrap();
///
/// let err = RedisStoreConfig::default().key_prefix("").validate().unwrap_err();
/// assert_eq!(err.field_name(), "idempotency.redis.key_prefix");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// The server, as a `redis://` or `rediss://` URL (`unix://` for a
    /// socket). Needed by [`build`](Self::build); ignored by
    /// [`build_with_client`](Self::build_with_client). Default none.
    pub url: Option<String>,
    /// Put before every record's key, so the store's keys stay apart from
    /// the application's and one Redis serves several services. Keep hash
    /// tags (`{…}`) out of it on a Cluster unless every record should land
    /// on one slot. Default `orch:idempotency:`; at most 256 bytes.
    pub key_prefix: String,
    /// How long a completed record is replayed after its completion (and
    /// the least time a record in progress is kept after its claim): the
    /// key's TTL. Also the longest lease a claim may take. Default 24
    /// hours, as Stripe keeps keys; at most 366 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The largest response (body, headers and trailers) saved; a larger
    /// one is refused with `ResponseTooLarge`. Default 1 MiB, at most
    /// 256 MiB.
    pub max_response_bytes: usize,
    /// How long to wait for a connection to the server. Default 1 second.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for the answer to one operation; past it the
    /// operation fails with `Unavailable`. Default 1 second.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// The `retry_after` of an `Unavailable` error, for the `Retry-After`
    /// of the `503` the layer sends. Default 1 second.
    #[serde(with = "humantime_serde")]
    pub unavailable_retry_after: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "orch:idempotency:".to_owned(),
            retention: Duration::from_secs(24 * 60 * 60),
            max_response_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            unavailable_retry_after: Duration::from_secs(1),
        }
    }
}

impl RedisStoreConfig {
    /// Sets the server's URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the key prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the retention.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the largest response saved.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the retry hint of `Unavailable` errors.
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.unavailable_retry_after = after;
        self
    }

    /// Rejects values that cannot work; the error names the field
    /// (`idempotency.redis.key_prefix`). A missing `url` is not an error
    /// here: [`build`](Self::build) needs it, `build_with_client` does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (self.url.as_ref()).is_none_or(|url| ::redis::Client::open(url.as_str()).is_ok()),
            "idempotency.redis.url",
            "must be a redis:// or unix:// URL (rediss:// needs a TLS feature of the redis crate)",
        )?;
        ensure(
            (1..=256).contains(&self.key_prefix.len()),
            "idempotency.redis.key_prefix",
            "must be 1 to 256 bytes, to keep the store's keys apart from others",
        )?;
        // Below a millisecond PEXPIRE cannot express it.
        ensure(
            (Duration::from_millis(1)..=MAX_RETENTION).contains(&self.retention),
            "idempotency.redis.retention",
            "must be from 1 ms to 366 days",
        )?;
        check::non_zero("idempotency.redis.max_response_bytes", self.max_response_bytes)?;
        ensure(
            self.max_response_bytes <= MAX_RESPONSE_LIMIT,
            "idempotency.redis.max_response_bytes",
            "must be at most 256 MiB (Redis holds 512 MiB per value)",
        )?;
        check::non_zero_duration("idempotency.redis.connect_timeout", self.connect_timeout)?;
        check::non_zero_duration("idempotency.redis.response_timeout", self.response_timeout)?;
        check::non_zero_duration(
            "idempotency.redis.unavailable_retry_after",
            self.unavailable_retry_after,
        )
    }

    /// Validates the config and builds a store for the server at `url`.
    /// Nothing is connected yet: the first operation connects, so a
    /// service starts while Redis is down and its requests get
    /// `Unavailable` until it is back.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        self.validate()?;
        let Some(url) = self.url.as_deref() else {
            return Err(ConfigError::field(
                "idempotency.redis.url",
                "is required unless a client is passed (build_with_client)",
            ));
        };
        let client = ::redis::Client::open(url)
            .map_err(|_| ConfigError::field("idempotency.redis.url", "is not a Redis connection URL"))?;
        Ok(RedisStore::new(client, self))
    }

    /// Validates the config and builds a store that connects with
    /// `client` (TLS, credentials, RESP3, as the client was set up);
    /// `url` is ignored.
    pub fn build_with_client(self, client: ::redis::Client) -> Result<RedisStore, ConfigError> {
        self.validate()?;
        Ok(RedisStore::new(client, self))
    }
}
