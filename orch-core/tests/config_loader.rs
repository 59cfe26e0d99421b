//! Loading a service's configuration tree: files, then prefixed environment
//! variables; every error names its key and its origin.
#![cfg(feature = "config")]

use std::time::Duration;

use orch_core::{ChildPolicy, SupervisorPolicy, config::ConfigLoader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    #[serde(default)]
    supervisor: SupervisorPolicy,
    #[serde(default)]
    api: ChildPolicy,
    replicas: usize,
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orch-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the config file");
    path
}

#[test]
fn environment_overrides_the_file_key_by_key() {
    let file = temp_file(
        "service.toml",
        "replicas = 2\n[api]\nshutdown_grace = \"5s\"\ndrain_delay = \"1s\"\n",
    );
    let config: ServiceConfig = ConfigLoader::new("ORDERS")
        .file(&file)
        .with_vars([("ORDERS__API__SHUTDOWN_GRACE", "30s"), ("OTHER__REPLICAS", "9")])
        .load()
        .unwrap();
    assert_eq!(config.replicas, 2);
    assert_eq!(config.supervisor, SupervisorPolicy::default());
    assert_eq!(config.api.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.api.drain_delay, Duration::from_secs(1));
}

#[test]
fn json_files_are_read_by_extension() {
    let file = temp_file("service.json", r#"{"replicas": 4}"#);
    let config: ServiceConfig = ConfigLoader::new("ORDERS")
        .file(&file)
        .with_vars::<String, String>([])
        .load()
        .unwrap();
    assert_eq!(config.replicas, 4);
}

#[test]
fn an_unknown_key_is_rejected_with_its_path_and_origin() {
    let error = ConfigLoader::new("ORDERS")
        .with_vars([("ORDERS__REPLICAS", "1"), ("ORDERS__API__SHUTDOWN_GRAC", "1s")])
        .load::<ServiceConfig>()
        .unwrap_err();
    let issue = &error.issues()[0];
    assert_eq!(issue.path, "api.shutdown_grac");
    assert_eq!(
        issue.origin.as_deref(),
        Some("environment variable ORDERS__API__SHUTDOWN_GRAC")
    );
    assert!(error.to_string().contains("api.shutdown_grac"), "{error}");
}

#[test]
fn a_bad_value_names_its_path() {
    let error = ConfigLoader::new("orders")
        .with_vars([("ORDERS__REPLICAS", "three")])
        .load::<ServiceConfig>()
        .unwrap_err();
    assert_eq!(error.issues()[0].path, "replicas");
    assert!(error.to_string().contains("ORDERS__REPLICAS"), "{error}");
}

#[test]
fn a_missing_key_names_its_path() {
    let error = ConfigLoader::new("ORDERS")
        .with_vars::<String, String>([])
        .load::<ServiceConfig>()
        .unwrap_err();
    assert_eq!(error.issues()[0].path, "replicas");
}

#[test]
fn a_required_file_must_exist_and_an_optional_one_may_not() {
    let missing = std::env::temp_dir().join("orch-config-does-not-exist.toml");
    let error = ConfigLoader::new("ORDERS")
        .file(&missing)
        .load::<ServiceConfig>()
        .unwrap_err();
    assert!(error.to_string().contains("not found"), "{error}");
    let config: ServiceConfig = ConfigLoader::new("ORDERS")
        .optional_file(&missing)
        .with_vars([("ORDERS__REPLICAS", "1")])
        .load()
        .unwrap();
    assert_eq!(config.replicas, 1);
}

#[test]
fn defaults_in_code_are_overridden_key_by_key() {
    let mut defaults = ServiceConfig {
        supervisor: SupervisorPolicy::default(),
        api: ChildPolicy::default(),
        replicas: 3,
    };
    defaults.api.drain_delay = Duration::from_secs(2);
    let config: ServiceConfig = ConfigLoader::new("ORDERS")
        .defaults(&defaults)
        .with_vars([("ORDERS__API__SHUTDOWN_GRACE", "7s")])
        .load()
        .unwrap();
    assert_eq!(config.replicas, 3);
    assert_eq!(config.api.drain_delay, Duration::from_secs(2));
    assert_eq!(config.api.shutdown_grace, Duration::from_secs(7));
}
