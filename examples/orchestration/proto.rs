//! The gRPC code of `payments`, generated from `examples/proto/payments.proto`
//! and checked in (`tests/generated_code.rs` keeps it current).
#![allow(missing_docs, clippy::all)]

include!("../proto/orch.examples.payments.v1.rs");
