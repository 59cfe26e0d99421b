//! Checks that a [`ChangeChain`] gives old clients back what they sent:
//! a body upgraded to the latest version and downgraded again must be the
//! body it was, at every version. A typed change whose struct drops an
//! unknown field, a rename that is not undone, a rounding that does not
//! round back: each shows up here as a test failure instead of a client's
//! silently changed data.
//!
//! Enabled by the `testing` cargo feature (as a dev-dependency feature).

use std::fmt;

use serde_json::Value;

use super::{ChainError, ChangeChain};
use crate::ApiVersion;

/// Panics, with the sample, version and bodies, unless every sample
/// round-trips at every version (see [`check_round_trips`]).
///
/// ```
/// use orch_versioning::{ChangeChain, Lifecycle, VersionChange, VersionSet, testing::assert_round_trips};
/// use serde_json::json;
///
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::Stable)
///     .version("2", Lifecycle::Stable)
///     .version("3", Lifecycle::Stable)
///     .build()?;
/// let chain = ChangeChain::builder(&set)
///     .change(VersionChange::new("2", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"))
///     .change(VersionChange::new("3", "Renames `note` to `memo`.").rename("note", "memo"))
///     .build()?;
/// // Checked as version 1, and upgraded to 2 and checked as version 2.
/// assert_round_trips(&chain, "POST /orders", [("1", json!({ "customer": "c_1", "note": "leave at door" }))]);
/// # Ok::<(), orch_versioning::VersionError>(())
/// ```
#[track_caller]
pub fn assert_round_trips<'a>(
    chain: &ChangeChain,
    operation: &str,
    samples: impl IntoIterator<Item = (&'a str, Value)>,
) {
    if let Err(failure) = check_round_trips(chain, operation, samples) {
        panic!("{failure}");
    }
}

/// Checks every sample at every version from its own to the latest.
///
/// Each sample is a body of `operation` in the version it is paired with
/// (`("1", json!({…}))`). For that version and each newer one, the sample
/// is first upgraded to that version (so one old sample checks every
/// later version too); it is then upgraded to the latest version as a
/// request would be, downgraded back as a response would be, and must
/// come back equal. Returns how many round trips were checked.
pub fn check_round_trips<'a>(
    chain: &ChangeChain,
    operation: &str,
    samples: impl IntoIterator<Item = (&'a str, Value)>,
) -> Result<usize, Box<RoundTripFailure>> {
    let latest = chain.latest();
    let versions: Vec<ApiVersion> = chain.set().versions().map(|(v, _)| v).collect();
    let mut checked = 0;
    for (index, (text, sample)) in samples.into_iter().enumerate() {
        let fail = |version, reason| {
            Box::new(RoundTripFailure {
                sample: index,
                operation: operation.to_owned(),
                version,
                reason,
            })
        };
        let from: ApiVersion = text
            .parse()
            .map_err(|e: crate::ParseVersionError| fail(None, Reason::Version(e.to_string())))?;
        for &version in versions.iter().filter(|v| **v >= from && **v <= latest) {
            let mut sent = sample.clone();
            chain
                .upgrade_between(from, version, operation, &mut sent)
                .map_err(|e| fail(Some(version), Reason::Failed(e)))?;
            let mut upgraded = sent.clone();
            chain
                .upgrade_between(version, latest, operation, &mut upgraded)
                .map_err(|e| fail(Some(version), Reason::Failed(e)))?;
            let mut returned = upgraded.clone();
            chain
                .downgrade_between(latest, version, operation, &mut returned)
                .map_err(|e| fail(Some(version), Reason::Failed(e)))?;
            if returned != sent {
                return Err(fail(
                    Some(version),
                    Reason::Changed {
                        sent,
                        upgraded,
                        returned,
                    },
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// A sample that did not come back as it went.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTripFailure {
    /// The sample's index among those given.
    pub sample: usize,
    /// The operation checked.
    pub operation: String,
    /// The version the round trip started from (`None` when the sample's
    /// own version did not parse).
    pub version: Option<ApiVersion>,
    /// What went wrong.
    pub reason: Reason,
}

/// What went wrong in a round trip.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The sample's version is not a version.
    Version(String),
    /// A converter failed.
    Failed(ChainError),
    /// The body came back different.
    Changed {
        /// The body as the client sent it, in its version.
        sent: Value,
        /// The body as the handler saw it, in the latest version.
        upgraded: Value,
        /// The body as the client got it back.
        returned: Value,
    },
}

impl fmt::Display for RoundTripFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pretty =
            |value: &Value| serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        let at = self
            .version
            .map(|v| format!(" at version {v}"))
            .unwrap_or_default();
        write!(f, "sample {} of {}{at} ", self.sample, self.operation)?;
        match &self.reason {
            Reason::Version(reason) => write!(f, "has no valid version: {reason}"),
            Reason::Failed(error) => write!(f, "failed: {error}"),
            Reason::Changed {
                sent,
                upgraded,
                returned,
            } => write!(
                f,
                "does not round-trip.\nsent:\n{}\nupgraded to the latest version:\n{}\nreturned:\n{}",
                pretty(sent),
                pretty(upgraded),
                pretty(returned)
            ),
        }
    }
}

impl std::error::Error for RoundTripFailure {}
