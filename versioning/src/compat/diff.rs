//! The walk over two JSON Schemas side by side: resolves `$ref`s, compares
//! what it knows keyword by keyword, and says "cannot compare" about the
//! rest rather than passing over it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Change, ChangeKind, Effect};

mod container;
mod union;

/// Keywords that describe and never constrain: ignored.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Bounds: (keyword, whether a larger value narrows).
const BOUNDS: &[(&str, bool)] = &[
    ("minimum", true),
    ("exclusiveMinimum", true),
    ("minLength", true),
    ("minItems", true),
    ("minProperties", true),
    ("maximum", false),
    ("exclusiveMaximum", false),
    ("maxLength", false),
    ("maxItems", false),
    ("maxProperties", false),
];

/// Constraints whose change has no direction: any change alters.
const OPAQUE: &[&str] = &["pattern", "format", "multipleOf"];

/// Keywords compared by their own rules below.
const HANDLED: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "anyOf",
    "oneOf",
    "uniqueItems",
];

/// Deeper than any schema a program generates: a guard, not a limit.
const MAX_DEPTH: usize = 128;

pub(super) struct Walk<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// The `$ref` pairs being compared further up: met again, they are
    /// taken as equal (a recursive type compares to itself).
    refs: Vec<(String, String)>,
    pub(super) changes: Vec<Change>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(old_root: &'a Value, new_root: &'a Value) -> Self {
        Self {
            old_root,
            new_root,
            // The walk starts at both roots: a `"$ref": "#"` below (how
            // schemars writes a recursive root type) is a loop, not news.
            refs: vec![("#".to_owned(), "#".to_owned())],
            changes: Vec::new(),
        }
    }

    fn push(&mut self, path: &str, kind: ChangeKind) {
        self.changes.push(Change {
            path: path.to_owned(),
            kind,
        });
    }

    fn cannot(&mut self, path: &str, reason: impl Into<String>) {
        self.push(
            path,
            ChangeKind::CannotCompare {
                reason: reason.into(),
            },
        );
    }

    pub(super) fn compare(&mut self, path: &str, old: &'a Value, new: &'a Value) {
        if self.refs.len() > MAX_DEPTH {
            return self.cannot(path, "nested deeper than 128 references");
        }
        let (old, old_ref) = match resolve(self.old_root, old) {
            Ok(found) => found,
            Err(reason) => return self.cannot(path, format!("old schema: {reason}")),
        };
        let (new, new_ref) = match resolve(self.new_root, new) {
            Ok(found) => found,
            Err(reason) => return self.cannot(path, format!("new schema: {reason}")),
        };
        if old_ref.is_some() || new_ref.is_some() {
            let pair = (old_ref.unwrap_or_default(), new_ref.unwrap_or_default());
            if self.refs.contains(&pair) {
                return;
            }
            self.refs.push(pair);
            self.compare_resolved(path, old, new);
            self.refs.pop();
        } else {
            self.compare_resolved(path, old, new);
        }
    }

    fn compare_resolved(&mut self, path: &str, old: &'a Value, new: &'a Value) {
        if self.unions(path, old, new) {
            return;
        }
        let (old, new) = match (old, new) {
            (Value::Object(old), Value::Object(new)) => (old, new),
            (Value::Bool(a), Value::Bool(b)) if a == b => return,
            (Value::Bool(true), Value::Object(o)) | (Value::Object(o), Value::Bool(true)) if is_empty(o) => {
                return;
            }
            _ => return self.cannot(path, "a boolean schema changed, or a schema is not an object"),
        };
        if !self.types(path, old, new) {
            return;
        }
        self.enums(path, old, new);
        self.object(path, old, new);
        self.array(path, old, new);
        for (keyword, larger_narrows) in BOUNDS {
            self.bound(
                path,
                keyword,
                *larger_narrows,
                old.get(*keyword),
                new.get(*keyword),
            );
        }
        let (was, is) = (old.get("uniqueItems"), new.get("uniqueItems"));
        if truthy(was) != truthy(is) {
            let effect = if truthy(is) {
                Effect::Narrows
            } else {
                Effect::Widens
            };
            self.constraint(path, "uniqueItems", was, is, effect);
        }
        let known = |key: &String| {
            ANNOTATIONS.contains(&key.as_str())
                || HANDLED.contains(&key.as_str())
                || OPAQUE.contains(&key.as_str())
                || BOUNDS.iter().any(|(k, _)| k == key)
        };
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for key in keys {
            let (was, is) = (old.get(key), new.get(key));
            if was == is {
                continue;
            }
            if OPAQUE.contains(&key.as_str()) {
                self.constraint(path, key, was, is, Effect::Alters);
            } else if !known(key) {
                self.cannot(path, format!("`{key}` changed, and the checker does not know it"));
            }
        }
    }

    /// `type`; `false` when the types no longer overlap, so that nothing
    /// below them is worth comparing.
    fn types(&mut self, path: &str, old: &Map<String, Value>, new: &Map<String, Value>) -> bool {
        let (was, is) = match (type_set(old.get("type")), type_set(new.get("type"))) {
            (Ok(was), Ok(is)) => (was, is),
            _ => {
                self.cannot(path, "`type` is neither a string nor an array of strings");
                return false;
            }
        };
        if was == is {
            return true;
        }
        let within = |a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>| match (a, b) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a
                .iter()
                .all(|t| b.contains(t) || t == "integer" && b.contains("number")),
        };
        let effect = match (within(&was, &is), within(&is, &was)) {
            (true, _) => Effect::Widens,
            (false, true) => Effect::Narrows,
            (false, false) => Effect::Alters,
        };
        let overlap = match (&was, &is) {
            (Some(a), Some(b)) => a.iter().any(|t| {
                b.contains(t)
                    || t == "integer" && b.contains("number")
                    || t == "number" && b.contains("integer")
            }),
            _ => true,
        };
        let list = |set: Option<BTreeSet<String>>| set.map(|s| s.into_iter().collect());
        self.push(
            path,
            ChangeKind::ChangedType {
                from: list(was),
                to: list(is),
                effect,
            },
        );
        overlap
    }

    fn enums(&mut self, path: &str, old: &Map<String, Value>, new: &Map<String, Value>) {
        let values = |s: &Map<String, Value>| match (s.get("enum"), s.get("const")) {
            (Some(Value::Array(values)), None) => Ok(Some(values.clone())),
            (None, Some(value)) => Ok(Some(vec![value.clone()])),
            (None, None) => Ok(None),
            _ => Err(()),
        };
        match (values(old), values(new)) {
            (Ok(Some(was)), Ok(Some(is))) => {
                let removed: Vec<Value> = was.iter().filter(|v| !is.contains(v)).cloned().collect();
                let added: Vec<Value> = is.iter().filter(|v| !was.contains(v)).cloned().collect();
                if !removed.is_empty() {
                    self.push(path, ChangeKind::NarrowedEnum { removed });
                }
                if !added.is_empty() {
                    self.push(path, ChangeKind::WidenedEnum { added });
                }
            }
            (Ok(None), Ok(None)) => {}
            (Ok(was), Ok(is)) => {
                let effect = if is.is_some() {
                    Effect::Narrows
                } else {
                    Effect::Widens
                };
                let (was, is) = (was.map(Value::Array), is.map(Value::Array));
                self.constraint(path, "enum", was.as_ref(), is.as_ref(), effect);
            }
            _ => self.cannot(path, "`enum` is not an array, or stands beside `const`"),
        }
    }

    fn bound(
        &mut self,
        path: &str,
        keyword: &str,
        larger_narrows: bool,
        was: Option<&Value>,
        is: Option<&Value>,
    ) {
        if was == is {
            return;
        }
        let effect = match (was.map(Value::as_f64), is.map(Value::as_f64)) {
            (None, Some(Some(_))) => Effect::Narrows,
            (Some(Some(_)), None) => Effect::Widens,
            (Some(Some(a)), Some(Some(b))) if a == b => return,
            (Some(Some(a)), Some(Some(b))) if (b > a) == larger_narrows => Effect::Narrows,
            (Some(Some(_)), Some(Some(_))) => Effect::Widens,
            _ => return self.cannot(path, format!("`{keyword}` is not a number")),
        };
        self.constraint(path, keyword, was, is, effect);
    }

    fn constraint(
        &mut self,
        path: &str,
        keyword: &str,
        was: Option<&Value>,
        is: Option<&Value>,
        effect: Effect,
    ) {
        self.push(
            path,
            ChangeKind::ChangedConstraint {
                keyword: keyword.to_owned(),
                from: was.cloned(),
                to: is.cloned(),
                effect,
            },
        );
    }
}

