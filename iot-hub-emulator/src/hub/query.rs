//! The documents that queries run over: service-side twins (devices or modules) and
//! `devices.jobs` rows; all of them (a scan), or only the candidates that the planner's
//! lookups find (device ids and module ids in the registry's maps, tag values in the tag
//! index). Either way the caller runs the same evaluator over them, so the answers are the
//! same; both come in id order.

use super::Hub;
use super::registry::Registry;
use super::twin_store::TwinStore;
use super::twins::twin_document;
use crate::locks::lock;
use crate::query::Collection;
use crate::query::plan::{Lookup, plan};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Hub {
    /// The documents of a collection, in id order (shared from the records' caches).
    pub(crate) fn documents(&self, from: Collection) -> Vec<Arc<Value>> {
        if from == Collection::Jobs {
            return self
                .device_job_documents()
                .into_iter()
                .map(Arc::new)
                .collect();
        }
        // Identity fields from the registry, the rest from the twins (in the lock order).
        let reg = lock(&self.registry);
        let mut twins = lock(&self.twins);
        let mut docs = Vec::with_capacity(reg.devices.len());
        for (id, rec) in &reg.devices {
            match from {
                Collection::Devices => docs.extend(twin_document(&reg, &mut twins, id, None)),
                Collection::Modules => {
                    for m in rec.modules.keys() {
                        docs.extend(twin_document(&reg, &mut twins, id, Some(m)));
                    }
                }
                Collection::Jobs => {}
            }
        }
        docs
    }

    /// The documents of a collection that `filter` may select, in id order: every document
    /// the filter selects is among them, so filtering them gives what filtering
    /// [`Self::documents`] gives.
    pub(crate) fn candidate_documents(
        &self,
        from: Collection,
        filter: Option<&crate::query::Expr>,
    ) -> Vec<Arc<Value>> {
        let Some(lookup) = plan(from, filter) else {
            return self.documents(from);
        };
        let reg = lock(&self.registry);
        let mut twins = lock(&self.twins);
        match from {
            Collection::Devices => {
                let Some(ids) = device_ids(&reg, &mut twins, &lookup) else {
                    drop((twins, reg));
                    return self.documents(from);
                };
                ids.iter()
                    .filter_map(|id| twin_document(&reg, &mut twins, id, None))
                    .collect()
            }
            Collection::Modules => {
                let Some(keys) = module_keys(&reg, &mut twins, &lookup) else {
                    drop((twins, reg));
                    return self.documents(from);
                };
                keys.iter()
                    .filter_map(|(d, m)| twin_document(&reg, &mut twins, d, Some(m)))
                    .collect()
            }
            Collection::Jobs => {
                drop((twins, reg));
                self.documents(from)
            }
        }
    }
}

/// Intersects the sets of an `AND`; `None` (no restriction) when none of them restricts.
fn intersect<K: Ord + Clone>(
    sets: impl Iterator<Item = Option<BTreeSet<K>>>,
) -> Option<BTreeSet<K>> {
    sets.flatten()
        .reduce(|acc, s| acc.intersection(&s).cloned().collect())
}

/// Unites the sets of an `OR`; `None` when any of them does not restrict.
fn unite<K: Ord>(sets: impl Iterator<Item = Option<BTreeSet<K>>>) -> Option<BTreeSet<K>> {
    let mut out = BTreeSet::new();
    for s in sets {
        out.extend(s?);
    }
    Some(out)
}

/// The ids of the device twins a lookup finds; `None` means all of them.
fn device_ids(reg: &Registry, twins: &mut TwinStore, lookup: &Lookup) -> Option<BTreeSet<String>> {
    match lookup {
        Lookup::DeviceIds(ids) => Some(
            ids.iter()
                .filter(|id| reg.devices.contains_key(*id))
                .cloned()
                .collect(),
        ),
        // The planner only plans module ids for `devices.modules`.
        Lookup::ModuleIds(_) => None,
        Lookup::Tag { path, values } => {
            let index = twins.tag_index();
            Some(
                values
                    .iter()
                    .filter_map(|v| index.devices(path, v))
                    .flatten()
                    .cloned()
                    .collect(),
            )
        }
        Lookup::And(terms) => {
            let sets: Vec<_> = terms.iter().map(|t| device_ids(reg, twins, t)).collect();
            intersect(sets.into_iter())
        }
        Lookup::Or(terms) => {
            let sets: Vec<_> = terms.iter().map(|t| device_ids(reg, twins, t)).collect();
            unite(sets.into_iter())
        }
    }
}

/// The (device id, module id) keys of the module twins a lookup finds; `None` means all.
fn module_keys(
    reg: &Registry,
    twins: &mut TwinStore,
    lookup: &Lookup,
) -> Option<BTreeSet<(String, String)>> {
    match lookup {
        Lookup::DeviceIds(ids) => Some(
            ids.iter()
                .filter_map(|id| reg.devices.get(id).map(|rec| (id, rec)))
                .flat_map(|(id, rec)| rec.modules.keys().map(|m| (id.clone(), m.clone())))
                .collect(),
        ),
        // Module ids are not unique across devices: one map lookup per device, but no twin
        // documents built or evaluated for the devices without such a module.
        Lookup::ModuleIds(ids) => Some(
            reg.devices
                .iter()
                .flat_map(|(d, rec)| {
                    ids.iter()
                        .filter(|m| rec.modules.contains_key(*m))
                        .map(|m| (d.clone(), m.clone()))
                })
                .collect(),
        ),
        Lookup::Tag { path, values } => {
            let index = twins.tag_index();
            Some(
                values
                    .iter()
                    .filter_map(|v| index.modules(path, v))
                    .flatten()
                    .cloned()
                    .collect(),
            )
        }
        Lookup::And(terms) => {
            // Narrow by the other terms first; module ids then only filter what they found
            // rather than walking every device.
            let (by_module, others): (Vec<&Lookup>, Vec<&Lookup>) = terms
                .iter()
                .partition(|t| matches!(t, Lookup::ModuleIds(_)));
            let sets: Vec<_> = others.iter().map(|t| module_keys(reg, twins, t)).collect();
            match intersect(sets.into_iter()) {
                Some(found) => Some(
                    found
                        .into_iter()
                        .filter(|(_, m)| {
                            by_module.iter().all(|t| match t {
                                Lookup::ModuleIds(ids) => ids.contains(m),
                                _ => true,
                            })
                        })
                        .collect(),
                ),
                None => {
                    let sets: Vec<_> = by_module
                        .iter()
                        .map(|t| module_keys(reg, twins, t))
                        .collect();
                    intersect(sets.into_iter())
                }
            }
        }
        Lookup::Or(terms) => {
            let sets: Vec<_> = terms.iter().map(|t| module_keys(reg, twins, t)).collect();
            unite(sets.into_iter())
        }
    }
}
