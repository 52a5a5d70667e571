//! The tag index: which device and module twins hold a given primitive value at a given tag
//! path. It is derived from the twin store and bounded by it (one entry per primitive tag leaf
//! of each twin). Nothing is indexed until the first query that needs it; from then on every
//! change of a twin marks its device stale (in [`super::twin_store::TwinStore::state_mut`] and
//! the twins' create and remove), and the next lookup re-indexes just the stale devices.

use crate::query::plan::{IndexValue, index_value};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A record with tags: a device's own, and each of its modules'. The twin store's entries
/// implement it, so the index needs nothing else of the store.
pub(crate) trait Tagged {
    fn tags(&self) -> &Map<String, Value>;
    fn module_tags(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)>;
}

/// The twins holding each value at each path: path below `tags` -> value -> twins.
type Postings<K> = HashMap<Vec<String>, HashMap<IndexValue, BTreeSet<K>>>;

/// One indexed tag leaf of a device: the module (`None` for the device twin), path and value.
type Entry = (Option<String>, Vec<String>, IndexValue);

/// The stale set's bound on a small registry.
const MIN_STALE: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct TagIndex {
    built: bool,
    /// Devices whose tags, or whose modules' tags, may have changed since they were indexed.
    stale: HashSet<String>,
    devices: Postings<String>,
    modules: Postings<(String, String)>,
    /// What each device is indexed under, so that it can be taken out again.
    entries: HashMap<String, Vec<Entry>>,
}

impl TagIndex {
    /// Notes that a device's twins may have changed (or appeared, or gone); `records` is
    /// the number of devices.
    ///
    /// The stale set is bounded by the registry (at least [`MIN_STALE`]): churn through many
    /// distinct ids between lookups would otherwise grow it without end. Past the bound the
    /// index is dropped and rebuilt at the next lookup, which costs no more than re-indexing
    /// that many stale devices would.
    pub(crate) fn touch(&mut self, device_id: &str, records: usize) {
        if !self.built || self.stale.contains(device_id) {
            return;
        }
        if self.stale.len() >= records.max(MIN_STALE) {
            *self = Self::default();
        } else {
            self.stale.insert(device_id.to_owned());
        }
    }

    /// Brings the index up to date with the twins.
    pub(crate) fn refresh<R: Tagged>(&mut self, records: &BTreeMap<String, R>) {
        if !self.built {
            *self = Self {
                built: true,
                ..Self::default()
            };
            for (id, rec) in records {
                self.add(id, rec);
            }
            return;
        }
        for id in std::mem::take(&mut self.stale) {
            self.remove(&id);
            if let Some(rec) = records.get(&id) {
                self.add(&id, rec);
            }
        }
    }

    /// The devices whose twin holds `value` at `path` (call [`Self::refresh`] first).
    pub(crate) fn devices(&self, path: &[String], value: &IndexValue) -> Option<&BTreeSet<String>> {
        self.devices.get(path)?.get(value)
    }

    /// The modules whose twin holds `value` at `path` (call [`Self::refresh`] first).
    pub(crate) fn modules(
        &self,
        path: &[String],
        value: &IndexValue,
    ) -> Option<&BTreeSet<(String, String)>> {
        self.modules.get(path)?.get(value)
    }

    fn add<R: Tagged>(&mut self, id: &str, rec: &R) {
        let mut entries = Vec::new();
        for (path, value) in leaves(rec.tags()) {
            insert(&mut self.devices, &path, value.clone(), id.to_owned());
            entries.push((None, path, value));
        }
        for (m, tags) in rec.module_tags() {
            for (path, value) in leaves(tags) {
                let key = (id.to_owned(), m.clone());
                insert(&mut self.modules, &path, value.clone(), key);
                entries.push((Some(m.clone()), path, value));
            }
        }
        if !entries.is_empty() {
            self.entries.insert(id.to_owned(), entries);
        }
    }

    fn remove(&mut self, id: &str) {
        for (module, path, value) in self.entries.remove(id).unwrap_or_default() {
            match module {
                None => take_out(&mut self.devices, &path, &value, &id.to_owned()),
                Some(m) => take_out(&mut self.modules, &path, &value, &(id.to_owned(), m)),
            }
        }
    }
}

fn insert<K: Ord>(postings: &mut Postings<K>, path: &[String], value: IndexValue, key: K) {
    postings
        .entry(path.to_vec())
        .or_default()
        .entry(value)
        .or_default()
        .insert(key);
}

/// Removes one posting, and the sets it leaves empty, so that the index never outgrows the
/// registry.
fn take_out<K: Ord>(postings: &mut Postings<K>, path: &[String], value: &IndexValue, key: &K) {
    let Some(by_value) = postings.get_mut(path) else {
        return;
    };
    if let Some(keys) = by_value.get_mut(value) {
        keys.remove(key);
        if keys.is_empty() {
            by_value.remove(value);
        }
    }
    if by_value.is_empty() {
        postings.remove(path);
    }
}

/// Every primitive leaf of a tags object that the evaluator can reach: through nested objects
/// only (paths do not index into arrays). Walked with an explicit stack, so that a deep
/// document restored from `--state` cannot exhaust the thread's stack.
fn leaves(tags: &Map<String, Value>) -> Vec<(Vec<String>, IndexValue)> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, &Map<String, Value>)> = vec![(Vec::new(), tags)];
    while let Some((prefix, map)) = stack.pop() {
        for (k, v) in map {
            let mut path = prefix.clone();
            path.push(k.clone());
            match v {
                Value::Object(inner) => stack.push((path, inner)),
                other => {
                    if let Some(value) = index_value(other) {
                        out.push((path, value));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_are_primitives_reachable_through_objects() {
        let tags = json!({"a": {"b": "x", "c": [1, 2], "d": {"e": true}}, "n": 1.0, "z": null});
        let mut got = leaves(tags.as_object().unwrap());
        got.sort();
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (path(&["a", "b"]), IndexValue::String("x".into())),
                (path(&["a", "d", "e"]), IndexValue::Bool(true)),
                (path(&["n"]), IndexValue::Number(1.0f64.to_bits())),
                (path(&["z"]), IndexValue::Null),
            ]
        );
    }

    /// A record without modules, for tests that need no registry.
    struct Plain(Map<String, Value>);

    impl Tagged for Plain {
        fn tags(&self) -> &Map<String, Value> {
            &self.0
        }
        fn module_tags(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
            std::iter::empty()
        }
    }

    #[test]
    fn churn_between_lookups_stays_bounded() {
        let mut index = TagIndex::default();
        index.refresh(&BTreeMap::<String, Plain>::new());
        for i in 0..MIN_STALE * 3 {
            index.touch(&format!("gone-{i}"), 0);
            assert!(index.stale.len() <= MIN_STALE);
        }
        index.refresh(&BTreeMap::<String, Plain>::new());
        assert!(index.built && index.stale.is_empty() && index.entries.is_empty());
        let tagged = BTreeMap::from([(
            "d".to_owned(),
            Plain(
                serde_json::json!({"a": 1})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )]);
        index.touch("d", 1);
        index.refresh(&tagged);
        assert!(
            index
                .devices(&["a".to_owned()], &IndexValue::Number(1.0f64.to_bits()))
                .is_some_and(|s| s.contains("d"))
        );
    }
}
