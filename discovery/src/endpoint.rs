//! What the registry knows about one place a service answers: its id, address,
//! weight, zone, version and labels.
//!
//! The registry, its backends and the balancer all speak in [`Endpoint`]s and
//! [`EndpointChange`]s, so a backend (static list, supervisor events, etcd)
//! never needs to know which balancer consumes it, and the reverse.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// The stable name of one endpoint, unique within a registry.
///
/// For endpoints fed by the supervisor it is the instance id
/// (`root/api-2`), which survives restarts of the instance; a restarted
/// instance that comes back on a new port is an *update* of the same id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(Arc<str>);

impl EndpointId {
    /// An id from any string.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for EndpointId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for EndpointId {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The relative share of traffic an endpoint should receive; at least 1.
///
/// Weights are relative: two endpoints of weight 1 and 3 receive a quarter
/// and three quarters of the picks. Every balancer honours them (tower's P2C
/// ignores them, tower issue 696). The default is 1, as in Envoy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Weight(NonZeroU32);

impl Weight {
    /// Weight 1, the default.
    pub const ONE: Weight = Weight(NonZeroU32::MIN);

    /// A weight, or an error for zero.
    ///
    /// ```
    /// use orch_discovery::Weight;
    /// assert_eq!(Weight::new(3).map(Weight::get), Ok(3));
    /// assert!(Weight::new(0).is_err());
    /// ```
    pub const fn new(weight: u32) -> Result<Self, ZeroWeight> {
        match NonZeroU32::new(weight) {
            Some(w) => Ok(Self(w)),
            None => Err(ZeroWeight),
        }
    }

    /// The weight as a number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<u32> for Weight {
    type Error = ZeroWeight;

    fn try_from(weight: u32) -> Result<Self, ZeroWeight> {
        Self::new(weight)
    }
}

/// A weight of zero was given; an endpoint that should get no traffic is
/// removed from the registry instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("endpoint weight must be at least 1 (remove the endpoint to send it no traffic)")]
pub struct ZeroWeight;

/// One place a service answers.
///
/// Built with [`Endpoint::new`] and the `with_*` setters:
///
/// ```
/// use orch_discovery::{Endpoint, Weight};
/// let e = Endpoint::new("api-1", "127.0.0.1:8080".parse().unwrap())
///     .with_weight(Weight::new(2).unwrap())
///     .with_zone("eu-west-1a")
///     .with_label("track", "canary");
/// assert_eq!(e.weight().get(), 2);
/// assert_eq!(e.label("track"), Some("canary"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    id: EndpointId,
    address: SocketAddr,
    weight: Weight,
    zone: Option<Arc<str>>,
    version: Option<Arc<str>>,
    // Shared: labels are read by every subscriber and rarely change, so a
    // change notification clones a pointer, not a map.
    labels: Arc<BTreeMap<String, String>>,
}

impl Endpoint {
    /// The same endpoint under another id (every other field kept, labels
    /// shared).
    pub(crate) fn with_id(mut self, id: impl Into<EndpointId>) -> Self {
        self.id = id.into();
        self
    }

    /// An endpoint with weight 1, no zone, no version and no labels.
    pub fn new(id: impl Into<EndpointId>, address: SocketAddr) -> Self {
        Self {
            id: id.into(),
            address,
            weight: Weight::ONE,
            zone: None,
            version: None,
            labels: Arc::default(),
        }
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: Weight) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the address.
    pub fn with_address(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// Sets the zone (availability zone, rack, region: whatever locality means here).
    pub fn with_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the version the endpoint serves (for example its build or API version).
    pub fn with_version(mut self, version: impl Into<Arc<str>>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds or replaces one label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.labels).insert(key.into(), value.into());
        self
    }

    /// The endpoint's id.
    pub fn id(&self) -> &EndpointId {
        &self.id
    }

    /// Where it answers.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its relative share of traffic.
    pub fn weight(&self) -> Weight {
        self.weight
    }

    /// Its zone, if known.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The version it serves, if known.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// All labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Endpoint");
        d.field("id", &self.id)
            .field("address", &self.address)
            .field("weight", &self.weight);
        if let Some(zone) = &self.zone {
            d.field("zone", zone);
        }
        if let Some(version) = &self.version {
            d.field("version", version);
        }
        if !self.labels.is_empty() {
            d.field("labels", &self.labels);
        }
        d.finish()
    }
}

/// One change to the set of endpoints, in the order the registry applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointChange {
    /// A new endpoint.
    Insert(Endpoint),
    /// An endpoint already present changed (address, weight, zone, version or labels).
    Update(Endpoint),
    /// The endpoint left; the balancer stops picking it as soon as it sees this.
    Remove(EndpointId),
}

impl EndpointChange {
    /// The id of the endpoint the change is about.
    pub fn id(&self) -> &EndpointId {
        match self {
            Self::Insert(e) | Self::Update(e) => e.id(),
            Self::Remove(id) => id,
        }
    }
}
