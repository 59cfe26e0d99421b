//! The saved response as bytes in a Redis hash field.
//!
//! A small length-prefixed format rather than JSON: bodies and `-bin`
//! metadata are arbitrary bytes, and a replay decodes without a parser.
//! Layout (integers big-endian): version `1`; kind (`0` HTTP, `1` gRPC);
//! the status code as `i32`; headers and trailers, each a `u32` count of
//! (`u32` length, name, `u32` length, value) pairs; the body as `u32`
//! length and bytes. A record written by a newer version is refused, not
//! misread.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::idempotency::{ResponseStatus, SavedResponse};

const VERSION: u8 = 1;

/// Encodes `response`. Lengths fit in `u32` because the store refuses
/// responses above its `max_response_bytes`, itself below 512 MiB.
pub(super) fn encode(response: &SavedResponse) -> Vec<u8> {
    let fields = response.headers.len() + response.trailers.len();
    let mut out = BytesMut::with_capacity(response.size() + 14 + fields * 8);
    out.put_u8(VERSION);
    let (kind, code) = match response.status {
        ResponseStatus::Http(code) => (0, i32::from(code)),
        ResponseStatus::Grpc(code) => (1, code),
    };
    out.put_u8(kind);
    out.put_i32(code);
    for list in [&response.headers, &response.trailers] {
        put_len(&mut out, list.len());
        for (name, value) in list {
            put_len(&mut out, name.len());
            out.put_slice(name.as_bytes());
            put_len(&mut out, value.len());
            out.put_slice(value);
        }
    }
    put_len(&mut out, response.body.len());
    out.put_slice(&response.body);
    out.to_vec()
}

fn put_len(out: &mut BytesMut, len: usize) {
    debug_assert!(
        u32::try_from(len).is_ok(),
        "lengths are bounded by max_response_bytes"
    );
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// Why a saved response could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt saved response in Redis: {0}")]
pub(super) struct CorruptRecord(&'static str);

/// Decodes what [`encode`] wrote.
pub(super) fn decode(bytes: Vec<u8>) -> Result<SavedResponse, CorruptRecord> {
    let mut buf = Bytes::from(bytes);
    if buf.remaining() < 6 {
        return Err(CorruptRecord("truncated header"));
    }
    if buf.get_u8() != VERSION {
        return Err(CorruptRecord("unknown version"));
    }
    let status = match (buf.get_u8(), buf.get_i32()) {
        (0, code) => {
            ResponseStatus::Http(u16::try_from(code).map_err(|_| CorruptRecord("HTTP status out of range"))?)
        }
        (1, code) => ResponseStatus::Grpc(code),
        _ => return Err(CorruptRecord("unknown status kind")),
    };
    let headers = take_fields(&mut buf)?;
    let trailers = take_fields(&mut buf)?;
    let body = take_bytes(&mut buf)?;
    if buf.has_remaining() {
        return Err(CorruptRecord("trailing bytes"));
    }
    let mut response = SavedResponse::new(status, body);
    response.headers = headers;
    response.trailers = trailers;
    Ok(response)
}

fn take_fields(buf: &mut Bytes) -> Result<Vec<(String, Bytes)>, CorruptRecord> {
    let count = take_len(buf)?;
    // Each field takes at least eight bytes: a count larger than that
    // allows is corrupt, and must not size an allocation.
    if count > buf.remaining() / 8 {
        return Err(CorruptRecord("field count exceeds the record"));
    }
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_bytes(buf)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| CorruptRecord("field name not UTF-8"))?;
        fields.push((name, take_bytes(buf)?));
    }
    Ok(fields)
}

fn take_bytes(buf: &mut Bytes) -> Result<Bytes, CorruptRecord> {
    let len = take_len(buf)?;
    if buf.remaining() < len {
        return Err(CorruptRecord("length exceeds the record"));
    }
    Ok(buf.split_to(len))
}

fn take_len(buf: &mut Bytes) -> Result<usize, CorruptRecord> {
    if buf.remaining() < 4 {
        return Err(CorruptRecord("truncated length"));
    }
    usize::try_from(buf.get_u32()).map_err(|_| CorruptRecord("length exceeds usize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedResponse {
        SavedResponse::new(ResponseStatus::Grpc(9), Bytes::from_static(&[0, 1, 255]))
            .with_header("content-type", "application/grpc")
            .with_header("vary", "a")
            .with_header("vary", "b")
            .with_trailer("grpc-message", "account frozen")
            .with_trailer("detail-bin", Bytes::from_static(&[0, 159, 255]))
    }

    #[test]
    fn round_trips_every_part() {
        for response in [
            sample(),
            SavedResponse::new(ResponseStatus::Http(204), Bytes::new()),
            SavedResponse::new(ResponseStatus::Grpc(-1), Bytes::from_static(b"x")),
        ] {
            let decoded = decode(encode(&response)).expect("decodes");
            assert_eq!(decoded, response);
        }
    }

    #[test]
    fn every_truncation_is_refused_not_misread() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(bytes[..len].to_vec()).is_err(), "prefix of {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(longer).is_err());
        let mut newer = bytes;
        newer[0] = VERSION + 1;
        assert!(decode(newer).is_err());
    }
}
