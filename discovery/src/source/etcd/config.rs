//! What an etcd source or registration needs to know: where etcd is, which
//! prefix holds the service's endpoints, and how long a replica's key lives
//! without keepalives.

use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::config::check;

/// Where a service's endpoints live in etcd, as plain data (loadable from a
/// file or the environment); shared by [`EtcdSource`](super::EtcdSource)
/// and [`EtcdRegistration`](super::EtcdRegistration).
///
/// ```
/// use std::time::Duration;
/// use orch_discovery::source::etcd::EtcdConfig;
///
/// let config: EtcdConfig = serde_json::from_str(r#"{
///     "endpoints": ["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
///     "prefix": "/orch/services/orders/",
///     "lease_ttl": "15s"
/// }"#).unwrap();
/// assert_eq!(config.lease_ttl, Duration::from_secs(15));
/// config.validate().unwrap();
///
/// let err = EtcdConfig::new(["https://10.0.0.1:2379"], "/orch/services/orders/")
///     .validate()
///     .unwrap_err();
/// assert_eq!(err.field_name(), "etcd.endpoints[0]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://host:port`), tried in this order when
    /// one fails; at least one. Only plain `http`: the JSON gateway is
    /// spoken over HTTP/1.1 without TLS.
    pub endpoints: Vec<String>,
    /// The key prefix of the service (`/orch/services/orders/`); not empty
    /// and ending in `/`. Each key under it is one endpoint.
    pub prefix: String,
    /// How long a registered replica's key outlives its last keepalive (the
    /// lease's TTL); whole seconds, at least 1 s. Default 10 s: a replica
    /// that dies silently leaves the balancers within 10 s, while three
    /// keepalives (one every TTL/3) must all be lost to drop a live one.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Bound of one request to etcd (a list, a put, a keepalive, opening a
    /// watch). Default 5 s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First delay before reconnecting after etcd failed. Default 100 ms.
    #[serde(default = "default_reconnect_initial", with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay, which doubles per consecutive failure.
    /// Default 10 s.
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_reconnect_initial() -> Duration {
    Duration::from_millis(100)
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(10)
}

impl EtcdConfig {
    /// A config with the default TTL, timeout and reconnect delays.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>, prefix: impl Into<String>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            lease_ttl: default_lease_ttl(),
            request_timeout: default_request_timeout(),
            reconnect_initial: default_reconnect_initial(),
            reconnect_max: default_reconnect_max(),
        }
    }

    crate::config::setters! {
        lease_ttl: Duration,
        request_timeout: Duration,
        reconnect_initial: Duration,
        reconnect_max: Duration,
    }

    /// Checks every field; the error names the first bad one under `etcd.`
    /// (`etcd.endpoints[1]`, `etcd.prefix`, `etcd.lease_ttl`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.base_uris().map(drop)
    }

    /// The endpoints as base URIs, validating the whole config on the way.
    pub(crate) fn base_uris(&self) -> Result<Vec<Uri>, ConfigError> {
        let within = |e: ConfigError| e.within("etcd");
        check::that(
            !self.endpoints.is_empty(),
            "endpoints",
            "must name at least one etcd client URL",
        )
        .map_err(within)?;
        let uris = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, url)| parse_endpoint(&format!("endpoints[{i}]"), url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(within)?;
        check::that(!self.prefix.is_empty(), "prefix", "must not be empty").map_err(within)?;
        check::that(
            self.prefix.ends_with('/'),
            "prefix",
            "must end in `/` (so that `/orders` does not also match `/orders-v2`)",
        )
        .map_err(within)?;
        check::that(
            self.lease_ttl >= Duration::from_secs(1),
            "lease_ttl",
            "must be at least 1s",
        )
        .map_err(within)?;
        check::at_most_a_year("lease_ttl", self.lease_ttl).map_err(within)?;
        check::that(
            self.lease_ttl.subsec_nanos() == 0,
            "lease_ttl",
            "must be a whole number of seconds (etcd's lease unit)",
        )
        .map_err(within)?;
        check::non_zero_duration("request_timeout", self.request_timeout).map_err(within)?;
        check::non_zero_duration("reconnect_initial", self.reconnect_initial).map_err(within)?;
        check::non_zero_duration("reconnect_max", self.reconnect_max).map_err(within)?;
        check::that(
            self.reconnect_max >= self.reconnect_initial,
            "reconnect_max",
            "must be at least reconnect_initial",
        )
        .map_err(within)?;
        Ok(uris)
    }
}

/// `http://host:port` with nothing after the authority but an optional `/`.
fn parse_endpoint(field: &str, url: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::field(field, "must be a URL such as http://127.0.0.1:2379"))?;
    check::that(
        uri.scheme_str() == Some("http"),
        field,
        "must use the http scheme (TLS is not supported)",
    )?;
    check::that(uri.authority().is_some(), field, "must name a host")?;
    check::that(
        matches!(uri.path(), "" | "/") && uri.query().is_none(),
        field,
        "must have no path or query (the client URL only)",
    )?;
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EtcdConfig {
        EtcdConfig::new(["http://127.0.0.1:2379"], "/orch/services/api/")
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(config().validate().is_ok());
        let cases = [
            (
                EtcdConfig {
                    endpoints: vec![],
                    ..config()
                },
                "etcd.endpoints",
            ),
            (
                EtcdConfig {
                    endpoints: vec!["http://127.0.0.1:2379".into(), "127.0.0.1:2379".into()],
                    ..config()
                },
                "etcd.endpoints[1]",
            ),
            (
                EtcdConfig {
                    endpoints: vec!["http://h:1/v3".into()],
                    ..config()
                },
                "etcd.endpoints[0]",
            ),
            (
                EtcdConfig {
                    prefix: String::new(),
                    ..config()
                },
                "etcd.prefix",
            ),
            (
                EtcdConfig {
                    prefix: "/orch/api".into(),
                    ..config()
                },
                "etcd.prefix",
            ),
            (config().lease_ttl(Duration::from_millis(500)), "etcd.lease_ttl"),
            (config().lease_ttl(Duration::from_millis(1500)), "etcd.lease_ttl"),
            (
                config().lease_ttl(Duration::from_secs(366 * 24 * 3600)),
                "etcd.lease_ttl",
            ),
            (config().request_timeout(Duration::ZERO), "etcd.request_timeout"),
            (
                config().reconnect_max(Duration::from_millis(10)),
                "etcd.reconnect_max",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(
                config.validate().map_err(|e| e.field_name().to_owned()),
                Err(field.to_owned())
            );
        }
    }
}
