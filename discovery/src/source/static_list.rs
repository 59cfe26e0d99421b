//! A fixed list of endpoints, from code or configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Endpoint, Registry, RegistryError, Weight};

/// A fixed set of endpoints, as plain data: write it in code or load it
/// from a file or the environment, then turn it into a [`Registry`] (or
/// apply it to one, for a reload).
///
/// ```
/// use orch_discovery::{StaticSource, RegistryError};
///
/// let source: StaticSource = serde_json::from_str(r#"{"endpoints": [
///     {"id": "api-1", "address": "127.0.0.1:8081"},
///     {"id": "api-2", "address": "127.0.0.1:8082", "weight": 3, "zone": "b",
///      "labels": {"track": "canary"}}
/// ]}"#).unwrap();
/// let registry = source.registry("api").unwrap();
/// assert_eq!(registry.len(), 2);
/// assert_eq!(registry.get(&"api-2".into()).unwrap().label("track"), Some("canary"));
///
/// let bad: StaticSource = serde_json::from_str(r#"{"endpoints": [
///     {"id": "api-1", "address": "127.0.0.1:8081", "weight": 0}
/// ]}"#).unwrap();
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid endpoints[api-1].weight: must be at least 1 (remove the endpoint to send it no traffic)",
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticSource {
    /// The endpoints; ids must be unique.
    pub endpoints: Vec<StaticEndpoint>,
}

/// One endpoint of a [`StaticSource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    /// Its id, unique in the source and not empty.
    pub id: String,
    /// Where it answers.
    pub address: SocketAddr,
    /// Its relative share of traffic; at least 1. Default 1.
    #[serde(default = "weight_one")]
    pub weight: u32,
    /// Its zone, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The version it serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn weight_one() -> u32 {
    1
}

// ===== impl StaticSource =====

impl StaticSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: StaticEndpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Checks every endpoint; the error names the first bad field
    /// (`endpoints[api-1].weight`, or `endpoints[api-1].id` for a repeated id).
    pub fn validate(&self) -> Result<(), RegistryError> {
        let endpoints = self.to_endpoints()?;
        let mut ids: Vec<_> = endpoints.iter().map(Endpoint::id).collect();
        ids.sort_unstable();
        match ids.windows(2).find(|w| w[0] == w[1]) {
            Some(pair) => Err(RegistryError::field(
                format!("endpoints[{}].id", pair[0]),
                "appears more than once",
            )),
            None => Ok(()),
        }
    }

    /// The endpoints, each validated (a repeated id is left to the registry,
    /// which refuses it with [`RegistryError::DuplicateId`]).
    pub fn to_endpoints(&self) -> Result<Vec<Endpoint>, RegistryError> {
        self.endpoints.iter().map(StaticEndpoint::to_endpoint).collect()
    }

    /// A registry named `name` holding exactly these endpoints; refused with
    /// the first bad field or [`RegistryError::DuplicateId`].
    pub fn registry(&self, name: impl Into<Arc<str>>) -> Result<Registry, RegistryError> {
        Registry::from_endpoints(name, self.to_endpoints()?)
    }

    /// Makes `registry` hold exactly these endpoints (a reload), emitting
    /// only the difference; nothing changes if the source is invalid.
    /// Returns the number of changes.
    pub fn apply_to(&self, registry: &Registry) -> Result<usize, RegistryError> {
        registry.replace_all(self.to_endpoints()?)
    }
}

// ===== impl StaticEndpoint =====

impl StaticEndpoint {
    /// An endpoint with weight 1, no zone, no version and no labels.
    pub fn new(id: impl Into<String>, address: SocketAddr) -> Self {
        Self {
            id: id.into(),
            address,
            weight: 1,
            zone: None,
            version: None,
            labels: BTreeMap::new(),
        }
    }

    /// The endpoint, or an error naming the bad field.
    pub fn to_endpoint(&self) -> Result<Endpoint, RegistryError> {
        if self.id.is_empty() {
            return Err(RegistryError::field("endpoints[].id", "must not be empty"));
        }
        let weight = Weight::new(self.weight).map_err(|_| {
            RegistryError::field(
                format!("endpoints[{}].weight", self.id),
                "must be at least 1 (remove the endpoint to send it no traffic)",
            )
        })?;
        let mut e = Endpoint::new(self.id.as_str(), self.address).with_weight(weight);
        if let Some(zone) = &self.zone {
            e = e.with_zone(zone.as_str());
        }
        if let Some(version) = &self.version {
            e = e.with_version(version.as_str());
        }
        for (k, v) in &self.labels {
            e = e.with_label(k.clone(), v.clone());
        }
        Ok(e)
    }
}

impl From<&Endpoint> for StaticEndpoint {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id().to_string(),
            address: e.address(),
            weight: e.weight().get(),
            zone: e.zone().map(str::to_owned),
            version: e.version().map(str::to_owned),
            labels: e.labels().clone(),
        }
    }
}
