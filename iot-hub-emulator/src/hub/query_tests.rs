//! Indexed queries against scans: every query runs over the planner's candidates and over
//! every twin, through the same evaluator, and the rows must be the same, before and after
//! tags change, twins are replaced, devices and modules are deleted and the registry is
//! restored from its stored rows.

use super::durability::Persistence;
use super::persistence::{Kind, Loaded};
use super::registry::Registry;
use super::twin_store::TwinStore;
use super::{Hub, HubOptions, HubState};
use crate::query::plan::plan;
use crate::query::{Collection, parse_query, run};
use iot_common::registry::{Device, Module};
use serde_json::{Value, json};
use std::time::Duration;

pub(super) fn hub_with(registry: Registry, twins: TwinStore) -> Hub {
    let options = HubOptions {
        host_name: "localhost".into(),
        token_grace: Duration::ZERO,
        telemetry_capacity: 10,
        telemetry_max_bytes: 1024,
        event_retention_bytes: 1024 * 1024,
        consumer_groups: Vec::new(),
        refuse_well_known: false,
        id_scope: crate::dev_keys::DEV_ID_SCOPE.into(),
        dps_retry_after: 0,
        device_cas: Default::default(),
    };
    let state = HubState {
        registry,
        twins,
        ..HubState::default()
    };
    Hub::new(options, state, Persistence::new(None))
}

fn tag(hub: &Hub, device: &str, module: Option<&str>, tags: Value, replace: bool) {
    hub.update_twin(device, module, &json!({ "tags": tags }), None, replace)
        .unwrap_or_else(|e| panic!("tags of {device}/{module:?}: {e:?}"));
}

/// Twelve devices with string, number, boolean and nested tags; every third with modules.
fn fleet() -> Hub {
    let hub = hub_with(Registry::default(), TwinStore::default());
    for i in 0..12 {
        let id = format!("dev-{i:02}");
        hub.put_device(&id, Device::new(&id, None), None)
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let region = if i % 2 == 0 { "US" } else { "EU" };
        let floor = if i == 5 { json!(1.0) } else { json!(i % 3) };
        tag(
            &hub,
            &id,
            None,
            json!({"loc": {"region": region, "floor": floor}, "on": i % 4 == 0, "name": id}),
            false,
        );
        if i % 3 == 0 {
            for m in ["m1", "m2"] {
                hub.put_module(&id, m, Module::new(&id, m, None), None)
                    .unwrap_or_else(|e| panic!("{id}/{m}: {e:?}"));
                tag(&hub, &id, Some(m), json!({"role": m, "n": i}), false);
            }
        }
    }
    hub
}

/// Queries the planner turns into lookups.
const INDEXED: &[&str] = &[
    "SELECT * FROM devices WHERE deviceId = 'dev-03'",
    "SELECT * FROM devices WHERE 'dev-03' = DeviceId",
    "SELECT * FROM devices WHERE deviceId IN ['dev-07', 'dev-01', 'nope']",
    "SELECT * FROM devices WHERE deviceId = 'nope'",
    "SELECT * FROM devices WHERE deviceId = 3",
    "SELECT * FROM devices WHERE deviceId = 'dev-01' OR deviceId = 'dev-02' OR tags.loc.floor = 2",
    "SELECT * FROM devices WHERE deviceId IN ['dev-01', 'dev-02'] AND tags.loc.region = 'US'",
    "SELECT * FROM devices WHERE tags.loc.region = 'EU' AND version > 2",
    "SELECT * FROM devices WHERE tags.loc.region = 'EU' AND NOT (tags.loc.floor = 1)",
    "SELECT * FROM devices WHERE tags.loc.floor = 1",
    "SELECT * FROM devices WHERE tags.loc.floor IN [1.0, 2, -0]",
    "SELECT * FROM devices WHERE tags.on = true",
    "SELECT * FROM devices WHERE tags.on = false AND tags.loc.region = 'US'",
    "SELECT * FROM devices WHERE tags.name IN ['dev-04', 'dev-09'] OR deviceId = 'dev-10'",
    "SELECT * FROM devices WHERE tags.loc = 'US'",
    "SELECT * FROM devices WHERE TAGS.loc.region = 'US'",
    "SELECT * FROM devices WHERE tags.Loc.region = 'US'",
    "SELECT * FROM devices WHERE tags.missing = 'x'",
    "SELECT deviceId, tags.loc.floor AS f FROM devices WHERE tags.loc.region = 'US'",
    "SELECT COUNT() AS n FROM devices WHERE tags.loc.region = 'EU'",
    "SELECT COUNT() AS n FROM devices WHERE deviceId = 'nope'",
    "SELECT tags.loc.floor AS f, COUNT() AS n FROM devices WHERE tags.loc.region = 'US' GROUP BY tags.loc.floor",
    "SELECT * FROM devices.modules WHERE deviceId = 'dev-03'",
    "SELECT * FROM devices.modules WHERE moduleId = 'm2'",
    "SELECT * FROM devices.modules WHERE moduleId IN ['m1', 'zz'] AND deviceId IN ['dev-06', 'dev-09']",
    "SELECT * FROM devices.modules WHERE moduleId = 'm1' AND tags.n = 6",
    "SELECT * FROM devices.modules WHERE tags.role = 'm1' OR tags.n = 9",
    "SELECT * FROM devices.modules WHERE deviceId = 'dev-01'",
    "SELECT deviceId, moduleId FROM devices.modules WHERE tags.n IN [0, 3]",
];

/// Queries that scan.
const SCANNED: &[&str] = &[
    "SELECT * FROM devices",
    "SELECT * FROM devices WHERE deviceId != 'dev-03'",
    "SELECT * FROM devices WHERE deviceId = 'dev-01' OR status = 'enabled'",
    "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'dev-0')",
];