/// Follows `$ref` (within the document) until a schema without one; the
/// last reference followed, for recursion.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> Result<(&'a Value, Option<String>), String> {
    let mut last = None;
    for _ in 0..MAX_DEPTH {
        let Some(reference) = schema.get("$ref") else {
            return Ok((schema, last));
        };
        let Some(text) = reference.as_str() else {
            return Err("`$ref` is not a string".into());
        };
        let beside = schema.as_object().is_some_and(|s| {
            s.keys()
                .any(|k| k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
        });
        if beside {
            return Err(format!("`$ref` {text:?} stands beside other keywords"));
        }
        let Some(pointer) = text.strip_prefix('#') else {
            return Err(format!("`$ref` {text:?} points outside the document"));
        };
        let decoded = pointer.replace("%25", "%");
        schema = root
            .pointer(&decoded)
            .ok_or_else(|| format!("`$ref` {text:?} points at nothing"))?;
        last = Some(text.to_owned());
    }
    Err("`$ref`s form a loop".into())
}

/// `type` as a set; `None` for "any type".
fn type_set(value: Option<&Value>) -> Result<Option<BTreeSet<String>>, ()> {
    match value {
        None => Ok(None),
        Some(Value::String(t)) => Ok(Some(BTreeSet::from([t.clone()]))),
        Some(Value::Array(types)) => types
            .iter()
            .map(|t| t.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(()),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool).unwrap_or(false)
}

fn is_empty(schema: &Map<String, Value>) -> bool {
    schema.keys().all(|k| ANNOTATIONS.contains(&k.as_str()))
}
