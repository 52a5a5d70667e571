//! The twin store: every device and module twin (tags, desired, reported, `$metadata`,
//! versions, etags), keyed by device id and module id, under a lock of its own so that twin
//! traffic (reported patches above all) never waits for the identity registry.
//!
//! A twin exists exactly while its identity does: the registry's create and delete change
//! both stores while holding both locks (registry first, see [`crate::locks`]) and hand both
//! stores' rows to `--state` in one batch. What the twin store keeps of an identity is only
//! the cache of its service-side document, which is stamped with the revision of the
//! identity record it was built from (see [`super::registry::DeviceRecord::rev`]).

use super::persistence::{Kind, Loaded, Write};
use super::tag_index::{TagIndex, Tagged};
use super::twin_state::TwinState;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One twin and the cache of its service-side document.
#[derive(Debug)]
pub(crate) struct TwinEntry {
    pub(crate) state: TwinState,
    /// The document and the identity revision it was built with.
    doc: Option<(u64, Arc<Value>)>,
}

impl TwinEntry {
    fn new(state: TwinState) -> Self {
        Self { state, doc: None }
    }

    /// The cached service document if it was built from identity revision `rev`, else the
    /// one `build` makes (then cached).
    pub(crate) fn document(
        &mut self,
        rev: u64,
        build: impl FnOnce(&TwinState) -> Option<Value>,
    ) -> Option<Arc<Value>> {
        if let Some((r, doc)) = &self.doc
            && *r == rev
        {
            return Some(doc.clone());
        }
        let doc = Arc::new(build(&self.state)?);
        self.doc = Some((rev, doc.clone()));
        Some(doc)
    }
}

/// A device's twin and its modules' twins.
#[derive(Debug)]
pub(crate) struct DeviceTwins {
    pub(crate) twin: TwinEntry,
    pub(crate) modules: BTreeMap<String, TwinEntry>,
}

impl Tagged for DeviceTwins {
    fn tags(&self) -> &Map<String, Value> {
        &self.twin.state.tags
    }

    fn module_tags(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
        self.modules.iter().map(|(m, e)| (m, &e.state.tags))
    }
}

/// Every twin, what changed since the last hand-over to `--state`, and the tag index.
#[derive(Debug, Default)]
pub(crate) struct TwinStore {
    twins: BTreeMap<String, DeviceTwins>,
    /// `None` while changes are not tracked (no `--state`); else the twins changed since the
    /// last [`Self::take_changes`], by (device id, module id).
    changes: Option<BTreeSet<(String, Option<String>)>>,
    /// Derived from the tags; kept current by every mutator here.
    tag_index: TagIndex,
    /// The last batch that carried twin rows to `--state`.
    pub(crate) handover: super::durability::Handover,
}

/// The store key of a twin: `device` or `device/module` (`/` is not allowed in ids).
pub(crate) fn twin_key(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        None => device_id.to_owned(),
        Some(m) => format!("{device_id}/{m}"),
    }
}

impl TwinStore {
    /// Starts recording changes for `--state`, with nothing changed yet.
    pub(crate) fn track_changes_from_now(&mut self) {
        self.changes = Some(BTreeSet::new());
    }

    /// Starts recording changes for `--state`; every twin counts as changed.
    pub(crate) fn track_changes(&mut self) {
        let mut all = BTreeSet::new();
        for (d, t) in &self.twins {
            all.insert((d.clone(), None));
            all.extend(t.modules.keys().map(|m| (d.clone(), Some(m.clone()))));
        }
        self.changes = Some(all);
    }

    fn note(&mut self, device_id: &str, module_id: Option<&str>) {
        if let Some(c) = &mut self.changes {
            c.insert((device_id.to_owned(), module_id.map(str::to_owned)));
        }
        let devices = self.twins.len();
        self.tag_index.touch(device_id, devices);
    }

