//! What the server layer writes on every answer of one version (the
//! version header, `Deprecation`, `Sunset`, `Link`) and the labels it
//! counts it under, built once per version when the layer is built.
//!
//! Formatting them per request (the version as text, an HTTP-date, the
//! `Link` value, each label an owned `String`) was most of the layer's cost
//! over a bare service; built once, a request clones reference-counted
//! values instead.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use metrics::SharedString;

use crate::{ApiVersion, Lifecycle, Negotiated, Negotiation};

/// The headers and metric labels of the answers of one version under one
/// lifecycle.
#[derive(Debug)]
pub(crate) struct Echo {
    version: ApiVersion,
    lifecycle: Lifecycle,
    /// The version as a metric label.
    pub(crate) label: SharedString,
    /// The version header and the lifecycle's headers.
    pub(crate) headers: HeaderMap,
}

impl Echo {
    fn new(header: &HeaderName, version: ApiVersion, lifecycle: Lifecycle) -> Self {
        let text = version.to_string();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(header.clone(), value);
        }
        lifecycle.write_headers(&mut headers);
        Self {
            version,
            lifecycle,
            label: SharedString::from(Arc::<str>::from(text)),
            headers,
        }
    }
}

/// The echo of every declared version, and the API's name as a label.
#[derive(Debug)]
pub(crate) struct Echoes {
    /// The API's name as a metric label.
    pub(crate) api: SharedString,
    header: HeaderName,
    by_version: Vec<Arc<Echo>>,
}

impl Echoes {
    pub(crate) fn new(negotiation: &Negotiation) -> Self {
        let set = negotiation.set();
        let header = negotiation.header().clone();
        let by_version = set
            .versions()
            .map(|(version, lifecycle)| Arc::new(Echo::new(&header, version, lifecycle.clone())))
            .collect();
        Self {
            api: SharedString::from(Arc::<str>::from(set.name())),
            header,
            by_version,
        }
    }

    /// The echo of `negotiated`: the one built for its version, or, when
    /// an operation has a lifecycle of its own, one built now.
    pub(crate) fn of(&self, negotiated: &Negotiated) -> Arc<Echo> {
        self.by_version
            .iter()
            .find(|echo| echo.version == negotiated.version && echo.lifecycle == negotiated.lifecycle)
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(Echo::new(
                    &self.header,
                    negotiated.version,
                    negotiated.lifecycle.clone(),
                ))
            })
    }
}
