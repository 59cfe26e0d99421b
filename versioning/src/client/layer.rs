//! The client layer, its builder, and the state its services share.

use std::{fmt, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue, header, request::Parts};
use tower_layer::Layer;

use super::{ClientVersioning, Deprecations};
use crate::{ApiVersion, VersionError};

/// Names the operation of a request in warnings, metrics and
/// [`Deprecations`] (`"GET /orders"` by default).
pub type ClientOperationFn = Arc<dyn Fn(&Parts) -> String + Send + Sync>;

/// Where the client names its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SendAs {
    /// The version header (`api-version: 2`); for tonic clients this is
    /// gRPC metadata.
    #[default]
    Header,
    /// A media type in `Accept`: `application/vnd.NAME.v2+json`
    /// (`application/vnd.NAME.2024-06-20+json` for a dated version).
    MediaType,
}

/// Sends the version a client was written against and reports the
/// server's deprecation notices for it.
///
/// One layer is one client of one API: its services (and their clones)
/// share the [`Deprecations`] they have seen, so the warning for an
/// operation is logged once per layer, however many tasks call it.
///
/// A request that already names a version (the header is set, or an
/// `Accept` range names one for this API) is sent as it is, so one call
/// can try a newer version without a second client.
///
/// ```
/// use orch_versioning::{ClientVersioningLayer, SendAs};
///
/// let layer = ClientVersioningLayer::builder("orders", "v2")
///     .send_as(SendAs::MediaType)
///     // Paths carry ids: name operations by route, not by path, so that
///     // `/orders/7` and `/orders/8` warn once and count as one label.
///     .operation(|parts| match parts.uri.path().rsplit_once('/') {
///         Some(("/orders", _id)) => format!("{} /orders/{{id}}", parts.method),
///         _ => format!("{} {}", parts.method, parts.uri.path()),
///     })
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), orch_versioning::VersionError>(())
/// ```
#[derive(Clone)]
pub struct ClientVersioningLayer {
    shared: Arc<Shared>,
}

/// Builds a [`ClientVersioningLayer`]; [`build`](Self::build) checks
/// every field.
pub struct ClientVersioningBuilder {
    api: String,
    version: String,
    send_as: SendAs,
    header: String,
    suffix: String,
    operation: Option<ClientOperationFn>,
}

/// What every service of one layer shares: its configuration, with the
/// header values computed once, and what it has seen.
pub(crate) struct Shared {
    pub(crate) api: String,
    pub(crate) version: ApiVersion,
    pub(crate) header: HeaderName,
    stamp: Stamp,
    operation: Option<ClientOperationFn>,
    pub(crate) seen: Deprecations,
}

enum Stamp {
    Header(HeaderValue),
    Accept(HeaderValue),
}

impl ClientVersioningLayer {
    /// Starts a layer for the API `api` (its name in
    /// `application/vnd.NAME.v2+json` and in metrics) pinned to `version`
    /// (`"2"`, `"v2"`, `"2.1"`, `"2024-06-20"`).
    pub fn builder(api: impl Into<String>, version: impl Into<String>) -> ClientVersioningBuilder {
        ClientVersioningBuilder {
            api: api.into(),
            version: version.into(),
            send_as: SendAs::Header,
            header: "api-version".to_owned(),
            suffix: "json".to_owned(),
            operation: None,
        }
    }

    /// The version this client sends.
    pub fn version(&self) -> ApiVersion {
        self.shared.version
    }

    /// What the services of this layer have seen of deprecations.
    pub fn deprecations(&self) -> Deprecations {
        self.shared.seen.clone()
    }
}

impl fmt::Debug for ClientVersioningLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientVersioningLayer")
            .field(&self.shared)
            .finish()
    }
}

