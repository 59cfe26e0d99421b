//! The versions an API supports, each with its lifecycle, the latest, the
//! default for clients that name none (or a per-client pin, as Stripe pins
//! an account), and per-operation exceptions.

use std::{collections::BTreeMap, fmt, sync::Arc};

use http::request::Parts;

use crate::{ApiVersion, Lifecycle, VersionError};

/// Picks the version of a request that names none (Stripe's account pin):
/// `None` falls back to the set's default.
pub type PinFn = Arc<dyn Fn(&Parts) -> Option<ApiVersion> + Send + Sync>;

/// The versions of one API.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use orch_versioning::{ApiVersion, Lifecycle, VersionSet};
///
/// let deprecated = UNIX_EPOCH + Duration::from_secs(1_719_878_400);
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::deprecated(deprecated))
///     .version("2", Lifecycle::Stable)
///     .operation("DELETE /orders", "1", Lifecycle::removed())
///     .build()
///     .unwrap();
/// assert_eq!(set.latest(), ApiVersion::semantic(2, 0));
/// assert_eq!(set.default_version(), set.latest());
/// assert!(set.lifecycle(ApiVersion::semantic(1, 0), Some("DELETE /orders")).unwrap().is_gone(UNIX_EPOCH));
///
/// let err = VersionSet::builder("orders").version("1", Lifecycle::Stable).version("2024-06-20", Lifecycle::Stable).build();
/// assert!(err.is_err(), "one kind of version per set");
/// ```
#[derive(Clone)]
pub struct VersionSet {
    name: String,
    versions: BTreeMap<ApiVersion, Lifecycle>,
    operations: BTreeMap<String, BTreeMap<ApiVersion, Lifecycle>>,
    latest: ApiVersion,
    default: ApiVersion,
    pin: Option<PinFn>,
}

impl fmt::Debug for VersionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionSet")
            .field("name", &self.name)
            .field("versions", &self.versions)
            .field("operations", &self.operations)
            .field("latest", &self.latest)
            .field("default", &self.default)
            .field("pin", &self.pin.is_some())
            .finish()
    }
}

impl VersionSet {
    /// Starts a set for the API `name` (as in `application/vnd.NAME.v2+json`
    /// and in metrics labels).
    pub fn builder(name: impl Into<String>) -> VersionSetBuilder {
        VersionSetBuilder {
            name: name.into(),
            versions: Vec::new(),
            operations: Vec::new(),
            latest: None,
            default: None,
            pin: None,
        }
    }

    /// The API's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The newest version that is not removed.
    pub fn latest(&self) -> ApiVersion {
        self.latest
    }

    /// What a request that names no version gets, unless a pin says
    /// otherwise.
    pub fn default_version(&self) -> ApiVersion {
        self.default
    }

    /// The version for a request that names none: the pin's, else the
    /// default.
    pub fn unnamed(&self, parts: &Parts) -> ApiVersion {
        self.pin
            .as_ref()
            .and_then(|pin| pin(parts))
            .unwrap_or(self.default)
    }

    /// Every declared version with its lifecycle, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = (ApiVersion, &Lifecycle)> {
        self.versions.iter().map(|(v, l)| (*v, l))
    }

    /// The versions a client may ask for now (declared and not removed),
    /// oldest first, as error bodies list them.
    pub fn supported(&self) -> Vec<ApiVersion> {
        self.versions
            .iter()
            .filter(|(_, l)| !matches!(l, Lifecycle::Removed { .. }))
            .map(|(v, _)| *v)
            .collect()
    }

    /// The lifecycle of `version` for `operation` (its exception if one is
    /// declared, else the version's); `None` for an undeclared version.
    pub fn lifecycle(&self, version: ApiVersion, operation: Option<&str>) -> Option<&Lifecycle> {
        let general = self.versions.get(&version)?;
        Some(
            operation
                .and_then(|op| self.operations.get(op))
                .and_then(|versions| versions.get(&version))
                .unwrap_or(general),
        )
    }
}

/// Builds a [`VersionSet`]; every problem is reported by [`build`](Self::build).
pub struct VersionSetBuilder {
    name: String,
    versions: Vec<(String, Lifecycle)>,
    operations: Vec<(String, String, Lifecycle)>,
    latest: Option<String>,
    default: Option<String>,
    pin: Option<PinFn>,
}

impl VersionSetBuilder {
    /// Declares `version` (`"2"`, `"v2"`, `"2.1"`, `"2024-06-20"`).
    pub fn version(mut self, version: impl Into<String>, lifecycle: Lifecycle) -> Self {
        self.versions.push((version.into(), lifecycle));
        self
    }

    /// Declares an exception for one operation (named as the layer's
    /// operation function names it, e.g. `"POST /orders"`) in one version.
    pub fn operation(
        mut self,
        operation: impl Into<String>,
        version: impl Into<String>,
        lifecycle: Lifecycle,
    ) -> Self {
        self.operations
            .push((operation.into(), version.into(), lifecycle));
        self
    }

    /// Sets the latest version (default: the newest not removed).
    pub fn latest(mut self, version: impl Into<String>) -> Self {
        self.latest = Some(version.into());
        self
    }

    /// Sets the default for requests that name no version (default: the
    /// latest).
    pub fn default_version(mut self, version: impl Into<String>) -> Self {
        self.default = Some(version.into());
        self
    }

