//! Checks a chain's changes against its version set before anything is
//! served, so that a misdeclared change fails at start-up with the field
//! named rather than converting the wrong requests.

use super::{ChangeChain, Step, VersionChange};
use crate::{ApiVersion, VersionError, VersionSet};

/// Builds a [`ChangeChain`]; every problem is reported by
/// [`build`](Self::build), naming the change by its index.
#[derive(Debug)]
pub struct ChangeChainBuilder {
    pub(super) set: VersionSet,
    pub(super) changes: Vec<VersionChange>,
}

impl ChangeChainBuilder {
    /// Adds a change. Changes are declared oldest first, as the API's
    /// history reads; several changes may share a version.
    pub fn change(mut self, change: VersionChange) -> Self {
        self.changes.push(change);
        self
    }

    /// Checks every change against the set and builds the chain.
    ///
    /// Refused, with the field named (`changes[2].version`): a version
    /// that does not parse or is not declared in the set; the set's first
    /// version (a change sits between its version and the one before);
    /// a version after the latest (handlers are written against the
    /// latest); a change older than the one declared before it; an empty
    /// description or operation name.
    pub fn build(self) -> Result<ChangeChain, VersionError> {
        let declared: Vec<ApiVersion> = self.set.versions().map(|(v, _)| v).collect();
        let first = declared.first().copied();
        let latest = self.set.latest();
        let mut steps: Vec<Step> = Vec::with_capacity(self.changes.len());
        for (i, change) in self.changes.into_iter().enumerate() {
            let field = |name: &str| format!("changes[{i}].{name}");
            let version: ApiVersion = change.version.parse().map_err(|e: crate::ParseVersionError| {
                VersionError::field(field("version"), e.to_string())
            })?;
            let refuse = |reason: String| Err(VersionError::field(field("version"), reason));
            if !declared.contains(&version) {
                let list: Vec<String> = declared.iter().map(ToString::to_string).collect();
                return refuse(format!(
                    "{version} is not a version of {} (declared: {})",
                    self.set.name(),
                    list.join(", ")
                ));
            }
            if Some(version) == first {
                return refuse(format!(
                    "{version} is the first version; a change sits between its version and the one before"
                ));
            }
            if version > latest {
                return refuse(format!(
                    "{version} is after the latest version {latest}, which handlers are written against"
                ));
            }
            if let Some(before) = steps.last()
                && before.version > version
            {
                return refuse(format!(
                    "{version} is declared after a change of {}; declare changes oldest first",
                    before.version
                ));
            }
            if change.description.trim().is_empty() {
                return Err(VersionError::field(
                    field("description"),
                    "empty; the changelog is made of descriptions",
                ));
            }
            if let Some(j) = change.operations.iter().position(|o| o.trim().is_empty()) {
                return Err(VersionError::field(field(&format!("operations[{j}]")), "empty"));
            }
            steps.push(Step {
                version,
                description: change.description,
                operations: change.operations,
                request: change.request,
                response: change.response,
            });
        }
        Ok(ChangeChain { set: self.set, steps })
    }
}

#[cfg(test)]
mod tests {
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

    fn field(result: Result<ChangeChain, VersionError>) -> (String, String) {
        match result {
            Err(VersionError::InvalidField { field, reason }) => (field, reason),
            Ok(chain) => panic!("built {chain:?}"),
        }
    }

    #[test]
    fn every_bad_change_names_its_field() {
        let set = set(&["1", "2", "3"]);
        let change = |v: &str| VersionChange::new(v, "something");
        let cases = [
            (vec![change("two")], "changes[0].version", "not an API version"),
            (
                vec![change("2"), change("4")],
                "changes[1].version",
                "declared: 1, 2, 3",
            ),
            (vec![change("1")], "changes[0].version", "first version"),
            (
                vec![change("3"), change("2")],
                "changes[1].version",
                "oldest first",
            ),
            (
                vec![VersionChange::new("2", "  ")],
                "changes[0].description",
                "empty",
            ),
            (
                vec![change("2").operation("")],
                "changes[0].operations[0]",
                "empty",
            ),
        ];
        for (changes, expected_field, expected_reason) in cases {
            let builder = changes
                .into_iter()
                .fold(ChangeChain::builder(&set), |b, c| b.change(c));
            let (field, reason) = field(builder.build());
            assert_eq!(field, expected_field);
            assert!(reason.contains(expected_reason), "{reason}");
        }
        let preview = VersionSet::builder("orders")
            .version("1", Lifecycle::Stable)
            .version("2", Lifecycle::Stable)
            .latest("1")
            .build()
            .unwrap();
        let (field, reason) = field(ChangeChain::builder(&preview).change(change("2")).build());
        assert_eq!(field, "changes[0].version");
        assert!(reason.contains("after the latest"), "{reason}");
    }
}
