//! One step of an API's history: what changed in a version, how a body of
//! the version before becomes one of this version (request upgrade) and
//! back (response downgrade), untyped on `serde_json::Value` or typed
//! through serde structs.

use std::{fmt, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Converts a body in place, one direction of one change.
pub(crate) type Convert = Arc<dyn Fn(&mut Value) -> Result<(), ConversionError> + Send + Sync>;

/// A change an API version introduced, between that version and the one
/// before it: a description for the changelog, the request upgrades (old →
/// new) and the response downgrades (new → old).
///
/// The handler only ever sees the latest version; a
/// [`ChangeChain`](crate::ChangeChain) of these carries older clients'
/// bodies up to it and its answers back down. A change converts every
/// operation's bodies unless [`operation`](Self::operation) scopes it.
///
/// Converters run in the order they are added on the way up and in the
/// reverse order on the way down, so a change whose steps are each
/// reversible is reversible as a whole. A change without converters is
/// allowed: it documents a change of behaviour in the changelog.
///
/// ```
/// use orch_versioning::{ConversionError, VersionChange};
/// use serde::{Deserialize, Serialize};
///
/// // Untyped: `customer` became `customer_id` in version 2.
/// let rename = VersionChange::new("2", "Renames `customer` to `customer_id`.")
///     .rename("customer", "customer_id");
///
/// // Typed: `amount` (a decimal) became `amount_cents` and `currency` in 3.
/// #[derive(Serialize, Deserialize)]
/// struct OrderV2 { id: u64, customer_id: String, amount: f64 }
/// #[derive(Serialize, Deserialize)]
/// struct OrderV3 { id: u64, customer_id: String, amount_cents: i64, currency: String }
///
/// let split = VersionChange::new("3", "Splits `amount` into `amount_cents` and `currency`.")
///     .operation("POST /orders")
///     .operation("GET /orders")
///     .typed(
///         |o: OrderV2| OrderV3 {
///             id: o.id,
///             customer_id: o.customer_id,
///             amount_cents: (o.amount * 100.0).round() as i64,
///             currency: "usd".into(),
///         },
///         |o: OrderV3| OrderV2 { id: o.id, customer_id: o.customer_id, amount: o.amount_cents as f64 / 100.0 },
///     );
///
/// // Any other conversion, failing with the field it could not convert.
/// let trimmed = VersionChange::new("4", "`note` is at most 80 characters.")
///     .request(|body| match body.get("note").and_then(|n| n.as_str()) {
///         Some(note) if note.chars().count() > 80 => Err(ConversionError::at("note", "longer than 80 characters")),
///         _ => Ok(()),
///     });
/// # let _ = (rename, split, trimmed);
/// ```
#[derive(Clone)]
pub struct VersionChange {
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) operations: Vec<String>,
    pub(crate) request: Vec<Convert>,
    pub(crate) response: Vec<Convert>,
}

impl fmt::Debug for VersionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionChange")
            .field("version", &self.version)
            .field("description", &self.description)
            .field("operations", &self.operations)
            .field("request_converters", &self.request.len())
            .field("response_converters", &self.response.len())
            .finish()
    }
}

