//! The identity registry as stored: devices, modules, their twins, and the shared access
//! policies. This is what `--state DIR` persists.

use super::persistence::{Kind, Loaded, Write};
use base64::Engine as _;
use iot_common::registry::{AuthenticationMechanism, Device, Module, SymmetricKey, X509Thumbprint};
use iot_common::{Secret, Thumbprint};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Permissions of a shared access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rights(u8);

impl Rights {
    /// Read identities and statistics.
    pub const REGISTRY_READ: Self = Self(1);
    /// Create, update and delete identities.
    pub const REGISTRY_WRITE: Self = Self(2);
    /// Twins, methods, queries, jobs, cloud-to-device.
    pub const SERVICE_CONNECT: Self = Self(4);
    /// Device-facing endpoints.
    pub const DEVICE_CONNECT: Self = Self(8);
    /// Everything on the hub (`iothubowner`).
    pub const ALL: Self = Self(15);
    /// The Device Provisioning Service's enrollment API (`provisioningserviceowner`): a
    /// separate service, so `iothubowner` does not hold it.
    pub const PROVISIONING: Self = Self(16);

    /// Both sets of rights.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `true` when every right in `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A shared access policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub(crate) primary: Secret,
    pub(crate) secondary: Secret,
    pub(crate) rights: Rights,
}

