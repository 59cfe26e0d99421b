//! Between rows and the store's types: the saved response as columns, and
//! what a claim's row means.

use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::Row;

use crate::idempotency::{Claim, FencingToken, Fingerprint, ResponseStatus, SavedResponse};

/// The shortest retry hint given: a lease that ends within the statement
/// still tells the client to wait a moment, never "now".
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

/// A [`SavedResponse`] as the `complete` statement's parameters.
pub(super) struct Columns<'a> {
    pub(super) protocol: &'static str,
    pub(super) status: i32,
    pub(super) header_names: Vec<&'a str>,
    pub(super) header_values: Vec<&'a [u8]>,
    pub(super) body: &'a [u8],
    pub(super) trailer_names: Vec<&'a str>,
    pub(super) trailer_values: Vec<&'a [u8]>,
}

impl<'a> From<&'a SavedResponse> for Columns<'a> {
    fn from(response: &'a SavedResponse) -> Self {
        let (protocol, status) = match response.status {
            ResponseStatus::Http(code) => ("http", i32::from(code)),
            ResponseStatus::Grpc(code) => ("grpc", code),
        };
        let names = |fields: &'a [(String, Bytes)]| fields.iter().map(|(name, _)| name.as_str()).collect();
        let values = |fields: &'a [(String, Bytes)]| fields.iter().map(|(_, value)| &value[..]).collect();
        Self {
            protocol,
            status,
            header_names: names(&response.headers),
            header_values: values(&response.headers),
            body: &response.body,
            trailer_names: names(&response.trailers),
            trailer_values: values(&response.trailers),
        }
    }
}

/// What the claim statement's row means, or `None` when the statement
/// should run again: its snapshot missed a change that a concurrent claim
/// committed (the record is not visible yet, or is visible as claimable
/// although the `INSERT … ON CONFLICT`, which sees the latest version, did
/// not take it).
pub(super) fn decide(
    row: &Row,
    scope: &str,
    key: &str,
    fingerprint: &Fingerprint,
) -> Result<Option<Claim>, tokio_postgres::Error> {
    if let Some(generation) = row.try_get::<_, Option<i64>>("acquired")? {
        // The sequence starts at 1: never negative.
        let generation = u64::try_from(generation).unwrap_or_default();
        return Ok(Some(Claim::Acquired {
            token: FencingToken::new(scope, key, generation),
        }));
    }
    let Some(stored) = row.try_get::<_, Option<Vec<u8>>>("fingerprint")? else {
        return Ok(None);
    };
    let same = stored == fingerprint.as_bytes();
    let in_progress = row.try_get::<_, &str>("state")? == "in_progress";
    let expired: bool = row.try_get("expired")?;
    let lease_over = row.try_get::<_, Option<bool>>("lease_over")? == Some(true);
    if expired || (in_progress && lease_over && same) {
        return Ok(None);
    }
    if !same {
        return Ok(Some(Claim::Mismatch));
    }
    if in_progress {
        let left = row
            .try_get::<_, Option<i64>>("lease_left_us")?
            .unwrap_or_default();
        let left = Duration::from_micros(u64::try_from(left).unwrap_or_default());
        return Ok(Some(Claim::InProgress {
            retry_after: left.max(MIN_RETRY_AFTER),
        }));
    }
    response(row).map(|saved| Some(Claim::Completed(saved)))
}

/// The saved response of a completed row. The table's CHECK constraints
/// guarantee the columns are set; a status out of range (a row written by
/// hand) reads as HTTP 500 rather than failing the replay.
fn response(row: &Row) -> Result<SavedResponse, tokio_postgres::Error> {
    let status: i32 = row.try_get("status")?;
    let status = match row.try_get::<_, &str>("protocol")? {
        "grpc" => ResponseStatus::Grpc(status),
        _ => ResponseStatus::Http(u16::try_from(status).unwrap_or(500)),
    };
    let fields = |names: &str, values: &str| -> Result<Vec<(String, Bytes)>, tokio_postgres::Error> {
        let names: Vec<String> = row.try_get(names)?;
        let values: Vec<Vec<u8>> = row.try_get(values)?;
        Ok(names
            .into_iter()
            .zip(values.into_iter().map(Bytes::from))
            .collect())
    };
    let mut saved = SavedResponse::new(status, Bytes::from(row.try_get::<_, Vec<u8>>("body")?));
    saved.headers = fields("header_names", "header_values")?;
    saved.trailers = fields("trailer_names", "trailer_values")?;
    Ok(saved)
}
