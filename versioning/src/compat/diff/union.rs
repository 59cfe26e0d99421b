//! `anyOf` and `oneOf`: branches matched to equal ones, the rest compared
//! pairwise only when which became which is unambiguous.

use serde_json::Value;

use super::{ANNOTATIONS, Walk};
use crate::compat::ChangeKind;

impl<'a> Walk<'a> {
    /// `anyOf`/`oneOf`: branches matched to equal ones first, the rest
    /// compared pairwise when that is unambiguous. `true` when the union
    /// decided the comparison; `false` when the other keywords of this
    /// level remain to be compared (they apply to every branch).
    pub(super) fn unions(&mut self, path: &str, old: &'a Value, new: &'a Value) -> bool {
        let union = |schema: &'a Value| {
            ["anyOf", "oneOf"]
                .into_iter()
                .find_map(|k| schema.get(k).map(|v| (k, v)))
        };
        match (union(old), union(new)) {
            (None, None) => false,
            (Some((a, _)), Some((b, _))) if a != b => {
                self.cannot(path, format!("`{a}` became `{b}`"));
                true
            }
            (Some((keyword, was)), Some((_, is))) => {
                match (was.as_array(), is.as_array()) {
                    (Some(was), Some(is)) => {
                        self.branches(path, keyword, was.iter().collect(), is.iter().collect())
                    }
                    _ => self.cannot(path, format!("`{keyword}` is not an array")),
                }
                false
            }
            // One side is a union, the other one schema: the schema is a
            // union of one, when nothing else stands beside the union.
            (Some((keyword, branches)), None) | (None, Some((keyword, branches))) => {
                let old_is_union = union(old).is_some();
                let union_side = if old_is_union { old } else { new };
                let alone = union_side.as_object().is_some_and(|s| {
                    s.keys()
                        .all(|k| k == keyword || ANNOTATIONS.contains(&k.as_str()))
                });
                let Some(branches) = branches.as_array().filter(|_| alone) else {
                    self.cannot(
                        path,
                        format!("`{keyword}` appeared or went beside other keywords"),
                    );
                    return true;
                };
                let branches: Vec<&'a Value> = branches.iter().collect();
                if old_is_union {
                    self.branches(path, keyword, branches, vec![new]);
                } else {
                    self.branches(path, keyword, vec![old], branches);
                }
                true
            }
        }
    }

    fn branches(&mut self, path: &str, keyword: &str, old: Vec<&'a Value>, new: Vec<&'a Value>) {
        let mut taken = vec![false; new.len()];
        let mut unmatched_old = Vec::new();
        for (i, was) in old.iter().enumerate() {
            let equal = (0..new.len()).find(|&j| !taken[j] && self.equivalent(was, new[j]));
            match equal {
                Some(j) => taken[j] = true,
                None => unmatched_old.push(i),
            }
        }
        let unmatched_new: Vec<usize> = (0..new.len()).filter(|&j| !taken[j]).collect();
        let at = |i: usize| format!("{path}({keyword}[{i}])");
        match (unmatched_old.len(), unmatched_new.len()) {
            (0, _) => {
                for j in unmatched_new {
                    let schema = new[j].clone();
                    self.push(&at(j), ChangeKind::AddedVariant { schema });
                }
            }
            (_, 0) => {
                for i in unmatched_old {
                    let schema = old[i].clone();
                    self.push(&at(i), ChangeKind::RemovedVariant { schema });
                }
            }
            (a, b) if a == b => {
                for (i, j) in unmatched_old.into_iter().zip(unmatched_new) {
                    self.compare(&at(j), old[i], new[j]);
                }
            }
            (a, b) => self.cannot(
                path,
                format!("{a} `{keyword}` branches changed into {b}: which became which is ambiguous"),
            ),
        }
    }

    fn equivalent(&self, old: &'a Value, new: &'a Value) -> bool {
        let mut inner = Walk::new(self.old_root, self.new_root);
        inner.refs = self.refs.clone();
        inner.compare("$", old, new);
        inner.changes.is_empty()
    }
}
