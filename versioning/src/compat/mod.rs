//! Breaking-change checks between the JSON Schemas of a contract's
//! versions, so that a released version never changes under its clients
//! by accident.
//!
//! A contract's versions are JSON Schemas: generated from the types with
//! `schemars` (`schema_of`, feature `schema`), or checked in as files.
//! [`compare`] walks two of them side by side and sorts every difference
//! into a [`Report`]: breaking (a removed field, a changed type, a new
//! required field, a narrowed enum, …), compatible (an added optional
//! field, a new enum value), and what it cannot compare. [`Contract`]
//! does that for every pair of consecutive versions, and
//! [`assert_schema_unchanged_compatibly`] guards a released version's
//! checked-in schema in a test, as a snapshot test would.
//!
//! The walk works on `serde_json::Value`, so any JSON Schema can be
//! checked, not only generated ones. It follows `$ref` into `$defs` (and
//! draft-07 `definitions`), including recursive types; compares `type`
//! (a string or an array; `integer` counts as a `number`), `enum` and
//! `const`, `properties` with `required`, `additionalProperties`, `items`
//! and `prefixItems`, numeric and length bounds, `pattern`, `format` and
//! `multipleOf`; and matches the branches of `anyOf`/`oneOf` to equal
//! ones, comparing the rest pairwise when that is unambiguous. Anything
//! else that differs (`allOf`, `not`, `if`, a `$ref` outside the document,
//! a keyword it does not know) is reported as *cannot compare*, never
//! passed over: [`Report::is_compatible`] is `false` until a person looks.
//!
//! What breaks depends on who reads the schema ([`Direction`]). By default
//! both sides do, as with a type used in requests and responses: a change
//! that narrows what is valid breaks clients that send it, one that widens
//! it breaks clients that read it. Two widenings are tolerated whichever
//! the direction, as buf and Google's AIP-180 do: an added optional field
//! and a new enum value (clients are expected to ignore unknown fields
//! and to handle unknown enum values). A removed field always breaks.
//!
//! ```
//! use orch_versioning::compat::{self, ChangeKind};
//! use serde_json::json;
//!
//! let v1 = json!({
//!     "type": "object",
//!     "properties": { "id": { "type": "string" }, "note": { "type": "string" } },
//!     "required": ["id"],
//! });
//! let v2 = json!({
//!     "type": "object",
//!     "properties": { "id": { "type": "integer" }, "tags": { "type": "array" } },
//!     "required": ["id"],
//! });
//! let report = compat::compare(&v1, &v2);
//! assert!(!report.is_compatible());
//! let breaking: Vec<_> = report.breaking.iter().map(|c| (c.path.as_str(), &c.kind)).collect();
//! assert!(matches!(breaking[..], [("$.id", ChangeKind::ChangedType { .. }), ("$.note", ChangeKind::RemovedField)]));
//! assert_eq!(report.compatible[0].path, "$.tags");
//! println!("{report}");
//! ```

mod diff;
mod snapshot;

use std::fmt;

use serde_json::Value;

use crate::{ApiVersion, VersionError};

pub use snapshot::{Outcome, SchemaSnapshot, SnapshotError, assert_schema_unchanged_compatibly};

/// Who reads the schema, which decides what a change breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Clients send it (a request body): narrowing breaks them, since the
    /// new version may refuse what they send.
    Request,
    /// Clients read it (a response body): widening breaks them, since the
    /// new version may send what they cannot read.
    Response,
    /// Both: any change but the two tolerated widenings breaks.
    #[default]
    Both,
}

/// Whether a change lets more documents through, fewer, or other ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Fewer documents are valid.
    Narrows,
    /// More documents are valid.
    Widens,
    /// Some that were valid are not, and the other way round.
    Alters,
}

/// One difference between two versions of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Where, as a JSONPath: `$.customer.email`, `$.lines[*].sku`, `$.tags.*`
    /// (map values), `$.payment(oneOf[1])` (a union's branch).
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
}

