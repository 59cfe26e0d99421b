//! Version-change chains, as Stripe runs its API: a handler is written once,
//! against the latest version, and every older version lives on as a list
//! of changes that convert bodies between neighbouring versions.
//!
//! Each [`VersionChange`] names the version that introduced it, describes
//! it (Markdown, for the [changelog](ChangeChain::changelog)), and says how
//! a request body of the version before becomes one of its version
//! (upgrade) and how a response body goes back (downgrade). A
//! [`ChangeChain`] orders the changes of one [`VersionSet`]; a request of
//! version 1 to an API at version 3 is upgraded through the changes of 2
//! and 3, handled, and its response downgraded through 3 and 2. The
//! [`ChainLayer`] does this for JSON bodies of an axum or hyper server,
//! inside the [`VersioningLayer`](crate::VersioningLayer) that negotiated
//! the version. Old versions thus cost a conversion per hop at the edge
//! instead of a branch in every handler, and the changelog cannot drift
//! from what the server does.
//!
//! With the `testing` feature, `testing::assert_round_trips` checks that
//! a chain loses nothing of what old clients send.

mod builder;
mod change;
mod changelog;
mod future;
mod layer;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;

use serde_json::Value;

pub use builder::ChangeChainBuilder;
use change::Convert;
pub use change::{ConversionError, VersionChange};
pub use future::ChainFuture;
pub use layer::{ChainLayer, Chained};

use crate::{ApiVersion, VersionSet};

/// The changes of one API, oldest first, checked against its
/// [`VersionSet`].
///
/// ```
/// use orch_versioning::{ApiVersion, ChangeChain, Lifecycle, VersionChange, VersionSet};
/// use serde_json::json;
///
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::Stable)
///     .version("2", Lifecycle::Stable)
///     .build()?;
/// let chain = ChangeChain::builder(&set)
///     .change(VersionChange::new("2", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"))
///     .build()?;
///
/// let v1 = ApiVersion::semantic(1, 0);
/// let upgraded = chain.upgrade_request(v1, "POST /orders", json!({ "customer": "c_1" }))?;
/// assert_eq!(upgraded, json!({ "customer_id": "c_1" }));
/// let downgraded = chain.downgrade_response(v1, "POST /orders", upgraded)?;
/// assert_eq!(downgraded, json!({ "customer": "c_1" }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ChangeChain {
    set: VersionSet,
    // Sorted by version; changes of one version keep their declared order.
    steps: Vec<Step>,
}

/// A checked change.
#[derive(Clone)]
pub(crate) struct Step {
    pub(crate) version: ApiVersion,
    pub(crate) description: String,
    pub(crate) operations: Vec<String>,
    request: Vec<Convert>,
    response: Vec<Convert>,
}

impl Step {
    pub(crate) fn applies_to(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == operation)
    }
}

impl fmt::Debug for ChangeChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeChain")
            .field("api", &self.set.name())
            .field(
                "changes",
                &self
                    .steps
                    .iter()
                    .map(|s| s.version.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Which way a body travels through the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A request body, from the client's version up to the latest.
    Upgrade,
    /// A response body, from the latest down to the client's version.
    Downgrade,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Upgrade => "upgrade the request",
            Self::Downgrade => "downgrade the response",
        })
    }
}

/// Why a body could not be walked through the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The version is not declared in the chain's set.
    #[error("{version} is not a version of {api}")]
    UnknownVersion {
        /// The API.
        api: String,
        /// The version asked for.
        version: ApiVersion,
    },
    /// One change's converter failed.
    #[error("the change of version {version} could not {direction} of {operation}: {source}")]
    Conversion {
        /// The version that introduced the failing change.
        version: ApiVersion,
        /// Which way the body was going.
        direction: Direction,
        /// The operation whose body it was.
        operation: String,
        /// What the converter said, with the field to blame.
        source: ConversionError,
    },
}

impl ChangeChain {
    /// Starts a chain for the versions of `set`.
    pub fn builder(set: &VersionSet) -> ChangeChainBuilder {
        ChangeChainBuilder {
            set: set.clone(),
            changes: Vec::new(),
        }
    }

    /// The version set the chain was checked against.
    pub fn set(&self) -> &VersionSet {
        &self.set
    }

    /// The version handlers are written against.
    pub fn latest(&self) -> ApiVersion {
        self.set.latest()
    }

    /// Whether a request of `version` may need a conversion at all: false
    /// for the latest version (and any version after the last change),
    /// which the layer serves without buffering.
    pub fn converts(&self, version: ApiVersion) -> bool {
        self.steps.last().is_some_and(|last| version < last.version)
    }

    /// Walks a request body of version `from` up to the latest version,
    /// through every change after `from` that applies to `operation`.
    pub fn upgrade_request(
        &self,
        from: ApiVersion,
        operation: &str,
        mut body: Value,
    ) -> Result<Value, ChainError> {
        self.upgrade_between(from, self.latest(), operation, &mut body)?;
        Ok(body)
    }

