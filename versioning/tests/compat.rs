//! The compatibility check on schemas `schemars` generates from three
//! versions of an order contract (v2 compatible with v1, v3 breaking it in
//! every way the check knows), on hand-written schemas for the constructs
//! it can only flag, and the checked-in snapshot helper.
#![cfg(feature = "schema")]
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]
#![allow(dead_code, reason = "the types exist for their schemas")]

use std::path::PathBuf;

use orch_versioning::{
    ApiVersion,
    compat::{
        self, ChangeKind, Contract, Direction, Effect, Outcome, Report, SchemaSnapshot, SnapshotError,
        assert_schema_unchanged_compatibly, schema_of,
    },
};
use schemars::JsonSchema;
use serde_json::{Value, json};

mod v1 {
    use super::JsonSchema;

    #[derive(JsonSchema)]
    pub struct Order {
        pub id: String,
        pub quantity: u32,
        pub note: Option<String>,
        pub status: Status,
        pub customer: Customer,
        pub lines: Vec<Line>,
    }

    #[derive(JsonSchema)]
    pub enum Status {
        Pending,
        Paid,
        Shipped,
        Cancelled,
    }

    #[derive(JsonSchema)]
    pub struct Customer {
        pub name: String,
        pub email: String,
    }

    #[derive(JsonSchema)]
    pub struct Line {
        pub sku: String,
        pub quantity: u32,
    }
}

/// Compatible with v1: an optional field, a new enum value, an optional
/// field inside the array's items.
mod v2 {
    use super::JsonSchema;
    pub use super::v1::Customer;

    #[derive(JsonSchema)]
    pub struct Order {
        pub id: String,
        pub quantity: u32,
        pub note: Option<String>,
        pub status: Status,
        pub customer: Customer,
        pub lines: Vec<Line>,
        pub coupon: Option<String>,
    }

    #[derive(JsonSchema)]
    pub enum Status {
        Pending,
        Paid,
        Shipped,
        Cancelled,
        Refunded,
    }

    #[derive(JsonSchema)]
    pub struct Line {
        pub sku: String,
        pub quantity: u32,
        pub gift: Option<bool>,
    }
}

/// Breaks v2 in every way: a removed field, changed types (at the top and
/// inside the array's items), a new required field in a nested object,
/// a narrowed enum.
mod v3 {
    use super::JsonSchema;

    #[derive(JsonSchema)]
    pub struct Order {
        pub id: String,
        pub quantity: String,
        pub status: Status,
        pub customer: Customer,
        pub lines: Vec<Line>,
        pub coupon: Option<String>,
    }

    #[derive(JsonSchema)]
    pub enum Status {
        Pending,
        Paid,
        Shipped,
        Refunded,
    }

    #[derive(JsonSchema)]
    pub struct Customer {
        pub name: String,
        pub email: String,
        pub country: String,
    }

    #[derive(JsonSchema)]
    pub struct Line {
        pub sku: u64,
        pub quantity: u32,
        pub gift: Option<bool>,
    }
}

fn contract() -> Contract {
    Contract::new()
        .version("3", schema_of::<v3::Order>())
        .version("1", schema_of::<v1::Order>())
        .version("2", schema_of::<v2::Order>())
}

/// `(path, short name of the kind)`, to compare reports in one assert.
fn summary(changes: &[compat::Change]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|change| {
            let kind = format!("{:?}", change.kind);
            let name = kind.split([' ', '{', '(']).next().unwrap_or_default().to_owned();
            (change.path.clone(), name)
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(p, k)| ((*p).to_owned(), (*k).to_owned()))
        .collect()
}