/// What changed at a [`Change`]'s path.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A field is gone. Breaks in every direction.
    RemovedField,
    /// A new field that must be present. Narrows.
    NewRequiredField,
    /// A new field that may be absent. Tolerated.
    AddedOptionalField,
    /// A field that was optional is now required. Narrows.
    NowRequired,
    /// A field that was required is now optional. Widens.
    NowOptional,
    /// `type` changed (`None`: any type).
    ChangedType {
        /// The types before, sorted.
        from: Option<Vec<String>>,
        /// The types after, sorted.
        to: Option<Vec<String>>,
        /// Widened (`"string"` → `["null", "string"]`), narrowed or altered.
        effect: Effect,
    },
    /// Enum values are gone. Narrows.
    NarrowedEnum {
        /// The values no longer allowed.
        removed: Vec<Value>,
    },
    /// Enum values were added. Tolerated.
    WidenedEnum {
        /// The new values.
        added: Vec<Value>,
    },
    /// A constraint keyword changed (`maxLength`, `pattern`,
    /// `additionalProperties`, `enum` appearing, …).
    ChangedConstraint {
        /// The keyword.
        keyword: String,
        /// Its value before, if it had one.
        from: Option<Value>,
        /// Its value after, if it has one.
        to: Option<Value>,
        /// What that does.
        effect: Effect,
    },
    /// A branch of `anyOf`/`oneOf` is gone. Narrows.
    RemovedVariant {
        /// The branch's schema.
        schema: Value,
    },
    /// A branch of `anyOf`/`oneOf` was added (a field becoming nullable is
    /// one). Widens.
    AddedVariant {
        /// The branch's schema.
        schema: Value,
    },
    /// A difference the checker cannot judge; a person has to.
    CannotCompare {
        /// What it is.
        reason: String,
    },
}

impl Change {
    /// Whether this change breaks clients reading or writing in
    /// `direction`; `None` for [`ChangeKind::CannotCompare`].
    pub fn breaks(&self, direction: Direction) -> Option<bool> {
        let effect = match &self.kind {
            ChangeKind::RemovedField => return Some(true),
            ChangeKind::AddedOptionalField | ChangeKind::WidenedEnum { .. } => return Some(false),
            ChangeKind::CannotCompare { .. } => return None,
            ChangeKind::NewRequiredField
            | ChangeKind::NowRequired
            | ChangeKind::NarrowedEnum { .. }
            | ChangeKind::RemovedVariant { .. } => Effect::Narrows,
            ChangeKind::NowOptional | ChangeKind::AddedVariant { .. } => Effect::Widens,
            ChangeKind::ChangedType { effect, .. } | ChangeKind::ChangedConstraint { effect, .. } => *effect,
        };
        Some(match (direction, effect) {
            (Direction::Both, _) | (_, Effect::Alters) => true,
            (Direction::Request, effect) => effect == Effect::Narrows,
            (Direction::Response, effect) => effect == Effect::Widens,
        })
    }
}

/// The differences between two versions of a schema, sorted by what they
/// do to clients.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Changes that break clients.
    pub breaking: Vec<Change>,
    /// Changes clients are expected to tolerate.
    pub compatible: Vec<Change>,
    /// Differences the checker cannot judge.
    pub cannot_compare: Vec<Change>,
}

impl Report {
    /// No breaking change and nothing left to judge.
    pub fn is_compatible(&self) -> bool {
        self.breaking.is_empty() && self.cannot_compare.is_empty()
    }

    /// No difference at all (annotations such as `description` aside).
    pub fn is_unchanged(&self) -> bool {
        self.is_compatible() && self.compatible.is_empty()
    }
}

