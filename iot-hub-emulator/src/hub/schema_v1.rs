//! Schema 1 of `--state` (and the 0.1 `registry.json`), as a migration source: each device
//! row held the device's twin (`twin`) and its modules' twins (`modules.<id>.twin`). Schema 2
//! keeps twins in a table of their own; [`migrate`] moves them there in one transaction.

use rusqlite::{Connection, params};
use serde_json::Value;

/// The tables of schema 1, as version 0.2 created them (for tests that make a schema 1
/// database; [`migrate`] reads them).
#[cfg(test)]
pub(crate) const SCHEMA_V1: &str = "
    CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL,
        value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;";

/// Takes the twins out of a schema 1 device record (which then has schema 2's shape): the
/// device's own (`None`) and each module's.
pub(crate) fn split_device(record: &mut Value) -> Result<Vec<(Option<String>, Value)>, String> {
    let rec = record
        .as_object_mut()
        .ok_or("a device record is not an object")?;
    let mut twins = vec![(
        None,
        rec.remove("twin").ok_or("a device record has no twin")?,
    )];
    if let Some(modules) = rec.get_mut("modules").and_then(Value::as_object_mut) {
        for (m, mr) in modules.iter_mut() {
            let twin = mr
                .as_object_mut()
                .and_then(|o| o.remove("twin"))
                .ok_or_else(|| format!("module {m} has no twin"))?;
            twins.push((Some(m.clone()), twin));
        }
    }
    Ok(twins)
}

/// Converts a schema 1 database to schema 2 in one transaction: either all of it is
/// converted, or (on any error) nothing is.
pub(crate) fn migrate(conn: &Connection) -> Result<(), String> {
    let fail = |e: rusqlite::Error| e.to_string();
    let tx = conn.unchecked_transaction().map_err(fail)?;
    tx.execute_batch(
        "CREATE TABLE twins (device_id TEXT NOT NULL, module_id TEXT NOT NULL,
            value BLOB NOT NULL, PRIMARY KEY (device_id, module_id)) WITHOUT ROWID;",
    )
    .map_err(fail)?;
    let devices: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx
            .prepare("SELECT key, value FROM records WHERE kind = 'device'")
            .map_err(fail)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(fail)?
            .collect::<Result<_, _>>()
            .map_err(fail)?
    };
    {
        let mut put_twin = tx
            .prepare("INSERT INTO twins (device_id, module_id, value) VALUES (?1, ?2, ?3)")
            .map_err(fail)?;
        let mut put_device = tx
            .prepare("UPDATE records SET value = ?2 WHERE kind = 'device' AND key = ?1")
            .map_err(fail)?;
        for (id, bytes) in devices {
            let what = |e: String| format!("device {id}: {e}");
            let mut record: Value =
                serde_json::from_slice(&bytes).map_err(|e| what(e.to_string()))?;
            for (module, twin) in split_device(&mut record).map_err(what)? {
                let twin = serde_json::to_vec(&twin).map_err(|e| what(e.to_string()))?;
                put_twin
                    .execute(params![id, module.unwrap_or_default(), twin])
                    .map_err(fail)?;
            }
            let record = serde_json::to_vec(&record).map_err(|e| what(e.to_string()))?;
            put_device.execute(params![id, record]).map_err(fail)?;
        }
    }
    tx.execute_batch("PRAGMA user_version = 2;").map_err(fail)?;
    tx.commit().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1_db(devices: &[(&str, Value)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;"))
            .unwrap();
        for (id, rec) in devices {
            conn.execute(
                "INSERT INTO records (kind, key, value) VALUES ('device', ?1, ?2)",
                params![id, serde_json::to_vec(rec).unwrap()],
            )
            .unwrap();
        }
        conn
    }

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn twins_move_to_their_table_and_records_keep_the_rest() {
        let conn = v1_db(&[(
            "d",
            json!({"device": {"deviceId": "d"}, "twin": {"tags": {"a": 1}},
                   "modules": {"m": {"module": {"moduleId": "m"}, "twin": {"tags": {"b": 2}}}}}),
        )]);
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), 2);
        let twins: Vec<(String, String, String)> = conn
            .prepare("SELECT device_id, module_id, CAST(value AS TEXT) FROM twins ORDER BY 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            twins,
            vec![
                ("d".into(), "".into(), r#"{"tags":{"a":1}}"#.into()),
                ("d".into(), "m".into(), r#"{"tags":{"b":2}}"#.into()),
            ]
        );
        let record: Vec<u8> = conn
            .query_row("SELECT value FROM records WHERE key = 'd'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&record).unwrap(),
            json!({"device": {"deviceId": "d"}, "modules": {"m": {"module": {"moduleId": "m"}}}})
        );
    }

    #[test]
    fn a_record_that_cannot_be_converted_changes_nothing() {
        let good = json!({"device": {"deviceId": "a"}, "twin": {}});
        let conn = v1_db(&[
            ("a", good.clone()),
            ("b", json!({"device": {"deviceId": "b"}})),
        ]);
        let err = migrate(&conn).unwrap_err();
        assert!(err.contains("device b"), "{err}");
        assert_eq!(version(&conn), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'twins'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
        let a: Vec<u8> = conn
            .query_row("SELECT value FROM records WHERE key = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&a).unwrap(), good);
    }
}
