//! The query table: queries over a fixture fleet and the rows they must return.

use super::{parse_condition, parse_query, run};
use serde_json::{Value, json};

fn fleet() -> Vec<Value> {
    vec![
        json!({"deviceId": "d1", "status": "enabled", "connectionState": "Connected", "version": 5,
               "tags": {"location": {"region": "US", "plant": "Redmond43"}, "floor": 3, "group": "a"},
               "properties": {"desired": {"fw": "2.1", "$version": 2, "$metadata": {"$lastUpdated": "2024-01-02T00:00:00Z"}},
                              "reported": {"firmware": 1.5, "rebootTime": "2024-01-01T00:00:00Z", "telemetryConfig": {"status": "Success"}, "list": [1, 2], "flag": true, "$version": 4}}}),
        json!({"deviceId": "d2", "status": "enabled", "connectionState": "Disconnected", "version": 3,
               "tags": {"location": {"region": "EU"}, "floor": 1},
               "properties": {"desired": {"$version": 1}, "reported": {"firmware": 2.5, "telemetryConfig": {"status": "Pending"}, "flag": false, "nothing": null, "$version": 2}}}),
        json!({"deviceId": "sensor-3", "status": "disabled", "connectionState": "Disconnected", "version": 2,
               "tags": {"location": {"region": "US"}},
               "properties": {"desired": {"$version": 1}, "reported": {"firmware": 1.0, "telemetryConfig": {"status": "Success"}, "$version": 1}}}),
    ]
}

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter().filter_map(|r| r["deviceId"].as_str()).collect()
}

