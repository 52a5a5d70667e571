//! Bringing a hub up: open `--state` (migrating a 0.1 `registry.json`), complete the registry
//! with the default policies, the development device, the seed file and the builder's devices,
//! and wire the front ends to the hub. Shared by [`crate::EmulatorBuilder::start`] and the fuzz
//! harness, so that both run the same hub.

use crate::clock::now_string;
use crate::dev_keys;
use crate::error::EmulatorError;
use crate::http::{AppState, StreamHandler};
use crate::hub::event_log::EventLog;
use crate::hub::persistence::{DB_FILE, Kind, Store};
use crate::hub::registry::{DeviceRecord, Policy, Registry, default_policies, generate_key};
use crate::hub::twin_store::TwinStore;
use crate::hub::{C2dMessage, FaultSettings, Hub, HubOptions, HubState, JobStore, Persistence};
use iot_common::Secret;
use iot_common::registry::{AuthenticationMechanism, Device, SymmetricKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// What a hub is made from.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub(crate) options: HubOptions,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) seed_file: Option<PathBuf>,
    pub(crate) policy_key: Option<Secret>,
    pub(crate) devices: Vec<(String, Option<Secret>)>,
    pub(crate) faults: FaultSettings,
}

/// Builds the hub and stores what start-up added (policies, seed, migration) before anyone
/// is answered.
pub(crate) fn start_hub(config: &HubConfig) -> Result<Arc<Hub>, EmulatorError> {
    let loopback = !config.options.refuse_well_known;
    let (persistence, mut state) = match &config.state_dir {
        Some(d) => open_state(d, &config.options)?,
        None => (Persistence::new(None), HubState::default()),
    };
    if let Err(e) = config.complete_registry(&mut state.registry, loopback) {
        persistence.close();
        return Err(e);
    }
    // Every identity has its twin: the seed's and the builder's devices get theirs here.
    state
        .twins
        .complete(state.registry.identities(), &now_string());
    let hub = Arc::new(Hub::new(config.options.clone(), state, persistence));
    hub.faults.apply(&config.faults);
    if let Err(e) = hub.flush() {
        hub.close_store();
        return Err(e.into());
    }
    Ok(hub)
}

/// The request handlers' state, with MQTT and AMQP over WebSockets served by their front ends.
pub(crate) fn app_state(
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
    console: Option<Arc<crate::http::console::Console>>,
    amqp_port: u16,
) -> AppState {
    let mqtt_hub = hub.clone();
    let mqtt_over_ws: StreamHandler = Arc::new(move |stream, peer, shutdown| {
        Box::pin(crate::mqtt::serve(mqtt_hub.clone(), stream, peer, shutdown))
    });
    let amqp_hub = hub.clone();
    let amqp_over_ws: StreamHandler = Arc::new(move |stream, _peer, shutdown| {
        Box::pin(crate::amqp::serve_stream(
            amqp_hub.clone(),
            stream,
            amqp_port,
            shutdown,
        ))
    });
    AppState {
        hub,
        shutdown,
        mqtt_over_ws,
        amqp_over_ws,
        console,
    }
}