impl fmt::Display for Report {
    /// One line per change, under `breaking:`, `cannot compare:` and
    /// `compatible:`; `unchanged` when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unchanged() {
            return f.write_str("unchanged");
        }
        for (title, changes) in [
            ("breaking", &self.breaking),
            ("cannot compare", &self.cannot_compare),
            ("compatible", &self.compatible),
        ] {
            if !changes.is_empty() {
                writeln!(f, "{title}:")?;
                for change in changes {
                    writeln!(f, "  {change}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types = |types: &Option<Vec<String>>| types.as_ref().map_or("any".to_owned(), |t| t.join("|"));
        let value = |value: &Option<Value>| value.as_ref().map_or("none".to_owned(), Value::to_string);
        let values = |values: &[Value]| values.iter().map(Value::to_string).collect::<Vec<_>>().join(", ");
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            ChangeKind::RemovedField => f.write_str("field removed"),
            ChangeKind::NewRequiredField => f.write_str("new required field"),
            ChangeKind::AddedOptionalField => f.write_str("new optional field"),
            ChangeKind::NowRequired => f.write_str("now required"),
            ChangeKind::NowOptional => f.write_str("no longer required"),
            ChangeKind::ChangedType { from, to, .. } => write!(f, "type {} -> {}", types(from), types(to)),
            ChangeKind::NarrowedEnum { removed } => write!(f, "enum values removed: {}", values(removed)),
            ChangeKind::WidenedEnum { added } => write!(f, "enum values added: {}", values(added)),
            ChangeKind::ChangedConstraint {
                keyword, from, to, ..
            } => {
                write!(f, "{keyword} {} -> {}", value(from), value(to))
            }
            ChangeKind::RemovedVariant { schema } => write!(f, "variant removed: {schema}"),
            ChangeKind::AddedVariant { schema } => write!(f, "variant added: {schema}"),
            ChangeKind::CannotCompare { reason } => f.write_str(reason),
        }
    }
}

/// The schemas of one contract's versions, checked pair by pair.
///
/// ```
/// use orch_versioning::compat::Contract;
/// use serde_json::json;
///
/// let steps = Contract::new()
///     .version("2", json!({ "type": "object", "properties": { "id": { "type": "string" } } }))
///     .version("1", json!({ "type": "object", "properties": { "id": { "type": "string" } } }))
///     .version("3", json!({ "type": "object", "properties": {} }))
///     .check()?;
/// assert_eq!(steps.len(), 2, "1 -> 2 and 2 -> 3, in version order");
/// assert!(steps[0].report.is_unchanged());
/// assert!(!steps[1].report.is_compatible(), "v3 removed `id`");
/// assert_eq!(steps[1].to_string(), "2 -> 3:\nbreaking:\n  $.id: field removed\n");
/// # Ok::<(), orch_versioning::VersionError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Contract {
    versions: Vec<(String, Value)>,
    direction: Direction,
}

/// What changed from one version of a contract to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The older version.
    pub from: ApiVersion,
    /// The next one.
    pub to: ApiVersion,
    /// What changed between them.
    pub report: Report,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}:", self.from, self.to)?;
        if self.report.is_unchanged() {
            writeln!(f, " unchanged")
        } else {
            write!(f, "\n{}", self.report)
        }
    }
}

impl Contract {
    /// A contract with no version yet, checked for [`Direction::Both`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `version` (`"2"`, `"2024-06-20"`) with its schema; versions
    /// may come in any order.
    pub fn version(mut self, version: impl Into<String>, schema: Value) -> Self {
        self.versions.push((version.into(), schema));
        self
    }

    /// Who reads the schemas (default both sides).
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Compares each version with the next, oldest first.
    pub fn check(&self) -> Result<Vec<Step>, VersionError> {
        let mut versions = Vec::with_capacity(self.versions.len());
        for (text, schema) in &self.versions {
            let field = format!("versions[{text:?}]");
            let version: ApiVersion = text
                .parse()
                .map_err(|e: crate::ParseVersionError| VersionError::field(&field, e.to_string()))?;
            if versions.iter().any(|(v, _)| *v == version) {
                return Err(VersionError::field(field, "declared twice"));
            }
            if versions
                .first()
                .is_some_and(|(first, _): &(ApiVersion, _)| !first.same_kind(&version))
            {
                return Err(VersionError::field(
                    field,
                    "mixes numbered and dated versions; use one kind",
                ));
            }
            versions.push((version, schema));
        }
        versions.sort_by_key(|(version, _)| *version);
        Ok(versions
            .windows(2)
            .map(|pair| Step {
                from: pair[0].0,
                to: pair[1].0,
                report: compare_for(pair[0].1, pair[1].1, self.direction),
            })
            .collect())
    }
}

/// Compares `old` and `new` for clients on both sides ([`Direction::Both`]).
pub fn compare(old: &Value, new: &Value) -> Report {
    compare_for(old, new, Direction::Both)
}

/// Compares `old` and `new` for clients in `direction`.
pub fn compare_for(old: &Value, new: &Value, direction: Direction) -> Report {
    let mut walk = diff::Walk::new(old, new);
    walk.compare("$", old, new);
    let mut report = Report::default();
    for change in walk.changes {
        match change.breaks(direction) {
            Some(true) => report.breaking.push(change),
            Some(false) => report.compatible.push(change),
            None => report.cannot_compare.push(change),
        }
    }
    report
}

/// The JSON Schema of `T`, as `schemars` generates it (draft 2020-12, its
/// named types under `$defs`).
///
/// ```
/// #[derive(schemars::JsonSchema)]
/// struct Order { id: String, quantity: u32 }
///
/// let schema = orch_versioning::compat::schema_of::<Order>();
/// assert_eq!(schema["required"], serde_json::json!(["id", "quantity"]));
/// ```
#[cfg(feature = "schema")]
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}