/// The default policies of a new hub.
pub(crate) fn default_policies() -> [(&'static str, Rights); 6] {
    [
        ("iothubowner", Rights::ALL),
        ("provisioningserviceowner", Rights::PROVISIONING),
        ("service", Rights::SERVICE_CONNECT),
        ("device", Rights::DEVICE_CONNECT),
        ("registryRead", Rights::REGISTRY_READ),
        (
            "registryReadWrite",
            Rights::REGISTRY_READ.union(Rights::REGISTRY_WRITE),
        ),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModuleRecord {
    pub(crate) module: Module,
}

/// An identity record: the device and its modules. Their twins are in the twin store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub(crate) device: Device,
    #[serde(default)]
    pub(crate) modules: BTreeMap<String, ModuleRecord>,
    /// Changes with every change of the record (persisted or not), so that a twin document
    /// cached with an older revision is known to show stale identity fields.
    #[serde(skip)]
    pub(crate) rev: u64,
}

impl DeviceRecord {
    pub(crate) fn new(device: Device) -> Self {
        Self {
            device,
            modules: BTreeMap::new(),
            rev: 0,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Registry {
    pub(crate) devices: BTreeMap<String, DeviceRecord>,
    pub(crate) policies: BTreeMap<String, Policy>,
    #[serde(default)]
    etag_seq: u64,
    /// Changes not yet handed to the store (only tracked with `--state`).
    #[serde(skip)]
    changes: Changes,
    /// The last revision given to a record (see [`DeviceRecord::rev`]).
    #[serde(skip)]
    revs: u64,
    /// The last batch that carried the registry's (and DPS's) rows to `--state`.
    #[serde(skip)]
    pub(crate) handover: super::durability::Handover,
}

/// What changed since the last hand-over to the store.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) tracked: bool,
    pub(crate) devices: BTreeSet<String>,
    pub(crate) policies: bool,
    pub(crate) etag_seq: bool,
}

impl Registry {
    /// A device record for changing: its revision moves on, which makes cached twin
    /// documents stale. Every mutation of a record goes through here.
    pub(crate) fn record_mut(&mut self, id: &str) -> Option<&mut DeviceRecord> {
        if self.changes.tracked && self.devices.contains_key(id) {
            self.changes.devices.insert(id.to_owned());
        }
        self.record_mut_volatile(id)
    }

    /// Like [`Self::record_mut`] for fields that are not persisted (connection state, last
    /// activity): the change is not handed to the store.
    pub(crate) fn record_mut_volatile(&mut self, id: &str) -> Option<&mut DeviceRecord> {
        let rec = self.devices.get_mut(id)?;
        self.revs += 1;
        rec.rev = self.revs;
        Some(rec)
    }

    /// Adds (or replaces) a device record.
    pub(crate) fn insert_device(&mut self, id: &str, mut rec: DeviceRecord) {
        if self.changes.tracked {
            self.changes.devices.insert(id.to_owned());
        }
        self.revs += 1;
        rec.rev = self.revs;
        self.devices.insert(id.to_owned(), rec);
    }

    /// Removes a device record.
    pub(crate) fn remove_device(&mut self, id: &str) -> Option<DeviceRecord> {
        if self.changes.tracked {
            self.changes.devices.insert(id.to_owned());
        }
        self.devices.remove(id)
    }

    /// `true` when the device (and the module, if one is named) exists.
    pub(crate) fn has_identity(&self, device_id: &str, module_id: Option<&str>) -> bool {
        self.devices
            .get(device_id)
            .is_some_and(|r| module_id.is_none_or(|m| r.modules.contains_key(m)))
    }

    /// Every identity: each device, then its modules.
    pub(crate) fn identities(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.devices.iter().flat_map(|(d, r)| {
            std::iter::once((d.as_str(), None)).chain(
                r.modules
                    .keys()
                    .map(move |m| (d.as_str(), Some(m.as_str()))),
            )
        })
    }

    /// The policies, for changing.
    pub(crate) fn policies_mut(&mut self) -> &mut BTreeMap<String, Policy> {
        self.changes.policies = self.changes.tracked;
        &mut self.policies
    }

    /// Starts recording changes for the store; everything counts as changed.
    pub(crate) fn track_changes(&mut self) {
        self.changes = Changes {
            tracked: true,
            devices: self.devices.keys().cloned().collect(),
            policies: true,
            etag_seq: true,
        };
    }

    /// Starts recording changes for the store, with nothing changed yet.
    pub(crate) fn track_changes_from_now(&mut self) {
        self.changes = Changes {
            tracked: true,
            ..Changes::default()
        };
    }

    /// The changes since the last call, as store rows.
    pub(crate) fn take_changes(&mut self) -> Vec<Write> {
        let changes = std::mem::take(&mut self.changes.devices);
        let mut out = Vec::with_capacity(changes.len() + 2);
        for id in changes {
            let value = self
                .devices
                .get(&id)
                .and_then(|rec| serde_json::to_vec(rec).ok());
            out.push(((Kind::Device, id), value));
        }
        if std::mem::take(&mut self.changes.policies) {
            for (name, p) in &self.policies {
                out.push(((Kind::Policy, name.clone()), serde_json::to_vec(p).ok()));
            }
        }
        if std::mem::take(&mut self.changes.etag_seq) {
            out.push((
                (Kind::Meta, "etagSeq".to_owned()),
                Some(self.etag_seq.to_string().into_bytes()),
            ));
        }
        out
    }

    /// A registry from the store's rows.
    pub(crate) fn from_rows(loaded: &mut Loaded) -> Result<Self, (String, serde_json::Error)> {
        let mut reg = Self::default();
        for (id, v) in loaded.take(Kind::Device) {
            let rec = serde_json::from_slice(&v).map_err(|e| (format!("device {id}"), e))?;
            reg.devices.insert(id, rec);
        }
        for (name, v) in loaded.take(Kind::Policy) {
            let p = serde_json::from_slice(&v).map_err(|e| (format!("policy {name}"), e))?;
            reg.policies.insert(name, p);
        }
        for (k, v) in loaded.take(Kind::Meta) {
            if k == "etagSeq" {
                reg.etag_seq = serde_json::from_slice(&v).map_err(|e| (k, e))?;
            }
        }
        Ok(reg)
    }

    /// A fresh identity etag: base64 of a decimal counter, like the real hub's.
    pub(crate) fn next_etag(&mut self) -> String {
        self.changes.etag_seq = self.changes.tracked;
        self.etag_seq += 1;
        base64::engine::general_purpose::STANDARD.encode(self.etag_seq.to_string())
    }
}

/// A random 32-byte base64 key.
pub(crate) fn generate_key() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Fills in missing symmetric keys, as the hub does on create.
pub(crate) fn ensure_keys(keys: &mut Option<SymmetricKey>) {
    let k = keys.get_or_insert_with(SymmetricKey::default);
    for slot in [&mut k.primary_key, &mut k.secondary_key] {
        if slot.as_ref().is_none_or(Secret::is_empty) {
            *slot = Some(generate_key());
        }
    }
}

/// Checks and completes an identity's `authentication` as the hub does on create and update:
/// `sas` gets any missing keys generated; `selfSigned` needs a primary thumbprint (SHA-1 or
/// SHA-256 hex, any case, `:` ignored; stored upper case) and has no keys;
/// `certificateAuthority` and `none` have neither. The type is matched case-insensitively
/// and stored in the hub's spelling.
pub(crate) fn normalize_authentication(auth: &mut AuthenticationMechanism) -> Result<(), String> {
    let kind = ["sas", "selfSigned", "certificateAuthority", "none"]
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(&auth.kind))
        .ok_or_else(|| {
            format!(
                "authentication.type '{}' is not one of sas, selfSigned, certificateAuthority, none",
                auth.kind
            )
        })?;
    auth.kind = kind.to_owned();
    match kind {
        "sas" => ensure_keys(&mut auth.symmetric_key),
        "selfSigned" => {
            let t = auth
                .x509_thumbprint
                .get_or_insert_with(X509Thumbprint::default);
            for (name, slot) in [
                ("primaryThumbprint", &mut t.primary_thumbprint),
                ("secondaryThumbprint", &mut t.secondary_thumbprint),
            ] {
                *slot = match slot.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(v) => Some(
                        v.parse::<Thumbprint>()
                            .map_err(|e| format!("authentication.x509Thumbprint.{name}: {e}"))?
                            .to_string(),
                    ),
                };
            }
            if t.primary_thumbprint.is_none() {
                return Err(
                    "a selfSigned identity needs authentication.x509Thumbprint.primaryThumbprint"
                        .into(),
                );
            }
            auth.symmetric_key = Some(SymmetricKey::default());
        }
        _ => {
            auth.x509_thumbprint = Some(X509Thumbprint::default());
            auth.symmetric_key = Some(SymmetricKey::default());
        }
    }
    Ok(())
}

/// The keys an identity can sign with, primary first.
pub(crate) fn keys_of(keys: Option<&SymmetricKey>) -> Vec<Secret> {
    keys.map(|k| {
        [&k.primary_key, &k.secondary_key]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

/// `true` when `If-Match` is absent or a wildcard, or names `current` (quotes and `W/` ignored).
pub(crate) fn etag_matches(if_match: Option<&str>, current: &str) -> bool {
    match if_match.map(str::trim) {
        None | Some("") | Some("*") | Some("\"*\"") => true,
        Some(tag) => {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"') == current
        }
    }
}