#[test]
fn consecutive_versions_report_every_kind_of_break() {
    let steps = contract().check().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0].from, steps[0].to),
        (ApiVersion::semantic(1, 0), ApiVersion::semantic(2, 0))
    );

    let v1_to_v2 = &steps[0].report;
    assert!(v1_to_v2.is_compatible(), "{v1_to_v2}");
    assert_eq!(
        summary(&v1_to_v2.compatible),
        pairs(&[
            ("$.coupon", "AddedOptionalField"),
            ("$.lines[*].gift", "AddedOptionalField"),
            ("$.status", "WidenedEnum"),
        ])
    );

    let v2_to_v3 = &steps[1].report;
    assert!(v2_to_v3.cannot_compare.is_empty(), "{v2_to_v3}");
    assert_eq!(
        summary(&v2_to_v3.breaking),
        pairs(&[
            ("$.customer.country", "NewRequiredField"),
            // Types that no longer overlap: nothing below them is compared.
            ("$.lines[*].sku", "ChangedType"),
            ("$.note", "RemovedField"),
            ("$.quantity", "ChangedType"),
            ("$.status", "NarrowedEnum"),
        ]),
        "{v2_to_v3}"
    );
    let narrowed = v2_to_v3.breaking.iter().find_map(|c| match &c.kind {
        ChangeKind::NarrowedEnum { removed } => Some(removed.clone()),
        _ => None,
    });
    assert_eq!(narrowed, Some(vec![json!("Cancelled")]));
    let quantity = &v2_to_v3
        .breaking
        .iter()
        .find(|c| c.path == "$.quantity")
        .unwrap()
        .kind;
    assert_eq!(
        *quantity,
        ChangeKind::ChangedType {
            from: Some(vec!["integer".into()]),
            to: Some(vec!["string".into()]),
            effect: Effect::Alters,
        }
    );
    assert!(
        v2_to_v3.to_string().contains("$.note: field removed"),
        "{v2_to_v3}"
    );
}

#[test]
fn what_breaks_depends_on_who_reads() {
    let optional = json!({ "type": "object", "properties": { "a": { "type": "string" } } });
    let required =
        json!({ "type": "object", "properties": { "a": { "type": "string" } }, "required": ["a"] });
    let nullable = json!({ "type": "object", "properties": { "a": { "type": ["string", "null"] } } });
    let breaking =
        |old: &Value, new: &Value, direction| !compat::compare_for(old, new, direction).breaking.is_empty();

    // Requiring a field narrows: it breaks clients that send the schema.
    assert!(breaking(&optional, &required, Direction::Request));
    assert!(!breaking(&optional, &required, Direction::Response));
    // Making it nullable widens: it breaks clients that read it.
    assert!(!breaking(&optional, &nullable, Direction::Request));
    assert!(breaking(&optional, &nullable, Direction::Response));
    assert!(breaking(&optional, &nullable, Direction::Both));
}

#[test]
fn a_struct_field_becoming_optional_is_a_new_null_variant() {
    #[derive(JsonSchema)]
    struct Customer {
        name: String,
    }
    #[derive(JsonSchema)]
    struct Before {
        customer: Customer,
    }
    #[derive(JsonSchema)]
    #[schemars(rename = "Before")]
    struct After {
        customer: Option<Customer>,
    }
    let report = compat::compare(&schema_of::<Before>(), &schema_of::<After>());
    assert_eq!(
        summary(&report.breaking),
        pairs(&[
            ("$.customer", "NowOptional"),
            ("$.customer(anyOf[1])", "AddedVariant")
        ]),
        "{report}"
    );
    let request = compat::compare_for(&schema_of::<Before>(), &schema_of::<After>(), Direction::Request);
    assert!(request.is_compatible(), "{request}");
}

#[test]
fn recursive_types_compare_without_end() {
    #[derive(JsonSchema)]
    struct Category {
        name: String,
        children: Vec<Category>,
    }
    #[derive(JsonSchema)]
    #[schemars(rename = "Category")]
    struct CategoryV2 {
        name: String,
        children: Vec<CategoryV2>,
        slug: Option<String>,
    }
    let same = compat::compare(&schema_of::<Category>(), &schema_of::<Category>());
    assert!(same.is_unchanged(), "{same}");
    let added = compat::compare(&schema_of::<Category>(), &schema_of::<CategoryV2>());
    assert_eq!(
        summary(&added.compatible),
        pairs(&[("$.slug", "AddedOptionalField")]),
        "{added}"
    );
}