/// Runs every query over the candidates and over a scan; returns the indexed rows.
fn compare(hub: &Hub) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for (sql, indexed) in INDEXED
        .iter()
        .map(|s| (s, true))
        .chain(SCANNED.iter().map(|s| (s, false)))
    {
        let q = parse_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            plan(q.from, q.filter.as_ref()).is_some(),
            indexed,
            "planned: {sql}"
        );
        let candidates = hub.candidate_documents(q.from, q.filter.as_ref());
        let scanned = run(&q, &hub.documents(q.from));
        let found = run(&q, &candidates);
        assert_eq!(found, scanned, "{sql}");
        if indexed && q.from != Collection::Jobs {
            assert!(
                candidates.len() <= hub.documents(q.from).len(),
                "candidates of {sql}"
            );
        }
        all.push(found);
    }
    all
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| match r.get("moduleId") {
            Some(m) => format!(
                "{}/{}",
                r["deviceId"].as_str().unwrap_or(""),
                m.as_str().unwrap_or("")
            ),
            None => r["deviceId"].as_str().unwrap_or("").to_owned(),
        })
        .collect()
}

fn rows_of(hub: &Hub, sql: &str) -> Vec<String> {
    let q = parse_query(sql).unwrap();
    ids(&run(
        &q,
        &hub.candidate_documents(q.from, q.filter.as_ref()),
    ))
}

#[test]
fn indexed_answers_equal_scanned_answers() {
    let hub = fleet();
    compare(&hub);
    assert_eq!(
        rows_of(
            &hub,
            "SELECT * FROM devices WHERE deviceId IN ['dev-07', 'dev-01', 'nope']"
        ),
        ["dev-01", "dev-07"]
    );
    assert_eq!(
        rows_of(&hub, "SELECT * FROM devices WHERE tags.loc.floor = 1"),
        ["dev-01", "dev-04", "dev-05", "dev-07", "dev-10"],
        "1 and 1.0 are the same number"
    );
    assert_eq!(
        rows_of(&hub, "SELECT * FROM devices WHERE tags.on = true"),
        ["dev-00", "dev-04", "dev-08"]
    );
    assert_eq!(
        rows_of(
            &hub,
            "SELECT * FROM devices.modules WHERE moduleId = 'm1' AND tags.n = 6"
        ),
        ["dev-06/m1"]
    );
    assert_eq!(
        rows_of(
            &hub,
            "SELECT * FROM devices.modules WHERE tags.role = 'm1' OR tags.n = 9"
        ),
        [
            "dev-00/m1",
            "dev-03/m1",
            "dev-06/m1",
            "dev-09/m1",
            "dev-09/m2"
        ]
    );
}

#[test]
fn the_index_follows_tag_changes_deletes_and_new_devices() {
    let hub = fleet();
    // Build the index first, so that the changes below must update it.
    compare(&hub);
    tag(
        &hub,
        "dev-02",
        None,
        json!({"loc": {"region": "EU"}}),
        false,
    );
    tag(&hub, "dev-04", None, json!({"other": 1}), true);
    tag(&hub, "dev-06", Some("m1"), json!({"n": 7}), false);
    hub.delete_device("dev-08", None).unwrap();
    hub.delete_module("dev-09", "m2", None).unwrap();
    hub.put_device("dev-99", Device::new("dev-99", None), None)
        .unwrap();
    tag(
        &hub,
        "dev-99",
        None,
        json!({"loc": {"region": "US", "floor": 1}, "on": true}),
        false,
    );
    hub.put_module("dev-99", "m1", Module::new("dev-99", "m1", None), None)
        .unwrap();
    tag(&hub, "dev-99", Some("m1"), json!({"role": "m1"}), false);
    compare(&hub);
    assert_eq!(
        rows_of(&hub, "SELECT * FROM devices WHERE tags.on = true"),
        ["dev-00", "dev-99"],
        "dev-04's tags were replaced, dev-08 deleted"
    );
    assert_eq!(
        rows_of(
            &hub,
            "SELECT * FROM devices WHERE tags.loc.region = 'EU' AND tags.loc.floor = 2"
        ),
        ["dev-02", "dev-11"],
        "dev-02 moved to the EU; dev-05 is on floor 1.0"
    );
    assert_eq!(
        rows_of(
            &hub,
            "SELECT * FROM devices.modules WHERE tags.role = 'm1' OR tags.n = 9"
        ),
        [
            "dev-00/m1",
            "dev-03/m1",
            "dev-06/m1",
            "dev-09/m1",
            "dev-99/m1"
        ]
    );
    assert!(rows_of(&hub, "SELECT * FROM devices WHERE deviceId = 'dev-08'").is_empty());
}

#[test]
fn a_restored_registry_is_indexed_like_the_original() {
    let hub = fleet();
    let before = compare(&hub);
    let mut rows = std::collections::BTreeMap::new();
    {
        let mut reg = crate::locks::lock(&hub.registry);
        let mut twins = crate::locks::lock(&hub.twins);
        reg.track_changes();
        twins.track_changes();
        let mut changes = reg.take_changes();
        changes.extend(twins.take_changes());
        for ((kind, key), value) in changes {
            if let Some(v) = value {
                rows.entry(kind).or_insert_with(Vec::new).push((key, v));
            }
        }
    }
    assert!(rows.contains_key(&Kind::Device));
    let mut loaded = Loaded { rows, fresh: false };
    let registry = Registry::from_rows(&mut loaded).unwrap();
    let twins = TwinStore::from_rows(&mut loaded, |d, m| registry.has_identity(d, m)).unwrap();
    let restored = hub_with(registry, twins);
    assert_eq!(compare(&restored), before);
}