impl<S> Layer<S> for ClientVersioningLayer {
    type Service = ClientVersioning<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientVersioning {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl ClientVersioningBuilder {
    /// Where the version goes (default: the header).
    pub fn send_as(mut self, send_as: SendAs) -> Self {
        self.send_as = send_as;
        self
    }

    /// The version header's name (default `api-version`, as the server's
    /// [`Negotiation`](crate::Negotiation)): sent with
    /// [`SendAs::Header`], and read from answers for the version served.
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// The structured-syntax suffix of the media type (default `json`:
    /// `application/vnd.NAME.v2+json`).
    pub fn media_type_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Names each request's operation (default: method and path,
    /// `"GET /orders"`). Every distinct name is one warning and one
    /// metrics label: paths with ids in them want a function that names
    /// the route instead.
    pub fn operation(mut self, name: impl Fn(&Parts) -> String + Send + Sync + 'static) -> Self {
        self.operation = Some(Arc::new(name));
        self
    }

    /// Checks every field and builds the layer.
    pub fn build(self) -> Result<ClientVersioningLayer, VersionError> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !token(&self.api) {
            return Err(VersionError::field(
                "api",
                format!("{:?}: use letters, digits, '-', '_' or '.'", self.api),
            ));
        }
        let version: ApiVersion = self
            .version
            .parse()
            .map_err(|e: crate::ParseVersionError| VersionError::field("version", e.to_string()))?;
        let header = HeaderName::try_from(self.header.to_ascii_lowercase())
            .map_err(|_| VersionError::field("header", format!("{:?} is not a header name", self.header)))?;
        if !token(&self.suffix) {
            return Err(VersionError::field(
                "media_type_suffix",
                format!("{:?}: use letters, digits, '-', '_' or '.'", self.suffix),
            ));
        }
        let text = match (self.send_as, version) {
            (SendAs::Header, _) => version.to_string(),
            (SendAs::MediaType, ApiVersion::Semantic { .. }) => {
                format!("application/vnd.{}.v{version}+{}", self.api, self.suffix)
            }
            (SendAs::MediaType, ApiVersion::Date(_)) => {
                format!("application/vnd.{}.{version}+{}", self.api, self.suffix)
            }
        };
        // Every part was checked to be a token or a version above.
        let value = HeaderValue::from_str(&text)
            .map_err(|_| VersionError::field("version", format!("{text:?} is not a header value")))?;
        let stamp = match self.send_as {
            SendAs::Header => Stamp::Header(value),
            SendAs::MediaType => Stamp::Accept(value),
        };
        Ok(ClientVersioningLayer {
            shared: Arc::new(Shared {
                api: self.api,
                version,
                header,
                stamp,
                operation: self.operation,
                seen: Deprecations::default(),
            }),
        })
    }
}

impl Shared {
    /// Names the version in `headers` unless the request already does.
    pub(crate) fn stamp(&self, headers: &mut HeaderMap) {
        match &self.stamp {
            Stamp::Header(value) => {
                if !headers.contains_key(&self.header) {
                    headers.insert(self.header.clone(), value.clone());
                }
            }
            Stamp::Accept(value) => {
                let named = headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|range| names_version(range, &self.api));
                if !named {
                    headers.append(header::ACCEPT, value.clone());
                }
            }
        }
    }

    /// The operation's name for warnings, metrics and the snapshot.
    pub(crate) fn operation(&self, parts: &Parts) -> String {
        match &self.operation {
            Some(name) => name(parts),
            None => format!("{} {}", parts.method, parts.uri.path()),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (send_as, value) = match &self.stamp {
            Stamp::Header(value) => ("header", value),
            Stamp::Accept(value) => ("accept", value),
        };
        f.debug_struct("Shared")
            .field("api", &self.api)
            .field("version", &self.version)
            .field("header", &self.header)
            .field(send_as, value)
            .field("operation", &self.operation.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether one `Accept` media range names a version of `api`, the way the
/// server's negotiation reads it: `application/vnd.API.…` or a `version`
/// parameter.
fn names_version(range: &str, api: &str) -> bool {
    let mut parts = range.split(';').map(str::trim);
    let vendor = parts
        .next()
        .and_then(|media| media.split_once('/'))
        .and_then(|(_, subtype)| subtype.strip_prefix("vnd."))
        .and_then(|rest| rest.strip_prefix(api))
        .is_some_and(|rest| rest.starts_with('.'));
    vendor
        || parts.any(|param| {
            param
                .split_once('=')
                .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("version"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<ClientVersioningLayer, VersionError>) -> String {
        match result {
            Err(VersionError::InvalidField { field, .. }) => field,
            Ok(layer) => panic!("built {layer:?}"),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let b = ClientVersioningLayer::builder;
        assert_eq!(field(b("", "1").build()), "api");
        assert_eq!(field(b("or ders", "1").build()), "api");
        assert_eq!(field(b("orders", "two").build()), "version");
        assert_eq!(field(b("orders", "1").header("api version").build()), "header");
        assert_eq!(
            field(b("orders", "1").media_type_suffix("js on").build()),
            "media_type_suffix"
        );
    }

    #[test]
    fn accept_ranges_that_name_a_version() {
        assert!(names_version("application/vnd.orders.v2+json", "orders"));
        assert!(names_version(" application/json; version=2", "orders"));
        assert!(!names_version("application/vnd.ordersx.v2+json", "orders"));
        assert!(!names_version("application/json;q=0.9", "orders"));
    }
}