/// Opens `--state` (migrating a `registry.json` written by 0.1 on first use) and reads
/// everything it keeps.
fn open_state(dir: &Path, options: &HubOptions) -> Result<(Persistence, HubState), EmulatorError> {
    let legacy_file = dir.join("registry.json");
    let legacy = if !dir.join(DB_FILE).exists() && legacy_file.exists() {
        let bytes = std::fs::read(&legacy_file)?;
        Some(legacy_registry(&bytes).map_err(|e| {
            EmulatorError::State(format!(
                "{}: {e}; the emulator refuses to start and left the file as it is",
                legacy_file.display()
            ))
        })?)
    } else {
        None
    };
    let (store, mut loaded) = Store::open(dir)?;
    let parsed = match legacy {
        Some((mut registry, mut twins)) => {
            tracing::info!(file = %legacy_file.display(), "migrating the state file into state.db");
            registry.track_changes();
            twins.track_changes();
            Ok(HubState {
                registry,
                twins,
                ..HubState::default()
            })
        }
        None => Registry::from_rows(&mut loaded)
            .map_err(|(what, e)| format!("{what} ({e})"))
            .and_then(|mut registry| {
                registry.track_changes_from_now();
                let mut twins =
                    TwinStore::from_rows(&mut loaded, |d, m| registry.has_identity(d, m))?;
                twins.track_changes_from_now();
                let mut persistent_sessions = std::collections::HashMap::new();
                for (client_id, v) in loaded.take(Kind::Session) {
                    let subs = serde_json::from_slice(&v)
                        .map_err(|e| format!("session {client_id} ({e})"))?;
                    persistent_sessions.insert(client_id, subs);
                }
                let c2d = C2dMessage::from_rows(
                    loaded.take(Kind::C2d),
                    chrono::Utc::now().timestamp_millis(),
                )?;
                let feedback = crate::hub::feedback_store::FeedbackQueue::from_rows(
                    loaded.take(Kind::Feedback),
                )?;
                let jobs =
                    JobStore::from_rows(loaded.take(Kind::Job), loaded.take(Kind::JobDevice))?;
                let dps = crate::dps::DpsRows::from_rows(
                    loaded.take(Kind::Enrollment),
                    loaded.take(Kind::EnrollmentGroup),
                    loaded.take(Kind::Registration),
                )?;
                let events = EventLog::new(
                    options.event_retention_bytes,
                    chrono::Utc::now().timestamp_millis(),
                )
                .restore(loaded.take(Kind::Event))?;
                Ok(HubState {
                    registry,
                    twins,
                    persistent_sessions,
                    c2d,
                    feedback,
                    jobs,
                    dps,
                    events: Some(events),
                })
            }),
    };
    match parsed {
        Ok(mut state) => {
            // Messages of a deleted device (one in flight when it was deleted, or any left by
            // an earlier version, which kept them) have nowhere to go.
            let orphans: Vec<_> = state
                .c2d
                .iter()
                .filter(|(d, _)| !state.registry.devices.contains_key(*d))
                .flat_map(|(d, q)| {
                    q.iter()
                        .map(move |m| (C2dMessage::store_key(d, m.id), None))
                })
                .collect();
            state
                .c2d
                .retain(|d, _| state.registry.devices.contains_key(d));
            store.enqueue(orphans);
            Ok((Persistence::new(Some(store)), state))
        }
        Err(what) => {
            store.close();
            Err(EmulatorError::State(format!(
                "{}: {what} is unreadable; the emulator refuses to start and left the file as it is",
                dir.join(DB_FILE).display()
            )))
        }
    }
}

/// A 0.1 `registry.json`: the registry with each identity's twin inside its record (as
/// schema 1 of `state.db` had them), split into the registry and the twin store.
fn legacy_registry(bytes: &[u8]) -> Result<(Registry, TwinStore), String> {
    let mut doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    if let Some(devices) = doc.get_mut("devices").and_then(|d| d.as_object_mut()) {
        for (id, rec) in devices.iter_mut() {
            for (module, twin) in
                crate::hub::schema_v1::split_device(rec).map_err(|e| format!("device {id}: {e}"))?
            {
                let key = crate::hub::twin_store::twin_key(id, module.as_deref());
                rows.push((key, serde_json::to_vec(&twin).map_err(|e| e.to_string())?));
            }
        }
    }
    let registry: Registry = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let mut loaded = crate::hub::persistence::Loaded::default();
    loaded.rows.insert(Kind::Twin, rows);
    let twins = TwinStore::from_rows(&mut loaded, |d, m| registry.has_identity(d, m))?;
    Ok((registry, twins))
}

