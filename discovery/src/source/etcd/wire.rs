//! The JSON messages of etcd's gRPC gateway (etcd 3.4, `/v3/...`).
//!
//! The gateway maps etcd's protobuf messages to JSON with protobuf's rules:
//! `bytes` fields (keys, values) are base64, 64-bit integers (revisions,
//! lease ids, TTLs) are strings, and fields that hold their default value
//! (revision 0, an empty list, the event type `PUT`) are left out. So every
//! field here has a default, and integers accept both strings and numbers.
//! Streaming calls (`watch`, `lease/keepalive`) answer with one
//! `{"result": ...}` or `{"error": ...}` object per line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer};

/// Base64, as the gateway encodes `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The end of the range holding every key that starts with `prefix`: the
/// prefix with its last byte incremented (bytes `0xff` carried over), as
/// etcd's own `clientv3.GetPrefixRangeEnd` computes it.
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the keyspace".
    vec![0]
}

/// Header of every answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseHeader {
    /// The store's revision when the answer was made.
    #[serde(default, deserialize_with = "int64")]
    pub(crate) revision: i64,
}

/// One key and its value.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyValue {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(crate) key: Vec<u8>,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(crate) value: Vec<u8>,
}

/// `/v3/kv/range`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub(crate) header: ResponseHeader,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
}

/// `/v3/lease/grant`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LeaseGrantResponse {
    #[serde(default, rename = "ID", deserialize_with = "int64")]
    pub(crate) id: i64,
    /// Non-empty when the grant failed.
    #[serde(default)]
    pub(crate) error: String,
}

/// One answer of `/v3/lease/keepalive`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LeaseKeepAliveResponse {
    /// The lease's remaining TTL in seconds; 0 if etcd no longer has it.
    #[serde(default, rename = "TTL", deserialize_with = "int64")]
    pub(crate) ttl: i64,
}

/// One line of a streaming answer.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamItem<T> {
    pub(crate) result: Option<T>,
    pub(crate) error: Option<GatewayError>,
}

/// The gateway's error body, as a unary error answer or in a stream.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GatewayError {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) error: String,
}

impl GatewayError {
    pub(crate) fn text(&self) -> &str {
        if self.message.is_empty() {
            &self.error
        } else {
            &self.message
        }
    }
}

/// One answer of `/v3/watch`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchResponse {
    #[serde(default)]
    pub(crate) canceled: bool,
    /// Set when the watch was refused or ended because the revisions it
    /// needed were compacted away.
    #[serde(default, deserialize_with = "int64")]
    pub(crate) compact_revision: i64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<Event>,
}

/// One change of a watched key.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Event {
    /// `PUT` is the default, so it is left out; `DELETE` is written.
    #[serde(default, rename = "type")]
    pub(crate) kind: EventKind,
    #[serde(default)]
    pub(crate) kv: KeyValue,
}

/// What happened to a key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum EventKind {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// An int64 written as a string (protobuf's JSON rule) or as a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Int64::deserialize(d)? {
        Int64::Number(n) => Ok(n),
        Int64::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_ends_after_every_key_with_the_prefix() {
        assert_eq!(prefix_range_end(b"/orch/api/"), b"/orch/api0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn decodes_what_the_gateway_leaves_out() -> Result<(), serde_json::Error> {
        let line = r#"{"result":{"header":{"revision":"7"},"events":[
            {"kv":{"key":"L2Ev","value":"e30=","mod_revision":"7"}},
            {"type":"DELETE","kv":{"key":"L2Iv"}}]}}"#;
        let item: StreamItem<WatchResponse> = serde_json::from_str(line)?;
        let watch = item.result.unwrap_or_default();
        assert_eq!(watch.events[0].kind, EventKind::Put);
        assert_eq!(watch.events[0].kv.key, b"/a/");
        assert_eq!(watch.events[0].kv.value, b"{}");
        assert_eq!(watch.events[1].kind, EventKind::Delete);
        assert!(watch.events[1].kv.value.is_empty());
        Ok(())
    }
}