    /// Picks the version of requests that name none, per client (Stripe's
    /// account pin); `None` falls back to the default.
    pub fn pin(mut self, pin: impl Fn(&Parts) -> Option<ApiVersion> + Send + Sync + 'static) -> Self {
        self.pin = Some(Arc::new(pin));
        self
    }

    /// Checks everything and builds the set.
    pub fn build(self) -> Result<VersionSet, VersionError> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(VersionError::field(
                "name",
                format!("{:?}: use letters, digits, '-', '_' or '.'", self.name),
            ));
        }
        let parse = |field: String, text: &str| {
            text.parse::<ApiVersion>()
                .map_err(|e| VersionError::field(field, e.to_string()))
        };
        let mut versions = BTreeMap::new();
        for (text, lifecycle) in self.versions {
            let version = parse(format!("versions[{text:?}]"), &text)?;
            lifecycle
                .check()
                .map_err(|reason| VersionError::field(format!("versions[{text:?}].sunset"), reason))?;
            if versions.insert(version, lifecycle).is_some() {
                return Err(VersionError::field(
                    format!("versions[{text:?}]"),
                    "declared twice",
                ));
            }
        }
        let (Some(first), Some(newest)) = (
            versions.keys().next().copied(),
            versions.keys().next_back().copied(),
        ) else {
            return Err(VersionError::field("versions", "no version declared"));
        };
        if !first.same_kind(&newest) {
            return Err(VersionError::field(
                "versions",
                "mixes numbered and dated versions; use one kind",
            ));
        }
        let usable =
            |field: &str, version: ApiVersion, versions: &BTreeMap<ApiVersion, Lifecycle>| match versions
                .get(&version)
            {
                None => Err(VersionError::field(field, format!("{version} is not declared"))),
                Some(Lifecycle::Removed { .. }) => {
                    Err(VersionError::field(field, format!("{version} is removed")))
                }
                Some(_) => Ok(version),
            };
        let latest = match &self.latest {
            Some(text) => usable("latest", parse("latest".into(), text)?, &versions)?,
            None => versions
                .iter()
                .rev()
                .find(|(_, l)| !matches!(l, Lifecycle::Removed { .. }))
                .map(|(v, _)| *v)
                .ok_or_else(|| VersionError::field("versions", "every version is removed"))?,
        };
        let default = match &self.default {
            Some(text) => usable("default", parse("default".into(), text)?, &versions)?,
            None => latest,
        };
        let mut operations: BTreeMap<String, BTreeMap<ApiVersion, Lifecycle>> = BTreeMap::new();
        for (operation, text, lifecycle) in self.operations {
            let field = format!("operations[{operation:?}][{text:?}]");
            let version = parse(field.clone(), &text)?;
            if !versions.contains_key(&version) {
                return Err(VersionError::field(
                    field,
                    format!("{version} is not a declared version"),
                ));
            }
            lifecycle
                .check()
                .map_err(|reason| VersionError::field(format!("{field}.sunset"), reason))?;
            operations
                .entry(operation)
                .or_default()
                .insert(version, lifecycle);
        }
        Ok(VersionSet {
            name: self.name,
            versions,
            operations,
            latest,
            default,
            pin: self.pin,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn field(result: Result<VersionSet, VersionError>) -> String {
        match result {
            Err(VersionError::InvalidField { field, .. }) => field,
            Ok(set) => panic!("built {set:?}"),
        }
    }

    #[test]
    fn every_bad_declaration_names_its_field() {
        let at = UNIX_EPOCH + Duration::from_secs(100);
        let b = || VersionSet::builder("orders");
        assert_eq!(field(b().build()), "versions");
        assert_eq!(
            field(b().version("two", Lifecycle::Stable).build()),
            "versions[\"two\"]"
        );
        assert_eq!(
            field(
                b().version("1", Lifecycle::Stable)
                    .version("v1", Lifecycle::Stable)
                    .build()
            ),
            "versions[\"v1\"]"
        );
        assert_eq!(
            field(
                b().version("1", Lifecycle::deprecated(at).sunset(at - Duration::from_secs(1)))
                    .build()
            ),
            "versions[\"1\"].sunset"
        );
        assert_eq!(
            field(b().version("1", Lifecycle::Stable).default_version("3").build()),
            "default"
        );
        assert_eq!(
            field(
                b().version("1", Lifecycle::removed())
                    .version("2", Lifecycle::Stable)
                    .latest("1")
                    .build()
            ),
            "latest"
        );
        assert_eq!(
            field(
                b().version("1", Lifecycle::Stable)
                    .operation("GET /x", "2", Lifecycle::removed())
                    .build()
            ),
            "operations[\"GET /x\"][\"2\"]"
        );
        assert_eq!(
            field(VersionSet::builder("a b").version("1", Lifecycle::Stable).build()),
            "name"
        );
    }

    #[test]
    fn latest_skips_removed_versions() {
        let set = VersionSet::builder("orders")
            .version("1", Lifecycle::Stable)
            .version("2", Lifecycle::Stable)
            .version("3", Lifecycle::removed())
            .build()
            .unwrap();
        assert_eq!(set.latest(), ApiVersion::semantic(2, 0));
        assert_eq!(
            set.supported(),
            [ApiVersion::semantic(1, 0), ApiVersion::semantic(2, 0)]
        );
    }
}
