//! One configuration tree for a service, loaded from files and the
//! environment (12-factor).
//!
//! Every policy and config in orch is a plain `serde` struct that rejects
//! unknown keys: [`SupervisorPolicy`](crate::SupervisorPolicy) and
//! [`ChildPolicy`](crate::ChildPolicy) here, the resilience stack's and the
//! balancer's configs in their crates. A service gathers the ones it uses
//! into one struct of its own and loads it with a [`ConfigLoader`]: the
//! defaults set in code first, then files (TOML, or JSON by extension) in
//! the order given, then environment variables with the service's prefix,
//! each later source overriding the earlier ones key by key. Key by key
//! matters: setting only `resilience.retry.max_attempts` in the environment
//! keeps every other default of `resilience`.
//!
//! An environment variable names a key by its path, upper case, with `__`
//! between levels: with the prefix `ORDERS`, `ORDERS__RESILIENCE__RETRY__MAX_ATTEMPTS=5`
//! sets `resilience.retry.max_attempts`. Values are read like TOML values
//! (`5` is a number, `true` a boolean, `30s` a string, which is how
//! durations are written everywhere in orch).
//!
//! Every error names the key's full path and where the bad value came from
//! (a file, or the exact environment variable), and all of them are
//! reported at once, not only the first.
//!
//! ```
//! use orch_core::{ChildPolicy, config::ConfigLoader};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct ServiceConfig {
//!     #[serde(default)]
//!     replicas: usize,
//!     #[serde(default)]
//!     api: ChildPolicy,
//! }
//!
//! let config: ServiceConfig = ConfigLoader::new("ORDERS")
//!     .with_vars([("ORDERS__REPLICAS", "3"), ("ORDERS__API__SHUTDOWN_GRACE", "10s")])
//!     .load()
//!     .unwrap();
//! assert_eq!(config.replicas, 3);
//!
//! let error = ConfigLoader::new("ORDERS")
//!     .with_vars([("ORDERS__REPLICA", "3")])
//!     .load::<ServiceConfig>()
//!     .unwrap_err();
//! assert_eq!(error.issues()[0].path, "replica");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Json, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, error::Kind, util::nest};
use serde::{Serialize, de::DeserializeOwned};

/// Loads one configuration tree from files and prefixed environment
/// variables: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    prefix: String,
    defaults: Option<Result<Value, String>>,
    files: Vec<ConfigFile>,
    vars: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    required: bool,
}

