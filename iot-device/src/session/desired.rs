//! Desired-property tracking: the merged desired document, the last `$version` handed to the
//! application, and a bounded queue of updates that coalesces into one `Full` when the
//! application falls behind (desired properties are state, not a log).

use crate::twin::{DesiredKind, DesiredUpdate};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// What the session should do after a desired event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DesiredNeed {
    /// Nothing more.
    Nothing,
    /// A version was skipped: fetch the twin to resynchronise.
    Resync,
}

#[derive(Debug)]
pub(crate) struct Desired {
    /// The merged desired document at `version` (what a `Full` carries).
    doc: Map<String, Value>,
    /// The version of `doc`; `None` until the first twin GET answered.
    version: Option<u64>,
    /// The last version put in the queue (or coalesced into `full_pending`).
    delivered: Option<u64>,
    /// Patches that arrived while a twin GET was outstanding, delivered after it in order.
    held: Vec<(u64, Map<String, Value>)>,
    resyncing: bool,
    queue: VecDeque<DesiredUpdate>,
    /// The queue overflowed: the next update the application takes is a `Full` of `doc`.
    full_pending: bool,
    capacity: usize,
    /// Whether anyone consumes desired updates (nothing is queued otherwise).
    active: bool,
}

impl Desired {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            doc: Map::new(),
            version: None,
            delivered: None,
            held: Vec::new(),
            resyncing: false,
            queue: VecDeque::new(),
            full_pending: false,
            capacity: capacity.max(1),
            active: false,
        }
    }

    pub(crate) fn activate(&mut self) {
        self.active = true;
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// A twin GET for resynchronisation was sent.
    pub(crate) fn resync_started(&mut self) {
        self.resyncing = true;
    }

    /// Entries waiting for the application (a pending `Full` counts as one).
    pub(crate) fn queued(&self) -> usize {
        self.queue.len() + usize::from(self.full_pending)
    }

    /// Patches held back while a resync is outstanding.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// The answer of a twin GET: the whole desired section at `version`. The first one (and
    /// any newer than what the application saw) becomes a `Full`; held patches follow it.
    pub(crate) fn on_full(
        &mut self,
        version: u64,
        mut properties: Map<String, Value>,
    ) -> DesiredNeed {
        self.resyncing = false;
        properties.remove("$version");
        if self.delivered.is_none_or(|d| version > d) {
            self.doc = properties;
            self.version = Some(version);
            self.push(DesiredUpdate {
                version,
                kind: DesiredKind::Full,
                properties: self.doc.clone(),
            });
        }
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|(v, _)| *v);
        let mut held = held.into_iter();
        while let Some((v, p)) = held.next() {
            // A gap after the GET needs another GET; the rest stays held for it.
            if self.on_patch(v, p) == DesiredNeed::Resync {
                self.held.extend(held);
                return DesiredNeed::Resync;
            }
        }
        DesiredNeed::Nothing
    }

    /// A patch from the hub.
    pub(crate) fn on_patch(
        &mut self,
        version: u64,
        mut properties: Map<String, Value>,
    ) -> DesiredNeed {
        properties.remove("$version");
        if self.resyncing || self.version.is_none() {
            if self.held.len() >= self.capacity {
                // The GET that is coming carries all of these anyway.
                self.held.clear();
            }
            self.held.push((version, properties));
            return DesiredNeed::Nothing;
        }
        let current = self.version.unwrap_or(0);
        if version <= current {
            return DesiredNeed::Nothing;
        }
        if version > current + 1 {
            self.resyncing = true;
            self.held.push((version, properties));
            return DesiredNeed::Resync;
        }
        merge(&mut self.doc, &properties);
        self.version = Some(version);
        self.push(DesiredUpdate {
            version,
            kind: DesiredKind::Patch,
            properties,
        });
        DesiredNeed::Nothing
    }

    fn push(&mut self, update: DesiredUpdate) {
        self.delivered = Some(update.version);
        if !self.active {
            return;
        }
        if self.full_pending {
            return;
        }
        if update.kind == DesiredKind::Full {
            self.queue.clear();
        }
        if self.queue.len() >= self.capacity {
            self.queue.clear();
            self.full_pending = true;
            return;
        }
        self.queue.push_back(update);
    }

    /// The next update for the application.
    pub(crate) fn take(&mut self) -> Option<DesiredUpdate> {
        if self.full_pending {
            self.full_pending = false;
            return Some(DesiredUpdate {
                version: self.version.unwrap_or(0),
                kind: DesiredKind::Full,
                properties: self.doc.clone(),
            });
        }
        self.queue.pop_front()
    }
}

/// JSON merge patch (RFC 7386) of one level or more: `null` deletes.
fn merge(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                doc.remove(k);
            }
            Value::Object(p) => {
                let entry = doc
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(d) = entry {
                    merge(d, p);
                }
            }
            other => {
                doc.insert(k.clone(), other.clone());
            }
        }
    }
}
