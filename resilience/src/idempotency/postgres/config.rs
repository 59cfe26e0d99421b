//! The PostgreSQL store's configuration: plain data that can come from a
//! file or the environment, checked before any connection is made.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check};
use crate::idempotency::{check_retention, ensure};

/// PostgreSQL's identifiers hold at most 63 bytes; longer ones are cut
/// silently, so two long names could end up the same.
const MAX_IDENTIFIER: usize = 63;

/// The table's name is the stem of its sequence (`_generation`) and index
/// (`_expires_at`): it leaves room for the longer suffix.
const MAX_TABLE: usize = MAX_IDENTIFIER - "_generation".len();

/// `bytea` holds at most 1 GiB; a saved response far below that keeps a
/// claim's replay one reasonable round trip.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Configuration of a [`PostgresStore`](super::PostgresStore).
///
/// `url` is a libpq-style connection string or URL
/// (`postgres://user@host:5432/db`). It is needed by
/// [`PostgresStore::new`](super::PostgresStore::new), which makes the
/// pool; [`PostgresStore::with_pool`](super::PostgresStore::with_pool)
/// takes a pool made elsewhere (with TLS, say) and ignores it.
///
/// `schema` and `table` are spliced into SQL, so they are checked as
/// identifiers: lower-case ASCII letters, digits and `_`, not starting
/// with a digit, within PostgreSQL's 63 bytes (52 for the table, which
/// names its sequence and index too), and a schema not starting with `pg_`
/// (reserved by PostgreSQL). Nothing else reaches the SQL text.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::idempotency::PostgresStoreConfig;
///
/// let config: PostgresStoreConfig = serde_json::from_str(
///     r#"{ "url": "postgres://app@db/app", "schema": "orders", "retention": "12h" }"#,
/// )
/// .unwrap();
/// assert_eq!(config.retention, Duration::from_secs(12 * 3600));
/// assert_eq!(config.table, "idempotency_records");
/// config.validate().unwrap();
///
/// let err = PostgresStoreConfig::default().schema("x; DROP TABLE users").validate().unwrap_err();
/// assert_eq!(err.field_name(), "idempotency.postgres.schema");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresStoreConfig {
    /// Where the server is, as a connection string or URL. Required by
    /// `PostgresStore::new`. Default: unset.
    pub url: Option<String>,
    /// The schema that holds the table; the migration creates it if
    /// missing. Default `orch`.
    pub schema: String,
    /// The table of records. Default `idempotency_records`.
    pub table: String,
    /// How long a completed record is replayed after its completion (and
    /// the least time a record in progress is kept after its claim); also
    /// the longest lease. Default 24 hours; at most 366 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Connections the pool opens at most. Default 16.
    pub max_connections: usize,
    /// How long opening a connection, or waiting for a free one, may take
    /// before an operation fails as unavailable. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The largest response (body, headers and trailers) saved; a larger
    /// one is refused with `ResponseTooLarge`. Default 1 MiB, at most
    /// 256 MiB.
    pub max_response_bytes: usize,
    /// The `retry_after` of an `Unavailable` error: how soon a client is
    /// told to try again when the database cannot be reached. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub unavailable_retry_after: Duration,
}

impl Default for PostgresStoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            schema: "orch".to_owned(),
            table: "idempotency_records".to_owned(),
            retention: Duration::from_secs(24 * 60 * 60),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
            unavailable_retry_after: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for PostgresStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: logs get it without.
        f.debug_struct("PostgresStoreConfig")
            .field("url", &self.url.as_deref().map(redact_password))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("retention", &self.retention)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("unavailable_retry_after", &self.unavailable_retry_after)
            .finish()
    }
}

impl PostgresStoreConfig {
    /// Sets the connection string.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the table.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Sets the retention.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the pool's size.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets the connect and pool-wait timeout.
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets the largest response saved.
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// Sets the retry hint of `Unavailable` errors.
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.unavailable_retry_after = after;
        self
    }

    /// Rejects values that cannot work; the error names the field
    /// (`idempotency.postgres.schema`). A set `url` must parse; whether it
    /// is set at all is checked by `PostgresStore::new`, the one that needs
    /// it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            parse_url(url)?;
        }
        identifier("idempotency.postgres.schema", &self.schema, MAX_IDENTIFIER)?;
        ensure(
            !self.schema.starts_with("pg_"),
            "idempotency.postgres.schema",
            "must not start with pg_, which PostgreSQL reserves",
        )?;
        identifier("idempotency.postgres.table", &self.table, MAX_TABLE)?;
        check_retention("idempotency.postgres.retention", self.retention)?;
        check::non_zero("idempotency.postgres.max_connections", self.max_connections)?;
        check::non_zero_duration("idempotency.postgres.connect_timeout", self.connect_timeout)?;
        check::non_zero("idempotency.postgres.max_response_bytes", self.max_response_bytes)?;
        ensure(
            self.max_response_bytes <= MAX_RESPONSE_BYTES,
            "idempotency.postgres.max_response_bytes",
            "must be at most 256 MiB",
        )?;
        check::non_zero_duration(
            "idempotency.postgres.unavailable_retry_after",
            self.unavailable_retry_after,
        )
    }
}

/// The URL as `tokio-postgres` reads it, or the error naming the field.
pub(super) fn parse_url(url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    tokio_postgres::Config::from_str(url).map_err(|_| {
        ConfigError::field(
            "idempotency.postgres.url",
            "must be a PostgreSQL connection string or URL",
        )
    })
}

/// A name safe to splice into SQL between double quotes: lower-case so
/// that it reads the same unquoted in `psql`, and nothing that could end
/// the quoted identifier.
fn identifier(field: &str, name: &str, max: usize) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ensure(
        starts_well && rest_ok,
        field,
        "must be a lower-case SQL identifier: a-z or _ first, then a-z, 0-9 or _",
    )?;
    ensure(
        name.len() <= max,
        field,
        "is too long: at most 63 bytes for the schema, 52 for the table",
    )?;
    Ok(())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; a
/// key-value string's `password=…` likewise.
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_debug() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            redact_password("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
        assert_eq!(redact_password("postgres://app@db/app"), "postgres://app@db/app");
        let config = PostgresStoreConfig::default().url("postgres://a:hunter2@h/d");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn identifiers_are_checked() {
        for bad in ["", "1abc", "Orch", "a-b", "a\"b", "a b", "ä", &"a".repeat(64)] {
            assert!(identifier("f", bad, MAX_IDENTIFIER).is_err(), "{bad:?}");
        }
        for good in ["orch", "_x", "idempotency_records_2", &"a".repeat(63)] {
            assert!(identifier("f", good, MAX_IDENTIFIER).is_ok(), "{good:?}");
        }
    }
}
