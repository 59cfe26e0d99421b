//! Bad input: invalid specs are refused with the field named (by its path in
//! the tree), and starting outside a runtime is an error, not a panic.

use std::time::Duration;

use orch_core::{BackoffPolicy, ChildSpec, RestartIntensity, SpecError, Supervisor, SupervisorSpec};

use super::idle;

// ===== bad input =====

#[test]
fn bad_specs_are_rejected_with_the_field_named() {
    let dup = SupervisorSpec::builder("s")
        .child(idle("a"))
        .child(idle("a"))
        .build();
    assert_eq!(dup.unwrap_err(), SpecError::DuplicateChildId("a".into()));

    let zero = SupervisorSpec::builder("s")
        .intensity(RestartIntensity::new(1, Duration::ZERO))
        .build();
    assert!(zero.unwrap_err().to_string().contains("intensity.within"));

    let inner = SupervisorSpec::builder("inner")
        .child(idle("w").backoff(BackoffPolicy::default().factor(0.0)))
        .build();
    assert!(
        inner
            .unwrap_err()
            .to_string()
            .contains("children[w].backoff.factor")
    );

    // A nested spec built without checks cannot exist, so nest a valid one
    // and break the outer level: the path names the outer child.
    let nested = SupervisorSpec::builder("db")
        .child(idle("pool"))
        .build()
        .expect("valid");
    let outer = SupervisorSpec::builder("root")
        .child(ChildSpec::supervisor(nested).replicas(2))
        .build()
        .unwrap_err();
    assert_eq!(
        outer.to_string(),
        "invalid children[db].replicas: a nested supervisor cannot be a replica group"
    );

    let slash = SupervisorSpec::builder("s")
        .child(idle("a/b"))
        .build()
        .unwrap_err();
    assert!(slash.to_string().contains("children[a/b].id"));
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let spec = SupervisorSpec::builder("s")
        .child(idle("a"))
        .build()
        .expect("valid");
    assert!(matches!(
        Supervisor::start(spec),
        Err(orch_core::StartError::NoRuntime)
    ));
}