    /// A twin for reading and caching its document (a cache is not a change).
    pub(crate) fn entry(
        &mut self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Option<&mut TwinEntry> {
        let t = self.twins.get_mut(device_id)?;
        match module_id {
            None => Some(&mut t.twin),
            Some(m) => t.modules.get_mut(m),
        }
    }

    /// A twin for changing: it counts as changed and its document is dropped.
    pub(crate) fn state_mut(
        &mut self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Option<&mut TwinState> {
        self.entry(device_id, module_id)?;
        self.note(device_id, module_id);
        let e = self.entry(device_id, module_id)?;
        e.doc = None;
        Some(&mut e.state)
    }

    /// A new device's twin (replacing any left over).
    pub(crate) fn create_device(&mut self, device_id: &str, twin: TwinState) {
        let old = self.twins.insert(
            device_id.to_owned(),
            DeviceTwins {
                twin: TwinEntry::new(twin),
                modules: BTreeMap::new(),
            },
        );
        for m in old.map(|o| o.modules.into_keys()).into_iter().flatten() {
            self.note(device_id, Some(&m));
        }
        self.note(device_id, None);
    }

    /// A new module's twin; `false` when its device has no twin.
    pub(crate) fn create_module(
        &mut self,
        device_id: &str,
        module_id: &str,
        twin: TwinState,
    ) -> bool {
        let Some(t) = self.twins.get_mut(device_id) else {
            return false;
        };
        t.modules.insert(module_id.to_owned(), TwinEntry::new(twin));
        self.note(device_id, Some(module_id));
        true
    }

    /// Removes a device's twin and its modules' twins.
    pub(crate) fn remove_device(&mut self, device_id: &str) {
        if let Some(t) = self.twins.remove(device_id) {
            for m in t.modules.keys() {
                self.note(device_id, Some(m));
            }
            self.note(device_id, None);
        }
    }

    /// Removes a module's twin.
    pub(crate) fn remove_module(&mut self, device_id: &str, module_id: &str) {
        if let Some(t) = self.twins.get_mut(device_id)
            && t.modules.remove(module_id).is_some()
        {
            self.note(device_id, Some(module_id));
        }
    }

    /// The tag index, brought up to date with the twins first.
    pub(crate) fn tag_index(&mut self) -> &TagIndex {
        self.tag_index.refresh(&self.twins);
        &self.tag_index
    }

    /// The twins changed since the last call, as `--state` rows (deleted ones as `None`).
    pub(crate) fn take_changes(&mut self) -> Vec<Write> {
        let Some(changes) = self.changes.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
        changes
            .into_iter()
            .map(|(d, m)| {
                let value = self
                    .twins
                    .get(&d)
                    .and_then(|t| match &m {
                        None => Some(&t.twin),
                        Some(m) => t.modules.get(m),
                    })
                    .and_then(|e| serde_json::to_vec(&e.state).ok());
                ((Kind::Twin, twin_key(&d, m.as_deref())), value)
            })
            .collect()
    }

    /// The twins from `--state`'s rows. A module twin whose device twin is missing, or a
    /// twin without its identity, is an unreadable state (checked against `has_identity`).
    pub(crate) fn from_rows(
        loaded: &mut Loaded,
        has_identity: impl Fn(&str, Option<&str>) -> bool,
    ) -> Result<Self, String> {
        let mut store = Self::default();
        let mut modules = Vec::new();
        for (key, v) in loaded.take(Kind::Twin) {
            let state: TwinState =
                serde_json::from_slice(&v).map_err(|e| format!("twin {key} ({e})"))?;
            let (d, m) = match key.split_once('/') {
                Some((d, m)) => (d.to_owned(), Some(m.to_owned())),
                None => (key.clone(), None),
            };
            if !has_identity(&d, m.as_deref()) {
                return Err(format!("twin {key} (it has no identity)"));
            }
            match m {
                None => store.create_device(&d, state),
                Some(m) => modules.push((d, m, state)),
            }
        }
        for (d, m, state) in modules {
            if !store.create_module(&d, &m, state) {
                return Err(format!("twin {d}/{m} (its device has no twin)"));
            }
        }
        store.changes = None;
        Ok(store)
    }

    /// Adds a twin for every identity that has none (an identity created by a seed or the
    /// builder before its twin was, or a state missing rows): `identities` lists them all.
    pub(crate) fn complete<'a>(
        &mut self,
        identities: impl Iterator<Item = (&'a str, Option<&'a str>)>,
        now: &str,
    ) {
        for (d, m) in identities {
            match m {
                None if !self.twins.contains_key(d) => self.create_device(d, TwinState::new(now)),
                Some(m)
                    if self
                        .twins
                        .get(d)
                        .is_some_and(|t| !t.modules.contains_key(m)) =>
                {
                    self.create_module(d, m, TwinState::new(now));
                }
                _ => {}
            }
        }
    }
}
