//! Which version a request asked for: from a header (also gRPC metadata,
//! which travels as HTTP/2 headers), a path prefix (`/v2/...`) or a media
//! type (`application/vnd.NAME.v2+json`, or a `version` parameter), in a
//! configurable order of precedence; a request that names none gets the
//! pin or the default.

use std::{fmt, sync::Arc, time::SystemTime};

use http::{HeaderName, Uri, header, request::Parts, uri::PathAndQuery};

use crate::{ApiVersion, Lifecycle, VersionError, VersionSet};

/// Where a version can be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The version header (`Api-Version` by default; for gRPC the metadata
    /// key of the same name).
    Header,
    /// The first path segment: `/v2/orders`, `/2024-06-20/orders`.
    PathPrefix,
    /// `Accept`: `application/vnd.NAME.v2+json` or `…; version=2`.
    MediaType,
}

impl Source {
    /// `"header"`, `"path"` or `"media_type"`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::PathPrefix => "path",
            Self::MediaType => "media_type",
        }
    }
}

/// Names the operation of a request for per-operation lifecycles
/// (`"POST /orders"`).
pub type OperationFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// How versions are read from requests, and against which set.
///
/// ```
/// use orch_versioning::{Lifecycle, Negotiation, Source, VersionSet};
///
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::Stable)
///     .version("2", Lifecycle::Stable)
///     .build()
///     .unwrap();
/// let negotiation = Negotiation::new(set)
///     .precedence([Source::PathPrefix, Source::Header])
///     .build()
///     .unwrap();
/// let (mut parts, ()) = http::Request::get("/v1/orders").header("api-version", "2").body(()).unwrap().into_parts();
/// let chosen = negotiation.negotiate(&mut parts).unwrap();
/// assert_eq!(chosen.version.to_string(), "1", "the path comes first");
/// assert_eq!(parts.uri.path(), "/orders", "and is stripped for the router");
/// ```
#[derive(Clone)]
pub struct Negotiation {
    set: Arc<VersionSet>,
    precedence: Vec<Source>,
    header: HeaderName,
    strip_path_prefix: bool,
    operation: Option<OperationFn>,
}

