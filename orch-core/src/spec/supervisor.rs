//! Supervisor specs: strategy, intensity and the ordered list of children.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{ChildSpec, RestartIntensity, SpecError};

/// Which siblings restart with a crashed child (OTP's strategies).
///
/// A replica group is one position in the start order. A crashed replica
/// restarts alone under one-for-one; under one-for-all every instance of
/// every child restarts with it; under rest-for-one it restarts with every
/// instance of the children started after its group (not its sibling replicas).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the crashed instance (the default).
    #[default]
    OneForOne,
    /// Stop all other children (reverse start order), then restart all of them in start order.
    OneForAll,
    /// Stop the children started after the crashed one (reverse order), then
    /// restart the crashed one and those, in start order.
    RestForOne,
}

/// The plain-data part of a supervisor spec, loadable from configuration.
///
/// ```
/// use orch_core::{Strategy, SupervisorPolicy};
///
/// let p: SupervisorPolicy = serde_json::from_str(
///     r#"{"strategy":"rest_for_one","intensity":{"max_restarts":1,"within":"5s"}}"#,
/// ).unwrap();
/// assert_eq!(p.strategy, Strategy::RestForOne);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorPolicy {
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restart intensity.
    pub intensity: RestartIntensity,
}

/// A validated supervisor: name, policy and children in start order.
///
/// Build one with [`SupervisorSpec::builder`]; start it with
/// [`Supervisor::start`](crate::Supervisor::start) or nest it with
/// [`ChildSpec::supervisor`].
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    pub(crate) name: String,
    pub(crate) policy: SupervisorPolicy,
    pub(crate) children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// Starts a builder for a supervisor called `name`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_core::{ChildSpec, RestartIntensity, Strategy, SupervisorSpec};
    ///
    /// let spec = SupervisorSpec::builder("root")
    ///     .strategy(Strategy::OneForAll)
    ///     .intensity(RestartIntensity::new(3, Duration::from_secs(5)))
    ///     .child(ChildSpec::task("a", |ctx| async move { ctx.cancelled().await; Ok::<_, std::io::Error>(()) }))
    ///     .build()
    ///     .expect("valid spec");
    /// assert_eq!(spec.name(), "root");
    ///
    /// // Bad input is rejected before anything starts, naming the field:
    /// let err = SupervisorSpec::builder("root")
    ///     .intensity(RestartIntensity::new(3, Duration::ZERO))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "invalid intensity.within: must be greater than zero");
    /// ```
    pub fn builder(name: &str) -> SupervisorBuilder {
        SupervisorBuilder {
            name: name.to_owned(),
            policy: SupervisorPolicy::default(),
            children: Vec::new(),
        }
    }

    /// The supervisor's name (the first segment of its instances' ids).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its policy.
    pub fn policy(&self) -> SupervisorPolicy {
        self.policy
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(SpecError::field("name", "must be non-empty and contain no '/'"));
        }
        self.policy.intensity.validate()?;
        let mut seen = HashSet::new();
        for child in &self.children {
            child.validate()?;
            if !seen.insert(&*child.id) {
                return Err(SpecError::DuplicateChildId(child.id.to_string()));
            }
        }
        Ok(())
    }
}

/// Builds a [`SupervisorSpec`]; [`build`](Self::build) validates everything.
#[derive(Debug)]
#[must_use]
pub struct SupervisorBuilder {
    name: String,
    policy: SupervisorPolicy,
    children: Vec<ChildSpec>,
}

impl SupervisorBuilder {
    /// Sets the restart strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.policy.strategy = strategy;
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.policy.intensity = intensity;
        self
    }

    /// Replaces strategy and intensity with a loaded policy.
    pub fn policy(mut self, policy: SupervisorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Appends a child; children start in the order they are added.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// Validates the whole tree. The error names the first bad field, with
    /// its path (`children[db].children[pool].liveness.period`).
    pub fn build(self) -> Result<SupervisorSpec, SpecError> {
        let spec = SupervisorSpec {
            name: self.name,
            policy: self.policy,
            children: self.children,
        };
        spec.validate()?;
        Ok(spec)
    }
}
