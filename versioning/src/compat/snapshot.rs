//! A released version's schema, checked in beside the tests: the schema
//! the code generates today must stay compatible with it.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::{Direction, Report, compare_for};

/// Fails the test when `current` is not compatible with the schema
/// checked in at `path`, and writes `current` there when no file exists
/// yet (a "new snapshot", as `insta` calls it: review and commit it).
///
/// The checked-in file is the released contract and is never rewritten:
/// compatible changes (an added optional field) pass and are printed to
/// stderr; breaking ones, and differences the checker cannot judge, fail
/// with the report. To accept a deliberate change, delete the file and
/// run the test again.
///
/// When the environment variable `CI` is set (to anything but `""`, `0`
/// or `false`), a missing file fails instead of being written, so that a
/// schema nobody checked in cannot pass unseen. A relative `path` is read
/// from the current directory, which `cargo test` sets to the package's
/// root.
///
/// ```no_run
/// use orch_versioning::compat::assert_schema_unchanged_compatibly;
///
/// #[derive(schemars::JsonSchema)]
/// struct OrderV1 { id: String }
///
/// # #[cfg(feature = "schema")]
/// assert_schema_unchanged_compatibly(
///     "tests/schemas/order.v1.json",
///     &orch_versioning::compat::schema_of::<OrderV1>(),
/// );
/// ```
///
/// # Panics
///
/// When the schema changed incompatibly, when the file is missing under
/// CI, or when it cannot be read, parsed or written.
#[track_caller]
pub fn assert_schema_unchanged_compatibly(path: impl AsRef<Path>, current: &Value) {
    match SchemaSnapshot::new(path.as_ref()).check(current) {
        Ok(Outcome::Created) => eprintln!(
            "new schema snapshot written to {}: review and commit it",
            path.as_ref().display()
        ),
        Ok(Outcome::Unchanged) => {}
        Ok(Outcome::Compatible(report)) => {
            eprintln!(
                "{}: compatible changes since the checked-in schema:\n{report}",
                path.as_ref().display()
            );
        }
        Err(error) => panic!("{error}"),
    }
}

/// A checked-in schema and how to check against it; the non-panicking
/// form of [`assert_schema_unchanged_compatibly`].
#[derive(Debug, Clone)]
pub struct SchemaSnapshot {
    path: PathBuf,
    create_missing: bool,
    direction: Direction,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No file existed; `current` was written.
    Created,
    /// Equal, annotations aside.
    Unchanged,
    /// Changed compatibly; the file was left as it is.
    Compatible(Report),
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The schema changed in ways that break clients, or that the checker
    /// cannot judge.
    #[error("{}: the released schema changed incompatibly:\n{report}", path.display())]
    Incompatible {
        /// The checked-in file.
        path: PathBuf,
        /// What changed.
        report: Report,
    },
    /// No file, and creating one was not allowed (under CI).
    #[error(
        "{}: no checked-in schema, and CI is set so none was written: run the test locally and commit the file",
        path.display()
    )]
    Missing {
        /// The file expected.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not JSON.
    #[error("{}: not a JSON schema: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the JSON is broken.
        source: serde_json::Error,
    },
}

impl SchemaSnapshot {
    /// The schema checked in at `path`, checked for [`Direction::Both`];
    /// a missing file is created unless `CI` is set.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
        Self {
            path: path.into(),
            create_missing: !ci,
            direction: Direction::Both,
        }
    }

    /// Whether a missing file is written (`true`) or fails the check.
    pub fn create_missing(mut self, create: bool) -> Self {
        self.create_missing = create;
        self
    }

    /// Who reads the schema (default both sides).
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Checks `current` against the file.
    pub fn check(&self, current: &Value) -> Result<Outcome, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        };
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !self.create_missing {
                    return Err(SnapshotError::Missing {
                        path: self.path.clone(),
                    });
                }
                if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                let mut pretty =
                    serde_json::to_string_pretty(current).map_err(|source| SnapshotError::Parse {
                        path: self.path.clone(),
                        source,
                    })?;
                pretty.push('\n');
                fs::write(&self.path, pretty).map_err(io)?;
                return Ok(Outcome::Created);
            }
            Err(error) => return Err(io(error)),
        };
        let released: Value = serde_json::from_str(&text).map_err(|source| SnapshotError::Parse {
            path: self.path.clone(),
            source,
        })?;
        let report = compare_for(&released, current, self.direction);
        if !report.is_compatible() {
            return Err(SnapshotError::Incompatible {
                path: self.path.clone(),
                report,
            });
        }
        Ok(if report.is_unchanged() {
            Outcome::Unchanged
        } else {
            Outcome::Compatible(report)
        })
    }
}