impl VersionChange {
    /// A change introduced by `version` (`"2"`, `"2024-06-20"`), described
    /// in Markdown for the changelog. It converts nothing until told how.
    pub fn new(version: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            description: description.into(),
            operations: Vec::new(),
            request: Vec::new(),
            response: Vec::new(),
        }
    }

    /// Limits the change to one operation, named as the
    /// [`ChainLayer`](crate::ChainLayer) names it (`"POST /orders"` by
    /// default); call again to add more. Without it the change applies to
    /// every operation.
    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.operations.push(operation.into());
        self
    }

    /// Adds a request upgrade: turns a request body of the version before
    /// into one of this version, in place.
    pub fn request(
        mut self,
        upgrade: impl Fn(&mut Value) -> Result<(), ConversionError> + Send + Sync + 'static,
    ) -> Self {
        self.request.push(Arc::new(upgrade));
        self
    }

    /// Adds a response downgrade: turns a response body of this version
    /// into one of the version before, in place.
    pub fn response(
        mut self,
        downgrade: impl Fn(&mut Value) -> Result<(), ConversionError> + Send + Sync + 'static,
    ) -> Self {
        self.response.push(Arc::new(downgrade));
        self
    }

    /// The top-level field `old` is called `new` from this version on:
    /// renamed in requests, renamed back in responses. A body without the
    /// field, or that is not an object, is left as it is.
    pub fn rename(self, old: impl Into<String>, new: impl Into<String>) -> Self {
        let (old, new) = (old.into(), new.into());
        let (up_from, up_to) = (old.clone(), new.clone());
        self.request(move |body| {
            rename_field(body, &up_from, &up_to);
            Ok(())
        })
        .response(move |body| {
            rename_field(body, &new, &old);
            Ok(())
        })
    }

    /// Converts whole bodies through serde structs: requests are read as
    /// `Old`, upgraded and written as `New`; responses read as `New`,
    /// downgraded and written as `Old`. A body that does not deserialize
    /// fails with the path of the offending field.
    pub fn typed<Old, New>(
        self,
        upgrade: impl Fn(Old) -> New + Send + Sync + 'static,
        downgrade: impl Fn(New) -> Old + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned + Serialize + 'static,
        New: DeserializeOwned + Serialize + 'static,
    {
        self.request_typed(upgrade).response_typed(downgrade)
    }

    /// A typed request upgrade alone, for operations whose request and
    /// response bodies differ (`CreateOrderV1` → `CreateOrderV2`).
    pub fn request_typed<Old, New>(mut self, upgrade: impl Fn(Old) -> New + Send + Sync + 'static) -> Self
    where
        Old: DeserializeOwned + 'static,
        New: Serialize + 'static,
    {
        self.request.push(through_serde(upgrade));
        self
    }

    /// A typed response downgrade alone (`OrderV2` → `OrderV1`).
    pub fn response_typed<New, Old>(mut self, downgrade: impl Fn(New) -> Old + Send + Sync + 'static) -> Self
    where
        New: DeserializeOwned + 'static,
        Old: Serialize + 'static,
    {
        self.response.push(through_serde(downgrade));
        self
    }
}

/// `convert` as an in-place conversion of a JSON value through `A` and `B`.
fn through_serde<A, B>(convert: impl Fn(A) -> B + Send + Sync + 'static) -> Convert
where
    A: DeserializeOwned + 'static,
    B: Serialize + 'static,
{
    Arc::new(move |body: &mut Value| {
        // `take` moves the tree into the deserializer instead of copying
        // it; on an error the body is discarded anyway.
        let input: A = serde_path_to_error::deserialize(body.take()).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            if path == "." {
                ConversionError::new(message)
            } else {
                ConversionError::at(path, message)
            }
        })?;
        *body = serde_json::to_value(convert(input))
            .map_err(|e| ConversionError::new(format!("the converted body does not serialize: {e}")))?;
        Ok(())
    })
}

fn rename_field(body: &mut Value, from: &str, to: &str) {
    if let Some(object) = body.as_object_mut()
        && let Some(value) = object.remove(from)
    {
        object.insert(to.to_owned(), value);
    }
}

/// Why a body could not be converted, naming the field when one is to
/// blame (`items[0].amount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    field: Option<String>,
    message: String,
}

impl ConversionError {
    /// A failure that no single field explains.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }

    /// A failure of `field` (a path such as `amount` or `items[0].sku`).
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The field to blame, if one is.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "`{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConversionError {}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Old {
        items: Vec<Item>,
    }

    #[derive(Serialize, Deserialize)]
    struct Item {
        qty: u32,
    }

    #[test]
    fn typed_failures_name_the_field() {
        let convert = through_serde(|old: Old| old);
        let mut body = json!({ "items": [{ "qty": 1 }, { "qty": "two" }] });
        let error = convert(&mut body).unwrap_err();
        assert_eq!(error.field(), Some("items[1].qty"));
        assert!(error.message().contains("invalid type"), "{error}");

        let mut body = json!("an order");
        let error = convert(&mut body).unwrap_err();
        assert_eq!(error.field(), None, "{error}");
    }

    #[test]
    fn rename_inverts_itself_and_ignores_what_is_not_there() {
        let change = VersionChange::new("2", "r").rename("a", "b");
        let mut body = json!({ "a": 1, "c": 2 });
        (change.request[0])(&mut body).unwrap();
        assert_eq!(body, json!({ "b": 1, "c": 2 }));
        (change.response[0])(&mut body).unwrap();
        assert_eq!(body, json!({ "a": 1, "c": 2 }));
        let mut list = json!([1]);
        (change.request[0])(&mut list).unwrap();
        assert_eq!(list, json!([1]));
    }
}
