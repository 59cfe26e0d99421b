//! Reading the `Idempotency-Key` field: an RFC 8941 sf-string, with limits
//! on length, characters and entropy.
//!
//! The IETF draft makes the field an Item Structured Header whose value is
//! a String (`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`).
//! Parsing is `sfv`'s, so escapes (`\"`, `\\`) and parameters (ignored, as
//! RFC 8941 says of parameters one does not know) follow the RFC exactly.
//! On top of the syntax the layer refuses keys that would make bad record
//! names: empty, too long, with spaces, or so regular (`1`, `aaaaaaaa`)
//! that different clients are bound to pick the same one.

use http::{HeaderMap, HeaderValue};
use sfv::{BareItemFromInput, GenericBareItem, Parser, visitor::Ignored};

use super::IdempotencyConfig;
use crate::IDEMPOTENCY_KEY;

/// Why an `Idempotency-Key` was refused. Its `Display` is the `detail` of
/// the `400` problem (or the message of the `INVALID_ARGUMENT` status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The field was sent more than once.
    #[error("the Idempotency-Key field must be sent once")]
    Repeated,
    /// The value is not an sf-string (`"…"`), or (with bare keys accepted)
    /// neither an sf-string nor a bare run of visible characters.
    #[error(
        "the Idempotency-Key must be a quoted string (RFC 8941 sf-string), like \"8e03978e-40d5-43e8-bc93-6894a57f9324\""
    )]
    NotSfString,
    /// The key is empty.
    #[error("the Idempotency-Key must not be empty")]
    Empty,
    /// The key holds a space or a character outside visible ASCII.
    #[error("the Idempotency-Key may hold only visible ASCII characters, without spaces")]
    InvalidCharacter,
    /// The key is longer than the configured maximum.
    #[error("the Idempotency-Key has {length} characters, more than the {max} allowed")]
    TooLong {
        /// The key's length.
        length: usize,
        /// The longest key accepted.
        max: usize,
    },
    /// The key is shorter than the configured minimum.
    #[error(
        "the Idempotency-Key has {length} characters, fewer than the {min} required: use a random value such as a UUID"
    )]
    TooShort {
        /// The key's length.
        length: usize,
        /// The shortest key accepted.
        min: usize,
    },
    /// The key has too few distinct characters to be a random value.
    #[error(
        "the Idempotency-Key has {distinct} distinct characters, fewer than the {min} required: use a random value such as a UUID"
    )]
    LowEntropy {
        /// Distinct characters in the key.
        distinct: usize,
        /// The fewest accepted.
        min: usize,
    },
}

/// The key of a request, if it has one: `Ok(None)` when the field is
/// absent.
pub(crate) fn key_of(headers: &HeaderMap, config: &IdempotencyConfig) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    parse(value, config).map(Some)
}

/// Parses one field value and checks the key against `config`'s limits.
pub(crate) fn parse(value: &HeaderValue, config: &IdempotencyConfig) -> Result<String, KeyError> {
    let bytes = value.as_bytes();
    let key = match sf_string(bytes) {
        Some(key) => key,
        None if config.accept_bare_keys && !bytes.trim_ascii().starts_with(b"\"") => {
            // Not UTF-8 means not ASCII: the character check below says so.
            String::from_utf8_lossy(bytes.trim_ascii()).into_owned()
        }
        None => return Err(KeyError::NotSfString),
    };
    check(&key, config)?;
    Ok(key)
}

/// The string of an sf-string item, or `None` if `bytes` is another item
/// or no item at all.
fn sf_string(bytes: &[u8]) -> Option<String> {
    let mut string = None;
    Parser::new(bytes)
        .parse_item_with_visitor(|item: BareItemFromInput<'_>| {
            if let GenericBareItem::String(value) = item {
                string = Some(value.as_str().to_owned());
            }
            Ok::<_, std::convert::Infallible>(Ignored)
        })
        .ok()?;
    string
}

fn check(key: &str, config: &IdempotencyConfig) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::InvalidCharacter);
    }
    let length = key.len();
    if length > config.max_key_length {
        return Err(KeyError::TooLong {
            length,
            max: config.max_key_length,
        });
    }
    if length < config.min_key_length {
        return Err(KeyError::TooShort {
            length,
            min: config.min_key_length,
        });
    }
    let mut seen = [false; 128];
    let mut distinct = 0;
    for b in key.bytes() {
        // Every byte is ASCII (checked above), so it indexes the table.
        let slot = &mut seen[usize::from(b & 0x7f)];
        distinct += usize::from(!*slot);
        *slot = true;
    }
    if distinct < config.min_key_distinct_chars {
        return Err(KeyError::LowEntropy {
            distinct,
            min: config.min_key_distinct_chars,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(value: &str, config: &IdempotencyConfig) -> Result<String, KeyError> {
        parse(&HeaderValue::from_str(value).unwrap(), config)
    }

    #[test]
    fn sf_strings_are_keys_and_everything_else_is_refused() {
        let config = IdempotencyConfig::default();
        let uuid = "018f6b2e-7c1a-7000-8000-0000000000aa";
        assert_eq!(parse_str(&format!("\"{uuid}\""), &config).unwrap(), uuid);
        assert_eq!(
            parse_str(&format!(" \"{uuid}\";v=1 "), &config).unwrap(),
            uuid,
            "parameters are ignored"
        );
        assert_eq!(parse_str(r#""ab\"cd\\efgh""#, &config).unwrap(), r#"ab"cd\efgh"#);
        assert_eq!(parse_str(uuid, &config), Err(KeyError::NotSfString));
        assert_eq!(parse_str("\"unterminated", &config), Err(KeyError::NotSfString));
        assert_eq!(parse_str("\"a\", \"b\"", &config), Err(KeyError::NotSfString));
        assert_eq!(parse_str("42", &config), Err(KeyError::NotSfString));
        assert_eq!(parse_str("\"\"", &config), Err(KeyError::Empty));
        assert_eq!(
            parse_str("\"1\"", &config),
            Err(KeyError::TooShort { length: 1, min: 8 })
        );
        assert_eq!(
            parse_str("\"abcd efgh\"", &config),
            Err(KeyError::InvalidCharacter)
        );
        assert_eq!(
            parse_str("\"aaaabbbbcccc\"", &config),
            Err(KeyError::LowEntropy { distinct: 3, min: 5 })
        );
        let long = format!("\"{}\"", "0123456789".repeat(26));
        assert_eq!(
            parse_str(&long, &config),
            Err(KeyError::TooLong {
                length: 260,
                max: 255
            })
        );
    }

    #[test]
    fn bare_keys_only_when_accepted() {
        let bare = IdempotencyConfig::default().accept_bare_keys(true);
        let uuid = "018f6b2e-7c1a-7000-8000-0000000000aa";
        assert_eq!(parse_str(uuid, &bare).unwrap(), uuid);
        assert_eq!(parse_str(&format!("\"{uuid}\""), &bare).unwrap(), uuid);
        assert_eq!(parse_str("\"broken", &bare), Err(KeyError::NotSfString));
        assert_eq!(parse_str("abc defgh", &bare), Err(KeyError::InvalidCharacter));
    }

    #[test]
    fn a_repeated_field_is_refused_and_an_absent_one_is_none() {
        let config = IdempotencyConfig::default();
        let mut headers = HeaderMap::new();
        assert_eq!(key_of(&headers, &config), Ok(None));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"abcdefgh\""));
        assert_eq!(key_of(&headers, &config), Ok(Some("abcdefgh".into())));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"abcdefgh\""));
        assert_eq!(key_of(&headers, &config), Err(KeyError::Repeated));
    }
}
