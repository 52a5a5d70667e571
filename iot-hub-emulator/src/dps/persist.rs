//! DPS under `--state`: enrollments, groups and registration states are rows of the hub's
//! store, written when the hub hands its changes over (`Hub::mark_dirty`), so an answer waits
//! for them like any other. Operations in flight are not kept: a device that polls across a
//! restart gets 404 and registers again, which is harmless.

use super::{Dps, DpsState};
use crate::hub::persistence::{Kind, Write};
use iot_common::provisioning::{EnrollmentGroup, IndividualEnrollment, RegistrationState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `--state` holds for DPS, read at start-up.
#[derive(Debug, Default)]
pub(crate) struct DpsRows {
    individual: BTreeMap<String, IndividualEnrollment>,
    groups: BTreeMap<String, EnrollmentGroup>,
    registrations: BTreeMap<String, RegistrationRow>,
}

/// A registration state and the group it came through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationRow {
    state: RegistrationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    rows: Vec<(String, Vec<u8>)>,
) -> Result<BTreeMap<String, T>, String> {
    rows.into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map(|doc| (k.clone(), doc))
                .map_err(|e| format!("{what} {k} ({e})"))
        })
        .collect()
}

impl DpsRows {
    pub(crate) fn from_rows(
        enrollments: Vec<(String, Vec<u8>)>,
        groups: Vec<(String, Vec<u8>)>,
        registrations: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, String> {
        Ok(Self {
            individual: parse("enrollment", enrollments)?,
            groups: parse("enrollment group", groups)?,
            registrations: parse("registration", registrations)?,
        })
    }
}

/// The number in an etag this DPS wrote (`"1f"`), so that etags stay unique across restarts.
fn etag_number(etag: Option<&str>) -> u64 {
    etag.and_then(|e| u64::from_str_radix(e.trim_matches('"'), 16).ok())
        .unwrap_or(0)
}

impl Dps {
    /// Restores what `--state` held; with `track`, every later change is handed to the store.
    pub(crate) fn restored(self, rows: DpsRows, track: bool) -> Self {
        {
            let mut s = self.lock();
            s.track = track;
            s.etag_seq = rows
                .individual
                .values()
                .map(|e| etag_number(e.etag.as_deref()))
                .chain(rows.groups.values().map(|g| etag_number(g.etag.as_deref())))
                .chain(
                    rows.registrations
                        .values()
                        .map(|r| etag_number(r.state.etag.as_deref())),
                )
                .max()
                .unwrap_or(0);
            s.individual = rows.individual;
            s.groups = rows.groups;
            for (id, row) in rows.registrations {
                if let Some(g) = row.group {
                    s.group_of.insert(id.clone(), g);
                }
                s.registrations.insert(id, row.state);
            }
        }
        self
    }

    /// The rows changed since the last call, for the store.
    pub(crate) fn take_changes(&self) -> Vec<Write> {
        let mut s = self.lock();
        let dirty = std::mem::take(&mut s.dirty);
        dirty
            .into_iter()
            .map(|(kind, id)| {
                let value = match kind {
                    Kind::Enrollment => s
                        .individual
                        .get(&id)
                        .and_then(|e| serde_json::to_vec(e).ok()),
                    Kind::EnrollmentGroup => {
                        s.groups.get(&id).and_then(|g| serde_json::to_vec(g).ok())
                    }
                    _ => s.registrations.get(&id).and_then(|state| {
                        serde_json::to_vec(&RegistrationRow {
                            state: state.clone(),
                            group: s.group_of.get(&id).cloned(),
                        })
                        .ok()
                    }),
                };
                ((kind, id), value)
            })
            .collect()
    }
}

impl DpsState {
    pub(super) fn touch(&mut self, kind: Kind, id: &str) {
        if self.track {
            self.dirty.insert((kind, id.to_owned()));
        }
    }
}