impl fmt::Debug for Negotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiation")
            .field("set", &self.set)
            .field("precedence", &self.precedence)
            .field("header", &self.header)
            .field("strip_path_prefix", &self.strip_path_prefix)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Negotiation`].
pub struct NegotiationBuilder {
    set: VersionSet,
    precedence: Vec<Source>,
    header: String,
    strip_path_prefix: bool,
    operation: Option<OperationFn>,
}

impl Negotiation {
    /// Negotiation against `set`: header, then path, then media type; the
    /// `Api-Version` header; path prefixes stripped.
    #[allow(
        clippy::new_ret_no_self,
        reason = "a builder, as the name of the first step says"
    )]
    pub fn new(set: VersionSet) -> NegotiationBuilder {
        NegotiationBuilder {
            set,
            precedence: vec![Source::Header, Source::PathPrefix, Source::MediaType],
            header: "api-version".to_owned(),
            strip_path_prefix: true,
            operation: None,
        }
    }

    /// The version set.
    pub fn set(&self) -> &VersionSet {
        &self.set
    }

    /// The version header's name (lower case).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The version of a request, its lifecycle, and where it came from; a
    /// path prefix is stripped from `parts.uri` when configured.
    pub fn negotiate(&self, parts: &mut Parts) -> Result<Negotiated, Rejection> {
        self.negotiate_at(parts, SystemTime::now())
    }

    /// [`negotiate`](Self::negotiate) as of `now` (for sunsets).
    pub fn negotiate_at(&self, parts: &mut Parts, now: SystemTime) -> Result<Negotiated, Rejection> {
        let mut named = None;
        for source in &self.precedence {
            if let Some(text) = self.read(*source, parts)? {
                named = Some((*source, text));
                break;
            }
        }
        let (version, source) = match named {
            Some((source, version)) => (version, Some(source)),
            None => (self.set.unnamed(parts), None),
        };
        let operation = self.operation.as_ref().and_then(|name| name(parts));
        let Some(lifecycle) = self.set.lifecycle(version, operation.as_deref()) else {
            return Err(Rejection::Unsupported {
                version,
                source: source.unwrap_or(Source::Header),
            });
        };
        if lifecycle.is_gone(now) {
            return Err(Rejection::Gone {
                version,
                link: lifecycle.link_url().map(str::to_owned),
            });
        }
        // Stripped whichever source won, so that `/v2/orders` reaches the
        // `/orders` route even when a header of higher precedence chose.
        if self.strip_path_prefix
            && self.precedence.contains(&Source::PathPrefix)
            && version_segment(parts).is_some()
        {
            strip_first_segment(&mut parts.uri);
        }
        Ok(Negotiated {
            version,
            source,
            lifecycle: lifecycle.clone(),
        })
    }

    /// The version `source` names, if it names one.
    fn read(&self, source: Source, parts: &Parts) -> Result<Option<ApiVersion>, Rejection> {
        let malformed = |value: &str, reason: String| Rejection::Malformed {
            source,
            value: value.chars().take(64).collect(),
            reason,
        };
        match source {
            Source::Header => {
                let Some(value) = parts.headers.get(&self.header) else {
                    return Ok(None);
                };
                let text = value
                    .to_str()
                    .map_err(|_| malformed("<not visible ASCII>", "not visible ASCII".into()))?;
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: crate::ParseVersionError| malformed(text, e.reason.into()))
            }
            Source::PathPrefix => {
                let Some(segment) = version_segment(parts) else {
                    return Ok(None);
                };
                segment
                    .parse()
                    .map(Some)
                    .map_err(|e: crate::ParseVersionError| malformed(segment, e.reason.into()))
            }
            Source::MediaType => {
                for value in parts.headers.get_all(header::ACCEPT) {
                    let Ok(text) = value.to_str() else { continue };
                    for range in text.split(',') {
                        if let Some(version) = media_type_version(range, self.set.name()) {
                            return version
                                .parse()
                                .map(Some)
                                .map_err(|e: crate::ParseVersionError| malformed(version, e.reason.into()));
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

impl NegotiationBuilder {
    /// The sources to read, first match wins; sources not listed are
    /// ignored.
    pub fn precedence(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.precedence = sources.into_iter().collect();
        self
    }

    /// The version header's name (default `api-version`).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// Whether `/v2/orders` reaches the handler as `/orders` (default
    /// yes, so one router serves every version).
    pub fn strip_path_prefix(mut self, strip: bool) -> Self {
        self.strip_path_prefix = strip;
        self
    }

    /// Names each request's operation, for the set's per-operation
    /// lifecycles.
    pub fn operation(mut self, name: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.operation = Some(Arc::new(name));
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Negotiation, VersionError> {
        if self.precedence.is_empty() {
            return Err(VersionError::field(
                "precedence",
                "no source to read a version from",
            ));
        }
        for (i, source) in self.precedence.iter().enumerate() {
            if self.precedence[..i].contains(source) {
                return Err(VersionError::field(
                    "precedence",
                    format!("{source:?} is listed twice"),
                ));
            }
        }
        let header = HeaderName::try_from(self.header.to_ascii_lowercase())
            .map_err(|_| VersionError::field("header", format!("{:?} is not a header name", self.header)))?;
        Ok(Negotiation {
            set: Arc::new(self.set),
            precedence: self.precedence,
            header,
            strip_path_prefix: self.strip_path_prefix,
            operation: self.operation,
        })
    }
}

/// The version chosen for a request; the versioning layer puts it in the
/// request's extensions for handlers (`Extension<Negotiated>` in axum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The version served.
    pub version: ApiVersion,
    /// Where the request named it; `None` for the pin or the default.
    pub source: Option<Source>,
    /// Its lifecycle (for this operation).
    pub lifecycle: Lifecycle,
}

/// Why a request's version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a version at all: `400` (`406` from `Accept`).
    Malformed {
        /// Where it was read.
        source: Source,
        /// What was sent (at most 64 characters).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A version this API does not have: `400` (`406` from `Accept`).
    Unsupported {
        /// The version asked for.
        version: ApiVersion,
        /// Where it was read.
        source: Source,
    },
    /// Removed, or past its sunset: `410 Gone`.
    Gone {
        /// The version asked for.
        version: ApiVersion,
        /// The migration notes, if declared.
        link: Option<String>,
    },
}

impl Rejection {
    /// A short label for metrics: `malformed`, `unsupported`, `gone`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::Unsupported { .. } => "unsupported",
            Self::Gone { .. } => "gone",
        }
    }
}

/// The version in one media range of `Accept` for the API `name`:
/// `application/vnd.NAME.v2+json` or any type with `version=2`.
fn media_type_version<'a>(range: &'a str, name: &str) -> Option<&'a str> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?;
    let subtype = media.split_once('/')?.1;
    if let Some(rest) = subtype
        .strip_prefix("vnd.")
        .and_then(|s| s.strip_prefix(name)?.strip_prefix('.'))
    {
        let version = rest.split_once('+').map_or(rest, |(version, _suffix)| version);
        return Some(version);
    }
    parts.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("version")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The first path segment if it is shaped like a version: `/orders` names
/// none, `/v7` names 7 even if the API has no 7, `/2024-06-20` a date.
fn version_segment(parts: &Parts) -> Option<&str> {
    let segment = parts.uri.path().trim_start_matches('/').split('/').next()?;
    let bytes = segment.as_bytes();
    let shaped = bytes.len() > 1
        && (matches!(bytes[0], b'v' | b'V') && bytes[1].is_ascii_digit()
            || bytes.len() == 10 && bytes[0].is_ascii_digit() && bytes[4] == b'-');
    shaped.then_some(segment)
}

/// `/v2/orders?x` → `/orders?x`; `/v2` → `/`.
fn strip_first_segment(uri: &mut Uri) {
    let path = uri.path();
    let rest = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, rest)| rest);
    let stripped = match uri.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    let mut builder = http::uri::Parts::from(uri.clone());
    if let Ok(path_and_query) = PathAndQuery::try_from(stripped) {
        builder.path_and_query = Some(path_and_query);
        if let Ok(new) = Uri::from_parts(builder) {
            *uri = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ranges_name_versions_two_ways() {
        assert_eq!(
            media_type_version("application/vnd.orders.v2+json", "orders"),
            Some("v2")
        );
        assert_eq!(
            media_type_version("application/vnd.orders.2024-06-20", "orders"),
            Some("2024-06-20")
        );
        assert_eq!(
            media_type_version("application/json; version=\"3\"", "orders"),
            Some("3")
        );
        assert_eq!(
            media_type_version("application/vnd.users.v2+json", "orders"),
            None
        );
        assert_eq!(media_type_version("text/html;q=0.9", "orders"), None);
    }

    #[test]
    fn stripping_keeps_the_query() {
        let mut uri: Uri = "/v2/orders/7?expand=items".parse().unwrap();
        strip_first_segment(&mut uri);
        assert_eq!(uri, "/orders/7?expand=items");
        let mut uri: Uri = "/v2".parse().unwrap();
        strip_first_segment(&mut uri);
        assert_eq!(uri, "/");
    }
}
