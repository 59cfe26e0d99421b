//! The round-trip helper (`testing` feature): a chain that gives old
//! clients back what they sent passes at every version; one that loses a
//! sub-cent amount or forgets to undo a rename fails, naming the sample,
//! the version and the bodies.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod support;

use orch_versioning::{
    ApiVersion, ChangeChain, VersionChange,
    testing::{Reason, assert_round_trips, check_round_trips},
};
use serde_json::json;
use support::*;

#[test]
fn the_orders_chain_round_trips_at_every_version() {
    let chain = numbered_chain();
    let mut v2 = order_v1();
    v2["customer_id"] = v2["customer"].take();
    v2.as_object_mut().unwrap().remove("customer");
    let samples = [("1", order_v1()), ("2", v2), ("3", json!({ "anything": [1, 2] }))];
    for operation in ORDER_OPERATIONS {
        // Sample 1 at 1, 2 and 3; sample 2 at 2 and 3; sample 3 at 3.
        assert_eq!(check_round_trips(&chain, operation, samples.clone()), Ok(6));
        assert_round_trips(&chain, operation, samples.clone());
    }
    assert_round_trips(
        &chain,
        "POST /refunds",
        [("1", json!({ "customer": "c", "amount": 0.001 }))],
    );
    assert_round_trips(
        &dated_chain(),
        "POST /payments",
        [("2024-01-01", json!({ "status": "paid", "tags": "a,b" }))],
    );
}

#[test]
fn a_lossy_typed_change_fails_with_the_bodies() {
    let chain = numbered_chain();
    let mut sample = order_v1();
    sample["amount"] = json!(12.345);
    let failure = check_round_trips(&chain, "POST /orders", [("1", order_v1()), ("1", sample)]).unwrap_err();
    assert_eq!(failure.sample, 1);
    assert_eq!(failure.version, Some(ApiVersion::semantic(1, 0)));
    let Reason::Changed {
        sent,
        upgraded,
        returned,
    } = &failure.reason
    else {
        panic!("{failure}");
    };
    assert_eq!(sent["amount"], 12.345);
    assert_eq!(upgraded["amount_cents"], 1235);
    assert_eq!(returned["amount"], 12.35);
    let message = failure.to_string();
    assert!(
        message.starts_with("sample 1 of POST /orders at version 1 does not round-trip."),
        "{message}"
    );
}

#[test]
#[should_panic(expected = "sample 0 of GET /x at version 1 does not round-trip")]
fn a_change_that_is_not_undone_panics() {
    let chain = ChangeChain::builder(&numbered_set())
        .change(VersionChange::new("2", "Adds `kind`.").request(|body| {
            body["kind"] = json!("order");
            Ok(())
        }))
        .build()
        .unwrap();
    assert_round_trips(&chain, "GET /x", [("1", json!({}))]);
}

#[test]
fn a_failing_converter_and_a_bad_version_are_failures_too() {
    let chain = numbered_chain();
    let failure = check_round_trips(&chain, "POST /orders", [("2", json!({ "amount": "ten" }))]).unwrap_err();
    assert!(matches!(failure.reason, Reason::Failed(_)), "{failure}");
    let failure = check_round_trips(&chain, "POST /orders", [("two", json!({}))]).unwrap_err();
    assert!(matches!(failure.reason, Reason::Version(_)), "{failure}");
}
