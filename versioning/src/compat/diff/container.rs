//! Containers: an object's `properties`, `required` and
//! `additionalProperties`; an array's `items` and `prefixItems`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::Walk;
use crate::compat::{ChangeKind, Effect};

impl<'a> Walk<'a> {
    pub(super) fn object(&mut self, path: &str, old: &'a Map<String, Value>, new: &'a Map<String, Value>) {
        let malformed = |s: &Map<String, Value>| {
            s.get("properties").is_some_and(|p| !p.is_object())
                || s.get("required").is_some_and(|r| {
                    r.as_array()
                        .is_none_or(|names| names.iter().any(|n| !n.is_string()))
                })
        };
        if malformed(old) || malformed(new) {
            return self.cannot(
                path,
                "`properties` is not an object, or `required` not an array of names",
            );
        }
        let empty = &EMPTY;
        let properties = |s: &'a Map<String, Value>| s.get("properties").and_then(Value::as_object);
        let (was, is) = (properties(old).unwrap_or(empty), properties(new).unwrap_or(empty));
        let required = |s: &Map<String, Value>| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old_required, new_required) = (required(old), required(new));
        let names: BTreeSet<&String> = was
            .keys()
            .chain(is.keys())
            .chain(&old_required)
            .chain(&new_required)
            .collect();
        for name in names {
            let at = field_path(path, name);
            let (had, has) = (old_required.contains(name), new_required.contains(name));
            match (was.get(name), is.get(name)) {
                (Some(_), None) => self.push(&at, ChangeKind::RemovedField),
                (None, Some(_)) if has => self.push(&at, ChangeKind::NewRequiredField),
                (None, Some(_)) => self.push(&at, ChangeKind::AddedOptionalField),
                (Some(a), Some(b)) => {
                    match (had, has) {
                        (false, true) => self.push(&at, ChangeKind::NowRequired),
                        (true, false) => self.push(&at, ChangeKind::NowOptional),
                        _ => {}
                    }
                    self.compare(&at, a, b);
                }
                // Required without a schema of its own: only `required` speaks.
                (None, None) => match (had, has) {
                    (false, true) => self.push(&at, ChangeKind::NewRequiredField),
                    (true, false) => self.push(&at, ChangeKind::NowOptional),
                    _ => {}
                },
            }
        }
        const OPEN: &Value = &Value::Bool(true);
        let (was, is) = (
            old.get("additionalProperties").unwrap_or(OPEN),
            new.get("additionalProperties").unwrap_or(OPEN),
        );
        match (was, is) {
            (Value::Object(_), Value::Object(_)) => self.compare(&format!("{path}.*"), was, is),
            _ if was == is => {}
            (Value::Bool(true), _) | (_, Value::Bool(false)) => {
                self.constraint(path, "additionalProperties", Some(was), Some(is), Effect::Narrows);
            }
            _ => self.constraint(path, "additionalProperties", Some(was), Some(is), Effect::Widens),
        }
    }

    pub(super) fn array(&mut self, path: &str, old: &'a Map<String, Value>, new: &'a Map<String, Value>) {
        for keyword in ["items", "prefixItems"] {
            match (old.get(keyword), new.get(keyword)) {
                (None, None) => {}
                (Some(Value::Array(was)), Some(Value::Array(is))) if was.len() == is.len() => {
                    for (i, (a, b)) in was.iter().zip(is).enumerate() {
                        self.compare(&format!("{path}[{i}]"), a, b);
                    }
                }
                (Some(Value::Array(_)), _) | (_, Some(Value::Array(_))) => {
                    self.cannot(path, format!("tuple `{keyword}` changed length or form"));
                }
                (Some(was), Some(is)) => self.compare(&format!("{path}[*]"), was, is),
                (was, is) => {
                    let effect = if is.is_some() {
                        Effect::Narrows
                    } else {
                        Effect::Widens
                    };
                    self.constraint(path, keyword, was, is, effect);
                }
            }
        }
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// `$.customer.email`, `$["display name"]`.
fn field_path(path: &str, name: &str) -> String {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{name}")
    } else {
        format!("{path}[{name:?}]")
    }
}