#[test]
fn what_the_checker_cannot_judge_is_never_passed_over() {
    let check = |old: Value, new: Value| {
        let report = compat::compare(&old, &new);
        assert!(!report.is_compatible(), "{report}");
        assert_eq!(report.cannot_compare.len(), 1, "{report}");
        report.cannot_compare[0].to_string()
    };
    let said = check(
        json!({ "allOf": [{ "type": "string" }] }),
        json!({ "allOf": [{ "type": "integer" }] }),
    );
    assert!(said.contains("`allOf` changed"), "{said}");
    let said = check(
        json!({ "properties": { "a": { "$ref": "other.json#/A" } } }),
        json!({ "properties": { "a": { "$ref": "other.json#/A" } } }),
    );
    assert!(
        said.starts_with("$.a:") && said.contains("outside the document"),
        "{said}"
    );
    let said = check(
        json!({ "anyOf": [{ "type": "string" }, { "type": "integer" }, { "type": "null" }] }),
        json!({ "anyOf": [{ "type": "boolean" }, { "type": "number" }] }),
    );
    assert!(said.contains("ambiguous"), "{said}");
    let said = check(
        json!({ "anyOf": [{ "type": "string" }] }),
        json!({ "oneOf": [{ "type": "string" }] }),
    );
    assert!(said.contains("`anyOf` became `oneOf`"), "{said}");
    let said = check(json!({ "required": "a" }), json!({ "required": ["a"] }));
    assert!(said.contains("`required` not an array"), "{said}");
    // An unknown keyword that did not change is no difference.
    let same = json!({ "type": "string", "x-unknown": 1 });
    assert!(compat::compare(&same, &same).is_unchanged());
}

#[test]
fn draft_07_definitions_and_constraints() {
    let old = json!({
        "definitions": { "Name": { "type": "string", "maxLength": 64 } },
        "type": "object",
        "properties": { "name": { "$ref": "#/definitions/Name" }, "tags": { "type": "object", "additionalProperties": { "type": "string" } } },
        "additionalProperties": true,
    });
    let new = json!({
        "definitions": { "Name": { "type": "string", "maxLength": 32, "description": "shorter" } },
        "type": "object",
        "properties": { "name": { "$ref": "#/definitions/Name" }, "tags": { "type": "object", "additionalProperties": { "type": "integer" } } },
        "additionalProperties": false,
    });
    let report = compat::compare_for(&old, &new, Direction::Response);
    // Narrowings do not break readers; the map's value type altered does.
    assert_eq!(
        summary(&report.breaking),
        pairs(&[("$.tags.*", "ChangedType")]),
        "{report}"
    );
    assert_eq!(
        summary(&report.compatible),
        pairs(&[("$.name", "ChangedConstraint"), ("$", "ChangedConstraint")]),
        "{report}"
    );
}

#[test]
fn a_contract_refuses_bad_versions_by_name() {
    let error = Contract::new().version("one", json!({})).check().unwrap_err();
    assert!(error.to_string().contains("versions[\"one\"]"), "{error}");
    let error = Contract::new()
        .version("1", json!({}))
        .version("v1", json!({}))
        .check()
        .unwrap_err();
    assert!(error.to_string().contains("declared twice"), "{error}");
}

fn checked_in(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name)
}

#[test]
fn the_released_schema_accepts_compatible_changes() {
    // v1 as released, checked in beside this test.
    let released = checked_in("order.v1.json");
    assert_schema_unchanged_compatibly(&released, &schema_of::<v1::Order>());
    let outcome = SchemaSnapshot::new(&released)
        .check(&schema_of::<v2::Order>())
        .unwrap();
    let Outcome::Compatible(Report { compatible, .. }) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(compatible.len(), 3);
    assert_schema_unchanged_compatibly(&released, &schema_of::<v2::Order>());
}

#[test]
#[should_panic(expected = "the released schema changed incompatibly")]
fn the_released_schema_refuses_breaking_changes() {
    assert_schema_unchanged_compatibly(checked_in("order.v1.json"), &schema_of::<v3::Order>());
}

#[test]
fn a_missing_schema_is_written_unless_under_ci() {
    let dir = std::env::temp_dir().join(format!("orch-compat-{}", std::process::id()));
    let path = dir.join("nested/order.v1.json");
    let schema = schema_of::<v1::Order>();
    let error = SchemaSnapshot::new(&path)
        .create_missing(false)
        .check(&schema)
        .unwrap_err();
    assert!(matches!(error, SnapshotError::Missing { .. }), "{error}");
    assert!(!path.exists());

    let snapshot = SchemaSnapshot::new(&path).create_missing(true);
    assert_eq!(snapshot.check(&schema).unwrap(), Outcome::Created);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, schema);
    assert_eq!(snapshot.check(&schema).unwrap(), Outcome::Unchanged);

    std::fs::write(&path, "{ not json").unwrap();
    let error = snapshot.check(&schema).unwrap_err();
    assert!(matches!(error, SnapshotError::Parse { .. }), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