#[test]
fn where_clauses_select_the_right_devices() {
    let table: &[(&str, &[&str])] = &[
        ("SELECT * FROM devices", &["d1", "d2", "sensor-3"]),
        ("SELECT * FROM devices WHERE deviceId = 'd1'", &["d1"]),
        ("select * from DEVICES where DeviceId = \"d2\"", &["d2"]),
        (
            "SELECT * FROM devices WHERE tags.location.region = 'US'",
            &["d1", "sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.firmware < 1.2",
            &["sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE tags.floor = 3 OR tags.floor = 1",
            &["d1", "d2"],
        ),
        (
            "SELECT * FROM devices WHERE NOT (tags.location.region = 'US')",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware >= 1.5",
            &["d1", "d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware > 1.5",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware <= 1.0",
            &["sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware != 1.5",
            &["d2", "sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware <> 1.5",
            &["d2", "sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE deviceId IN ['d1', 'sensor-3']",
            &["d1", "sensor-3"],
        ),
        ("SELECT * FROM devices WHERE deviceId IN ('d2')", &["d2"]),
        (
            "SELECT * FROM devices WHERE deviceId NIN ['d1']",
            &["d2", "sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware * 2 = 3",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware + 1 > 3",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware - 0.5 = 0.5",
            &["sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE tags.floor % 2 = 1",
            &["d1", "d2"],
        ),
        ("SELECT * FROM devices WHERE tags.floor / 3 = 1", &["d1"]),
        ("SELECT * FROM devices WHERE -tags.floor = -3", &["d1"]),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.rebootTime)",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.nothing)",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE IS_NULL(properties.reported.nothing)",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE IS_BOOL(properties.reported.flag)",
            &["d1", "d2"],
        ),
        (
            "SELECT * FROM devices WHERE IS_NUMBER(tags.floor)",
            &["d1", "d2"],
        ),
        (
            "SELECT * FROM devices WHERE IS_STRING(tags.location.plant)",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE IS_OBJECT(properties.reported.telemetryConfig) AND tags.floor = 1",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'sensor')",
            &["sensor-3"],
        ),
        (
            "SELECT * FROM devices WHERE ENDSWITH(deviceId, '2')",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE ARRAY_CONTAINS(properties.reported.list, 2)",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.flag = true",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.flag = false",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.nothing = null",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.desired.$metadata.$lastUpdated > '2024-01-01'",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.$version = 2",
            &["d2"],
        ),
        ("SELECT * FROM devices WHERE tags.[[group]] = 'a'", &["d1"]),
        ("SELECT * FROM devices WHERE tags.missing = 1", &[]),
        ("SELECT * FROM devices WHERE tags.location = 'US'", &[]),
        ("SELECT * FROM devices WHERE deviceId = 1", &[]),
        ("SELECT * FROM devices WHERE tags.floor = 0x3", &["d1"]),
        ("SELECT TOP 2 * FROM devices", &["d1", "d2"]),
    ];
    for (q, expected) in table {
        let parsed = parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let mut rows = run(&parsed, &fleet());
        if let Some(top) = parsed.top {
            rows.truncate(top);
        }
        assert_eq!(ids(&rows), *expected, "{q}");
    }
}

#[test]
fn projections_and_aggregates() {
    let rows = run(
        &parse_query("SELECT deviceId, properties.reported.firmware AS fw, tags.missing FROM devices WHERE tags.floor = 3").unwrap(),
        &fleet(),
    );
    assert_eq!(rows, vec![json!({"deviceId": "d1", "fw": 1.5})]);
    let rows = run(
        &parse_query("SELECT COUNT() AS totalNumberOfDevices FROM devices").unwrap(),
        &fleet(),
    );
    assert_eq!(rows, vec![json!({"totalNumberOfDevices": 3})]);
    let rows = run(
        &parse_query("SELECT COUNT() FROM devices WHERE tags.floor = 99").unwrap(),
        &fleet(),
    );
    assert_eq!(rows, vec![json!({"$1": 0})]);
    let rows = run(
        &parse_query("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status").unwrap(),
        &fleet(),
    );
    assert_eq!(
        rows,
        vec![
            json!({"status": "Success", "numberOfDevices": 2}),
            json!({"status": "Pending", "numberOfDevices": 1})
        ]
    );
    let rows = run(
        &parse_query("SELECT MIN(properties.reported.firmware) AS lo, MAX(properties.reported.firmware) AS hi, SUM(tags.floor) AS floors, AVG(tags.floor) AS avg FROM devices").unwrap(),
        &fleet(),
    );
    assert_eq!(
        rows,
        vec![json!({"lo": 1.0, "hi": 2.5, "floors": 4, "avg": 2})]
    );
}

#[test]
fn syntax_errors_have_positions() {
    let cases: &[(&str, usize)] = &[
        ("SELECT * FROM", 13),
        ("SELECT * FORM devices", 9),
        ("SELECT * FROM devices WHERE", 27),
        ("SELECT * FROM devices WHERE deviceId = 'x", 39),
        ("SELECT * FROM devices WHERE NOPE(deviceId)", 28),
        ("SELECT * FROM things", 14),
        ("SELECT * FROM devices WHERE a = 1 garbage", 34),
        ("SELECT * FROM devices WHERE deviceId IN 'a'", 40),
        ("SELECT * FROM devices WHERE a = #", 32),
    ];
    for (q, pos) in cases {
        let err = parse_query(q).expect_err(q);
        assert_eq!(err.position, *pos, "{q}: {err}");
        assert!(
            err.to_string().starts_with("The query is invalid."),
            "{err}"
        );
    }
}

#[test]
fn job_conditions() {
    let c = parse_condition("deviceId IN ['d1','d2'] AND tags.floor > 1").unwrap();
    let hits: Vec<_> = fleet()
        .into_iter()
        .filter(|d| super::matches(&c, d))
        .collect();
    assert_eq!(ids(&hits), ["d1"]);
    assert!(parse_condition("SELECT * FROM devices").is_err());
}

#[test]
fn device_job_rows_use_qualified_paths() {
    let rows = vec![
        json!({"deviceId": "d1", "jobId": "j1", "status": "completed", "createdDateTimeUtc": "2024-02-01T00:00:00Z"}),
        json!({"deviceId": "d2", "jobId": "j2", "status": "failed", "createdDateTimeUtc": "2024-01-01T00:00:00Z"}),
    ];
    let q = parse_query("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'").unwrap();
    assert_eq!(ids(&run(&q, &rows)), ["d1"]);
    let q = parse_query(
        "SELECT * FROM devices.jobs WHERE devices.jobs.createdDateTimeUtc > '2024-01-15'",
    )
    .unwrap();
    assert_eq!(ids(&run(&q, &rows)), ["d1"]);
}

/// Found by the `query` fuzz target (SIGSEGV after ~690 000 runs): deep nesting overflowed
/// the stack. Nesting is now bounded and refused with a position.
#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024) // a tokio worker's stack
        .spawn(|| {
            let cases = [
                format!("SELECT * FROM devices WHERE {}1", "(".repeat(8000)),
                format!("SELECT * FROM devices WHERE {}true", "NOT ".repeat(2000)),
                format!("SELECT * FROM devices WHERE {}1 = 1", "-".repeat(8000)),
                format!(
                    "SELECT * FROM devices WHERE deviceId IN {}1",
                    "[ ".repeat(8000)
                ),
                format!("SELECT * FROM devices WHERE {}x", "IS_DEFINED(".repeat(700)),
            ];
            for q in cases {
                let err = parse_query(&q).expect_err("too deep");
                assert!(err.message.contains("nested"), "{err}");
            }
            // Ordinary nesting still parses.
            parse_query(
                "SELECT * FROM devices WHERE ((NOT (tags.a = -(-1))) OR deviceId IN [1, 2])",
            )
            .unwrap();
        })
        .unwrap();
    handle.join().expect("no stack overflow");
}

/// A job condition of 10 000 `OR`s (175 KB) used to build a 10 000-deep tree whose evaluation
/// and drop overflowed a worker's stack and aborted the emulator.
#[test]
fn long_and_or_chains_are_not_a_stack_overflow() {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024) // a tokio worker's stack
        .spawn(|| {
            let docs = fleet();
            for op in ["OR", "AND"] {
                let chain = vec!["deviceId = 'd1'"; 60_000].join(&format!(" {op} "));
                let cond = parse_condition(&chain).expect("a flat chain parses");
                let hits = docs.iter().filter(|d| super::matches(&cond, d)).count();
                assert_eq!(hits, 1, "{op}");
                drop(cond);
            }
            // Chains of arithmetic cannot be flattened; they count as nesting.
            let sum = format!("{}1 = 1", "1 + ".repeat(20_000));
            let err = parse_condition(&sum).expect_err("too deep");
            assert!(err.message.contains("nested"), "{err}");
            let deepest = format!(
                "{}deviceId = 'd1'{}",
                "(NOT NOT (1 + 2 * 3 = 7) AND -(-1) = 1 OR ".repeat(40),
                ")".repeat(40)
            );
            let _ = parse_condition(&deepest)
                .map(|c| docs.iter().filter(|d| super::matches(&c, d)).count());
        })
        .unwrap();
    handle.join().expect("no stack overflow");
}