impl ConfigLoader {
    /// A loader reading environment variables that start with `prefix`
    /// followed by `__` (`ORDERS` reads `ORDERS__...`). An empty prefix
    /// reads no environment variables.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            defaults: None,
            files: Vec::new(),
            vars: None,
        }
    }

    /// Starts from `defaults` (usually `&MyConfig::default()`, or a
    /// service's own choice of defaults), which files and the environment
    /// then override key by key.
    pub fn defaults<T: Serialize>(mut self, defaults: &T) -> Self {
        self.defaults = Some(Value::serialize(defaults).map_err(|error| error.to_string()));
        self
    }

    /// Reads `path`, which must exist: TOML, or JSON when its extension is
    /// `json`. Files are read in the order given; later ones override.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(ConfigFile {
            path: path.into(),
            required: true,
        });
        self
    }

    /// Like [`file`](Self::file), but a missing file is skipped.
    pub fn optional_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(ConfigFile {
            path: path.into(),
            required: false,
        });
        self
    }

    /// Reads these variables instead of the process environment (for tests,
    /// and for services that gather their environment themselves).
    pub fn with_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.vars = Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Loads the tree: files in order, then the environment.
    ///
    /// Unknown keys are rejected by the configs' own
    /// `#[serde(deny_unknown_fields)]` (every orch config has it; give your
    /// own tree struct the same attribute).
    pub fn load<T: DeserializeOwned>(&self) -> Result<T, ConfigLoadError> {
        let mut figment = Figment::new();
        match &self.defaults {
            Some(Ok(defaults)) => figment = figment.merge(Serialized::defaults(defaults)),
            Some(Err(error)) => return Err(ConfigLoadError::defaults(error)),
            None => {}
        }
        for file in &self.files {
            if !file.path.exists() {
                if file.required {
                    return Err(ConfigLoadError::missing_file(&file.path));
                }
                continue;
            }
            figment = if is_json(&file.path) {
                figment.merge(Json::file_exact(&file.path))
            } else {
                figment.merge(Toml::file_exact(&file.path))
            };
        }
        for var in self.prefixed_vars() {
            figment = figment.merge(var);
        }
        figment.extract().map_err(ConfigLoadError::from_figment)
    }

    /// The variables that carry this loader's prefix, as providers, in a
    /// stable order so that a conflict resolves the same way every time.
    fn prefixed_vars(&self) -> Vec<EnvVar> {
        if self.prefix.is_empty() {
            return Vec::new();
        }
        let head = format!("{}__", self.prefix.to_ascii_uppercase());
        let mut vars: Vec<EnvVar> = match &self.vars {
            Some(vars) => vars
                .iter()
                .filter_map(|(k, v)| EnvVar::parse(&head, k, v))
                .collect(),
            None => std::env::vars()
                .filter_map(|(k, v)| EnvVar::parse(&head, &k, &v))
                .collect(),
        };
        vars.sort_by(|a, b| a.name.cmp(&b.name));
        vars
    }
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// One environment variable as a configuration source, so that an error in
/// its value names the variable itself.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl EnvVar {
    fn parse(head: &str, name: &str, value: &str) -> Option<Self> {
        let rest = name.to_ascii_uppercase().strip_prefix(head)?.to_owned();
        if rest.is_empty() {
            return None;
        }
        let key = rest
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        Some(Self {
            name: name.to_owned(),
            key,
            value: value.to_owned(),
        })
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let value: Value = self
            .value
            .parse()
            .unwrap_or_else(|never: std::convert::Infallible| match never {});
        let dict = nest(&self.key, value).into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// A configuration tree could not be loaded: every problem found, each
/// naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLoadError {
    issues: Vec<ConfigIssue>,
}

/// One problem in a configuration tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key's full path, dotted (`resilience.retry.max_attempts`); empty
    /// for the tree as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from (`environment variable ORDERS__...`, a
    /// file's path), when known.
    pub origin: Option<String>,
}

impl ConfigLoadError {
    /// Every problem found.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }

    fn defaults(message: &str) -> Self {
        Self {
            issues: vec![ConfigIssue {
                path: String::new(),
                message: format!("the defaults could not be serialised: {message}"),
                origin: Some("ConfigLoader::defaults".to_owned()),
            }],
        }
    }

    fn missing_file(path: &Path) -> Self {
        Self {
            issues: vec![ConfigIssue {
                path: String::new(),
                message: "configuration file not found".to_owned(),
                origin: Some(path.display().to_string()),
            }],
        }
    }

    fn from_figment(error: figment::Error) -> Self {
        let issues = error.into_iter().map(ConfigIssue::from_figment).collect();
        Self { issues }
    }
}

impl ConfigIssue {
    fn from_figment(error: figment::Error) -> Self {
        let mut path = error.path.clone();
        // serde reports a missing key at its parent (an unknown one comes
        // with its own name already); the key itself is the useful path.
        if let Kind::MissingField(field) = &error.kind {
            path.push(field.to_string());
        }
        let origin = error.metadata.as_ref().map(|metadata| match &metadata.source {
            Some(source) => source.to_string(),
            None => metadata.name.to_string(),
        });
        Self {
            path: path.join("."),
            message: error.kind.to_string(),
            origin,
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

impl fmt::Display for ConfigLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration")?;
        for issue in &self.issues {
            write!(f, "; {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigLoadError {}
