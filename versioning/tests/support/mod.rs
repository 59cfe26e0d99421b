//! An orders API in three numbered versions and three dated ones, shared by
//! the chain's tests.
//!
//! Numbered: version 2 renames `customer` to `customer_id` (untyped);
//! version 3 splits the decimal `amount` into `amount_cents` and
//! `currency` (typed, `OrderV2` ↔ `OrderV3`), for order bodies only.
#![allow(dead_code, reason = "each test binary uses a part of the fixtures")]

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use orch_versioning::{ChangeChain, ConversionError, Lifecycle, VersionChange, VersionSet};

/// The operations whose bodies are orders.
pub const ORDER_OPERATIONS: [&str; 2] = ["POST /orders", "GET /orders/{id}"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub qty: u32,
}

/// An order as version 2 writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderV2 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub customer_id: String,
    pub amount: f64,
    pub items: Vec<Item>,
}

/// An order as version 3 (the latest, the handlers') writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderV3 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub customer_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub items: Vec<Item>,
}

pub fn split_amount(order: OrderV2) -> OrderV3 {
    OrderV3 {
        id: order.id,
        customer_id: order.customer_id,
        amount_cents: (order.amount * 100.0).round() as i64,
        currency: "usd".to_owned(),
        items: order.items,
    }
}

pub fn join_amount(order: OrderV3) -> OrderV2 {
    OrderV2 {
        id: order.id,
        customer_id: order.customer_id,
        amount: order.amount_cents as f64 / 100.0,
        items: order.items,
    }
}

pub fn numbered_set() -> VersionSet {
    VersionSet::builder("orders")
        .version("1", Lifecycle::Stable)
        .version("2", Lifecycle::Stable)
        .version("3", Lifecycle::Stable)
        .build()
        .expect("a valid set")
}

pub fn numbered_chain() -> ChangeChain {
    let split = ORDER_OPERATIONS.iter().fold(
        VersionChange::new(
            "3",
            "Splits `amount` into `amount_cents` (an integer) and `currency`.\n\n\
             Version 2 clients keep sending decimal dollars.",
        ),
        |change, op| change.operation(*op),
    );
    ChangeChain::builder(&numbered_set())
        .change(
            VersionChange::new("2", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"),
        )
        .change(split.typed(split_amount, join_amount))
        .build()
        .expect("a valid chain")
}

/// A version 1 order as a client of version 1 sends it.
pub fn order_v1() -> Value {
    json!({
        "customer": "cus_1",
        "amount": 12.5,
        "items": [{ "sku": "A-1", "qty": 2 }, { "sku": "B-7", "qty": 1 }],
    })
}

pub fn dated_set() -> VersionSet {
    VersionSet::builder("payments")
        .version("2024-01-01", Lifecycle::Stable)
        .version("2024-06-20", Lifecycle::Stable)
        .version("2025-03-01", Lifecycle::Stable)
        .build()
        .expect("a valid set")
}

/// 2024-06-20 calls the `paid` status `succeeded`; 2025-03-01 sends `tags`
/// as an array instead of a comma-separated string.
pub fn dated_chain() -> ChangeChain {
    let status = |from: &'static str, to: &'static str| {
        move |body: &mut Value| {
            if body["status"] == from {
                body["status"] = json!(to);
            }
            Ok(())
        }
    };
    ChangeChain::builder(&dated_set())
        .change(
            VersionChange::new("2024-06-20", "The status `paid` is now `succeeded`.")
                .request(status("paid", "succeeded"))
                .response(status("succeeded", "paid")),
        )
        .change(
            VersionChange::new("2025-03-01", "`tags` is an array of strings.")
                .request(|body| {
                    let Some(tags) = body.get("tags") else {
                        return Ok(());
                    };
                    let text = tags
                        .as_str()
                        .ok_or_else(|| ConversionError::at("tags", "expected a comma-separated string"))?;
                    let list: Vec<&str> = text.split(',').filter(|t| !t.is_empty()).collect();
                    body["tags"] = json!(list);
                    Ok(())
                })
                .response(|body| {
                    if let Some(tags) = body.get("tags").and_then(Value::as_array) {
                        let list: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
                        body["tags"] = json!(list.join(","));
                    }
                    Ok(())
                }),
        )
        .build()
        .expect("a valid chain")
}
