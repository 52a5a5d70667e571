//! The documents that queries run over: service-side twins (devices or modules) and
//! `devices.jobs` rows.

use super::Hub;
use super::twins::twin_document;
use crate::locks::lock;
use crate::query::Collection;
use serde_json::Value;
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
        let reg = lock(&self.registry);
        let mut docs = Vec::with_capacity(reg.devices.len());
        for rec in reg.devices.values() {
            match from {
                Collection::Devices => docs.extend(twin_document(rec, None)),
                Collection::Modules => docs.extend(
                    rec.modules
                        .keys()
                        .filter_map(|m| twin_document(rec, Some(m))),
                ),
                Collection::Jobs => {}
            }
        }
        docs
    }
}