    /// Walks a response body of the latest version down to version `to`,
    /// undoing every change after `to` that applies to `operation`.
    pub fn downgrade_response(
        &self,
        to: ApiVersion,
        operation: &str,
        mut body: Value,
    ) -> Result<Value, ChainError> {
        self.downgrade_between(self.latest(), to, operation, &mut body)?;
        Ok(body)
    }

    /// Whether a body of `version` and `operation` meets a converter going
    /// `direction`.
    pub(crate) fn needs(&self, version: ApiVersion, operation: &str, direction: Direction) -> bool {
        self.after(version).iter().any(|step| {
            step.applies_to(operation)
                && match direction {
                    Direction::Upgrade => !step.request.is_empty(),
                    Direction::Downgrade => !step.response.is_empty(),
                }
        })
    }

    /// Upgrades through the changes in `(from, to]`.
    pub(crate) fn upgrade_between(
        &self,
        from: ApiVersion,
        to: ApiVersion,
        operation: &str,
        body: &mut Value,
    ) -> Result<(), ChainError> {
        self.check_declared(from)?;
        for step in self.after(from).iter().take_while(|s| s.version <= to) {
            if step.applies_to(operation) {
                for convert in &step.request {
                    convert(body).map_err(|e| step.error(Direction::Upgrade, operation, e))?;
                }
            }
        }
        Ok(())
    }

    /// Downgrades through the changes in `(to, from]`, newest first.
    pub(crate) fn downgrade_between(
        &self,
        from: ApiVersion,
        to: ApiVersion,
        operation: &str,
        body: &mut Value,
    ) -> Result<(), ChainError> {
        self.check_declared(to)?;
        for step in self.after(to).iter().rev().skip_while(|s| s.version > from) {
            if step.applies_to(operation) {
                for convert in step.response.iter().rev() {
                    convert(body).map_err(|e| step.error(Direction::Downgrade, operation, e))?;
                }
            }
        }
        Ok(())
    }

    /// The changes newer than `version`.
    fn after(&self, version: ApiVersion) -> &[Step] {
        let start = self.steps.partition_point(|s| s.version <= version);
        &self.steps[start..]
    }

    fn check_declared(&self, version: ApiVersion) -> Result<(), ChainError> {
        if self.set.lifecycle(version, None).is_some() {
            Ok(())
        } else {
            Err(ChainError::UnknownVersion {
                api: self.set.name().to_owned(),
                version,
            })
        }
    }

    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl Step {
    fn error(&self, direction: Direction, operation: &str, source: ConversionError) -> ChainError {
        ChainError::Conversion {
            version: self.version,
            direction,
            operation: operation.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Lifecycle;

    fn set(versions: &[&str]) -> VersionSet {
        versions
            .iter()
            .fold(VersionSet::builder("orders"), |b, v| {
                b.version(*v, Lifecycle::Stable)
            })
            .build()
            .unwrap()
    }

    #[test]
    fn walks_only_the_changes_between_the_versions_and_for_the_operation() {
        let set = set(&["1", "2", "3", "4"]);
        let append = |tag: &'static str| {
            move |body: &mut Value| {
                body.as_array_mut().unwrap().push(json!(tag));
                Ok(())
            }
        };
        let chain = ChangeChain::builder(&set)
            .change(
                VersionChange::new("2", "a")
                    .request(append("up2"))
                    .response(append("down2")),
            )
            .change(
                VersionChange::new("3", "b")
                    .operation("POST /x")
                    .request(append("up3")),
            )
            .change(
                VersionChange::new("3", "c")
                    .request(append("up3c"))
                    .response(append("down3c")),
            )
            .change(VersionChange::new("4", "d").response(append("down4")))
            .build()
            .unwrap();
        let v = |n| ApiVersion::semantic(n, 0);
        let up = chain.upgrade_request(v(1), "POST /x", json!([])).unwrap();
        assert_eq!(up, json!(["up2", "up3", "up3c"]));
        let up = chain.upgrade_request(v(2), "GET /x", json!([])).unwrap();
        assert_eq!(up, json!(["up3c"]));
        let down = chain.downgrade_response(v(1), "GET /x", json!([])).unwrap();
        assert_eq!(down, json!(["down4", "down3c", "down2"]));
        assert_eq!(
            chain.downgrade_response(v(4), "GET /x", json!([])).unwrap(),
            json!([])
        );
        assert!(chain.converts(v(3)) && !chain.converts(v(4)));
        assert!(chain.needs(v(3), "GET /x", Direction::Downgrade));
        assert!(!chain.needs(v(3), "GET /x", Direction::Upgrade));
        assert_eq!(
            chain.upgrade_request(v(9), "GET /x", json!([])),
            Err(ChainError::UnknownVersion {
                api: "orders".into(),
                version: v(9)
            })
        );
    }

    #[test]
    fn a_failing_converter_names_its_change_and_field() {
        let set = set(&["1", "2"]);
        let chain = ChangeChain::builder(&set)
            .change(
                VersionChange::new("2", "a").request(|_| Err(ConversionError::at("amount", "not a number"))),
            )
            .build()
            .unwrap();
        let error = chain
            .upgrade_request(ApiVersion::semantic(1, 0), "POST /orders", json!({}))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the change of version 2 could not upgrade the request of POST /orders: `amount`: not a number"
        );
    }
}
