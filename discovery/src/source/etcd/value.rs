//! Turning one etcd key and its value into an endpoint, or into the reason
//! it cannot be one.
//!
//! The value is a [`StaticEndpoint`] in JSON, validated exactly as a static
//! source validates it; its `id` must be the key's last part (the key
//! without the prefix), so that a delete, which carries only the key, names
//! the endpoint to remove.

use crate::{Endpoint, EndpointId, RegistryError, StaticEndpoint};

/// Why a key's value is not an endpoint: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidValue {
    /// The value's field (`weight`, `labels.track`), or `key`/`value` for
    /// the whole.
    pub(crate) field: String,
    pub(crate) reason: String,
}

/// The endpoint id a key under `prefix` stands for, if the key is UTF-8.
pub(crate) fn id_of_key(prefix: &str, key: &[u8]) -> Option<EndpointId> {
    let key = std::str::from_utf8(key).ok()?;
    key.strip_prefix(prefix).map(EndpointId::new)
}

/// The endpoint `value` describes, stored under `key`.
pub(crate) fn endpoint_of(prefix: &str, key: &[u8], value: &[u8]) -> Result<Endpoint, InvalidValue> {
    let Some(id) = id_of_key(prefix, key) else {
        return Err(InvalidValue {
            field: "key".to_owned(),
            reason: "is not UTF-8 text under the prefix".to_owned(),
        });
    };
    let mut json = serde_json::Deserializer::from_slice(value);
    let parsed: StaticEndpoint = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        InvalidValue {
            // The root's path is ".": the value as a whole is not JSON.
            field: if path == "." { "value".to_owned() } else { path },
            reason: e.into_inner().to_string(),
        }
    })?;
    if parsed.id != id.as_str() {
        return Err(InvalidValue {
            field: "id".to_owned(),
            reason: format!("is {:?} but the key names {:?}", parsed.id, id.as_str()),
        });
    }
    parsed.to_endpoint().map_err(|e| match e {
        RegistryError::InvalidField { field, reason } => InvalidValue {
            // `endpoints[api-1].weight` in a static list; here the key
            // already says which endpoint, so keep the field's own name.
            field: field
                .rsplit_once("].")
                .map_or(field.as_str(), |(_, f)| f)
                .to_owned(),
            reason: reason.to_owned(),
        },
        other => InvalidValue {
            field: "value".to_owned(),
            reason: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/orch/services/api/";

    fn field_of(key: &str, value: &str) -> String {
        match endpoint_of(PREFIX, key.as_bytes(), value.as_bytes()) {
            Ok(e) => format!("ok {}", e.id()),
            Err(e) => e.field,
        }
    }

    #[test]
    fn names_the_bad_field() {
        let key = "/orch/services/api/a";
        assert_eq!(field_of(key, r#"{"id":"a","address":"127.0.0.1:1"}"#), "ok a");
        assert_eq!(field_of(key, r#"{"id":"a","address":"nowhere"}"#), "address");
        assert_eq!(
            field_of(key, r#"{"id":"a","address":"127.0.0.1:1","weight":0}"#),
            "weight"
        );
        assert_eq!(field_of(key, r#"{"id":"b","address":"127.0.0.1:1"}"#), "id");
        assert_eq!(
            field_of(key, r#"{"id":"a","address":"127.0.0.1:1","labels":{"x":1}}"#),
            "labels.x"
        );
        assert_eq!(field_of(key, "not json"), "value");
    }
}