impl HubConfig {
    /// Adds the default policies, the development device, the seed and the builder's devices.
    fn complete_registry(&self, reg: &mut Registry, loopback: bool) -> Result<(), EmulatorError> {
        for rec in reg.devices.values_mut() {
            rec.device.connection_state = Default::default();
            for m in rec.modules.values_mut() {
                m.module.connection_state = Default::default();
            }
        }
        if let Some(k) = &self.policy_key {
            if !loopback && dev_keys::is_well_known(k.expose()) {
                return Err(EmulatorError::Config(
                    "the well-known development key is refused on a non-loopback address".into(),
                ));
            }
            iot_common::connection_string::validate_key("policy key", k.expose())
                .map_err(|e| EmulatorError::Config(e.to_string()))?;
        }
        for (name, rights) in default_policies() {
            let entry = reg.policies_mut().entry(name.to_owned());
            let (primary, secondary) = match (&self.policy_key, loopback) {
                (Some(k), _) => (k.clone(), generate_key()),
                (None, true) => (
                    Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
                    Secret::new(dev_keys::DEV_POLICY_SECONDARY_KEY),
                ),
                (None, false) => (generate_key(), generate_key()),
            };
            match entry {
                std::collections::btree_map::Entry::Occupied(mut e)
                    if self.policy_key.is_some() =>
                {
                    e.get_mut().primary = primary;
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Policy {
                        primary,
                        secondary,
                        rights,
                    });
                }
            }
        }
        // Explicit entries (seed file, `device(..)`) win over what the state holds and over the
        // development device, so that `myDevice` can be given a private key.
        let set = |reg: &mut Registry, id: &str, keys: SymmetricKey| -> Result<(), EmulatorError> {
            iot_common::connection_string::validate_id("deviceId", id)
                .map_err(|e| EmulatorError::Config(e.to_string()))?;
            match reg.devices.get(id) {
                Some(rec) if rec.device.authentication.symmetric_key.as_ref() == Some(&keys) => {}
                Some(_) => {
                    let etag = reg.next_etag();
                    if let Some(rec) = reg.record_mut(id) {
                        rec.device.authentication = AuthenticationMechanism::sas(keys);
                        rec.device.etag = Some(etag);
                    }
                }
                None => {
                    let mut d = Device::new(id, Some(keys));
                    d.etag = Some(reg.next_etag());
                    // As every identity the hub creates (feedback records carry it).
                    d.generation_id = Some(chrono::Utc::now().timestamp_micros().to_string());
                    reg.insert_device(id, DeviceRecord::new(d));
                }
            }
            Ok(())
        };
        let mut explicit = Vec::new();
        if let Some(seed) = &self.seed_file {
            explicit.extend(crate::seed::read(seed)?);
        }
        for (id, key) in &self.devices {
            let key = key.clone().unwrap_or_else(generate_key);
            explicit.push((id.clone(), SymmetricKey::new(key, generate_key())));
        }
        for (id, keys) in explicit.iter() {
            set(reg, id, keys.clone())?;
        }
        let seeded = |id: &str| explicit.iter().any(|(e, _)| e == id);
        // The development device keeps its published key only while the policies do: with a
        // private policy key (or off loopback) a well-known device key would be a back door.
        let public_keys = loopback && self.policy_key.is_none();
        if !seeded(dev_keys::DEV_DEVICE_ID) {
            let dev = reg.devices.get(dev_keys::DEV_DEVICE_ID);
            let has_public_key = dev
                .and_then(|rec| rec.device.authentication.symmetric_key.as_ref())
                .and_then(|k| k.primary_key.as_ref())
                .is_some_and(|k| dev_keys::is_well_known(k.expose()));
            if dev.is_none() || (has_public_key && !public_keys) {
                let keys = if public_keys {
                    SymmetricKey::new(
                        Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
                        Secret::new(dev_keys::DEV_DEVICE_SECONDARY_KEY),
                    )
                } else {
                    SymmetricKey::new(generate_key(), generate_key())
                };
                set(reg, dev_keys::DEV_DEVICE_ID, keys)?;
            }
        }
        Ok(())
    }
}
