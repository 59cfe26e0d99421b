//! The gRPC code of the examples is generated from `examples/proto/*.proto`
//! and checked in, so that building orch needs no `protoc`. This test
//! generates it again with pure-Rust tools (`protox` parses the `.proto`,
//! `tonic-prost-build` writes the Rust) and fails when the checked-in copy is
//! not current. `ORCH_REGENERATE=1 cargo test --test generated_code` rewrites it.

use std::path::Path;

const PROTO_DIR: &str = "examples/proto";
const PROTOS: &[&str] = &["payments.proto", "orders_v1.proto", "orders_v2.proto"];
const GENERATED: &[&str] = &[
    "orch.examples.payments.v1.rs",
    "orch.examples.orders.v1.rs",
    "orch.examples.orders.v2.rs",
];

#[test]
fn checked_in_grpc_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = root.join(PROTO_DIR);
    let protos: Vec<_> = PROTOS.iter().map(|name| proto_dir.join(name)).collect();
    let descriptors = protox::compile(&protos, [&proto_dir]).expect("the example protos parse");

    let out = tempfile_dir();
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("tonic-prost-build generates the example code");

    let regenerate = std::env::var_os("ORCH_REGENERATE").is_some_and(|value| value == "1");
    for name in GENERATED {
        let fresh = std::fs::read_to_string(out.join(name)).expect("generated file exists");
        let checked_in_path = proto_dir.join(name);
        if regenerate {
            std::fs::write(&checked_in_path, &fresh).expect("write generated code");
            continue;
        }
        let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
        assert!(
            checked_in == fresh,
            "{} is not current: run `ORCH_REGENERATE=1 cargo test --test generated_code`",
            checked_in_path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A fresh directory under the system's temporary directory, unique to
/// this process.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orch-generated-code-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}
