//! The emulator's web console in a real headless Chromium (WebDriver, chromedriver): what a
//! user sees and does, against a hub with real devices connected over MQTT.
//!
//! Needs `chromium` and `chromium-driver` (Debian); fails, saying so, when they are missing.
//! Every test leaves a screenshot in `target/console-screenshots/`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "support/browser.rs"]
mod browser;

use browser::{Browser, ONE_AT_A_TIME, STEP};
use iot_device::{DeviceClient, DeviceClientOptions, Message};
use iot_hub_emulator::{Emulator, RunningEmulator};
use serde_json::json;
use std::time::{Duration, Instant};

async fn device(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .operation_timeout(Duration::from_secs(10));
    DeviceClient::from_connection_string(&hub.hub().create_device(id).unwrap(), options)
        .await
        .unwrap()
}

/// The console's device page for `id`, loaded (its twin shown).
async fn device_page(b: &Browser, hub: &RunningEmulator, id: &str) {
    b.goto(&format!("{}/#/device/{id}", hub.https_url())).await;
    b.text_when("#twin-etag", STEP, |t| !t.is_empty()).await;
}

#[tokio::test]
async fn the_device_list_shows_a_new_connection_within_two_seconds() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    hub.hub().create_device("thermostat-7").unwrap();
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{}/", hub.https_url())).await;
    let row = "tr[data-device-id='thermostat-7'] td.state";
    b.text_when(row, STEP, |t| t == "Disconnected").await;

    let dev = device(&hub, "thermostat-7").await;
    // The issue's deadline: the list shows the connection within 2 s, without a reload.
    b.text_when(row, Duration::from_secs(2), |t| t == "Connected")
        .await;
    let activity = b
        .text_when(
            "tr[data-device-id='thermostat-7'] td:nth-child(3)",
            STEP,
            |t| !t.is_empty(),
        )
        .await;
    assert!(
        activity.contains('T'),
        "last activity is a timestamp: {activity}"
    );
    b.screenshot("devices").await;
    b.resize(390, 844).await;
    b.screenshot("devices-phone").await;
    b.close().await;
    dev.close().await.unwrap();
}

#[tokio::test]
async fn a_desired_property_edit_reaches_the_connected_device() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    let dev = device(&hub, "fan-1").await;
    let mut updates = dev.desired_updates().await.unwrap();
    let first = tokio::time::timeout(STEP, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert!(first.properties.get("interval").is_none());

    let b = Browser::start(1280, 900).await;
    device_page(&b, &hub, "fan-1").await;
    b.type_into("#desired-editor", r#"{"interval": 42}"#).await;
    b.type_into("#tags-editor", r#"{"room": "lab"}"#).await;
    b.click("#twin-save").await;
    b.text_when("#twin-message", STEP, |t| t.starts_with("Saved"))
        .await;

    let update = tokio::time::timeout(STEP, updates.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.properties["interval"], json!(42));
    let twin = hub.hub().get_twin("fan-1", None).unwrap();
    assert_eq!(twin.tags.get("room"), Some(&json!("lab")));
    // The page shows the twin the hub now holds.
    b.text_when("#twin-json", STEP, |t| t.contains("\"interval\": 42"))
        .await;
    b.screenshot("device-twin").await;
    b.resize(390, 844).await;
    b.client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    b.screenshot("device-phone").await;
    b.close().await;
    dev.close().await.unwrap();
}

#[tokio::test]
async fn a_direct_method_invoked_from_the_page_shows_the_device_answer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    let dev = device(&hub, "pump-3").await;
    dev.on_method("reboot", |req: serde_json::Value| async move {
        Ok::<_, iot_device::MethodError>(json!({ "rebootingIn": req["delay"] }))
    })
    .await
    .unwrap();

    let b = Browser::start(1280, 900).await;
    device_page(&b, &hub, "pump-3").await;
    b.type_into("#method-name", "reboot").await;
    b.type_into("#method-payload", r#"{"delay": 5}"#).await;
    b.click("#method-invoke").await;
    b.text_when("#method-status", STEP, |t| t == "200").await;
    let answer = b.text_when("#method-result", STEP, |t| !t.is_empty()).await;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer, json!({ "rebootingIn": 5 }));
    let time = b
        .text_when("#method-time", STEP, |t| t.ends_with(" ms"))
        .await;
    assert!(
        time.trim_end_matches(" ms").parse::<u64>().is_ok(),
        "{time}"
    );
    b.screenshot("device-method").await;

    // A method the device has no handler for: its 404 answer is shown as the status.
    b.type_into("#method-name", "selfDestruct").await;
    b.click("#method-invoke").await;
    b.text_when("#method-status", STEP, |t| t == "404").await;
    b.screenshot("device-method-unknown").await;
    b.close().await;
    dev.close().await.unwrap();
}

#[tokio::test]
async fn telemetry_sent_by_a_device_appears_in_the_live_view_with_pause_and_filter() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    let dev = device(&hub, "meter-9").await;
    let other = device(&hub, "meter-10").await;
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{}/#/telemetry", hub.https_url())).await;
    let rows = "[data-telemetry='hub'] .telemetry-rows";

    dev.send_telemetry(Message::new(r#"{"kwh": 12.5}"#))
        .await
        .unwrap();
    b.text_when(rows, STEP, |t| {
        t.contains("meter-9") && t.contains(r#"{"kwh": 12.5}"#)
    })
    .await;

    // Paused, new messages wait (and are counted) instead of moving the table.
    b.click("[data-telemetry='hub'] .pause").await;
    dev.send_telemetry(Message::new("while-paused"))
        .await
        .unwrap();
    b.text_when("[data-telemetry='hub'] .counts", STEP, |t| {
        t.contains("1 waiting")
    })
    .await;
    assert!(
        !b.client
            .find(fantoccini::Locator::Css(rows))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("while-paused")
    );
    b.click("[data-telemetry='hub'] .pause").await;
    b.text_when(rows, STEP, |t| t.contains("while-paused"))
        .await;

    // The filter hides other devices' rows.
    other
        .send_telemetry(Message::new("from-the-other-meter"))
        .await
        .unwrap();
    b.text_when(rows, STEP, |t| t.contains("from-the-other-meter"))
        .await;
    b.type_into("[data-telemetry='hub'] .filter", "meter-9")
        .await;
    b.text_when(rows, STEP, |t| {
        !t.contains("from-the-other-meter") && t.contains("while-paused")
    })
    .await;
    b.screenshot("telemetry").await;

    // The device page shows only its own device's messages.
    device_page(&b, &hub, "meter-10").await;
    dev.send_telemetry(Message::new("not-for-meter-10"))
        .await
        .unwrap();
    other
        .send_telemetry(Message::new("meter-10-again"))
        .await
        .unwrap();
    let own = b
        .text_when("[data-telemetry='device'] .telemetry-rows", STEP, |t| {
            t.contains("meter-10-again")
        })
        .await;
    assert!(!own.contains("not-for-meter-10"), "{own}");
    b.close().await;
    dev.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test]
async fn a_stale_etag_edit_shows_the_conflict_and_writes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    hub.hub().create_device("valve-2").unwrap();
    let b = Browser::start(1280, 900).await;
    device_page(&b, &hub, "valve-2").await;

    // Someone else writes the twin after the page loaded it.
    hub.hub()
        .update_twin(
            "valve-2",
            None,
            &json!({"properties": {"desired": {"mode": "auto"}}}),
            false,
        )
        .unwrap();
    b.type_into("#desired-editor", r#"{"mode": "manual"}"#)
        .await;
    b.click("#twin-save").await;
    let message = b
        .text_when("#twin-message", STEP, |t| t.starts_with("Conflict"))
        .await;
    assert!(message.contains("412"), "{message}");
    let class = b
        .client
        .find(fantoccini::Locator::Css("#twin-message"))
        .await
        .unwrap()
        .attr("class")
        .await
        .unwrap();
    assert_eq!(class.as_deref(), Some("conflict"));
    let twin = hub.hub().get_twin("valve-2", None).unwrap();
    assert_eq!(
        twin.properties
            .desired
            .get::<String>("mode")
            .unwrap()
            .unwrap(),
        "auto"
    );
    b.screenshot("device-conflict").await;

    // After a reload the same edit goes through.
    b.click("#twin-reload").await;
    b.text_when("#twin-json", STEP, |t| t.contains("\"mode\": \"auto\""))
        .await;
    b.type_into("#desired-editor", r#"{"mode": "manual"}"#)
        .await;
    b.click("#twin-save").await;
    b.text_when("#twin-message", STEP, |t| t.starts_with("Saved"))
        .await;
    let twin = hub.hub().get_twin("valve-2", None).unwrap();
    assert_eq!(
        twin.properties
            .desired
            .get::<String>("mode")
            .unwrap()
            .unwrap(),
        "manual"
    );
    b.close().await;
}

#[tokio::test]
async fn off_loopback_the_console_needs_the_owner_key() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder()
        .bind(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        .start()
        .await
        .unwrap();
    let owner = hub.service_connection_string();
    let key = owner.split("SharedAccessKey=").nth(1).unwrap().to_owned();
    let base = format!("https://localhost:{}", hub.https_addr().port());
    let b = Browser::start(1280, 800).await;

    b.goto(&format!("{base}/")).await;
    b.text_when("h2", STEP, |t| t == "Log in").await;
    assert!(!b.has("#device-table").await);
    // The token endpoint and the live stream refuse without the login.
    for path in ["/console/token", "/console/events"] {
        b.goto(&format!("{base}{path}")).await;
        let page = b.client.source().await.unwrap();
        assert!(page.contains("401"), "{path}: {page}");
        assert!(!page.contains(&key), "{path} leaked the key");
    }

    b.goto(&format!("{base}/")).await;
    b.type_into("#key", "bm90IHRoZSBrZXk=").await;
    b.click("#login").await;
    b.text_when("#login-error", STEP, |t| {
        t.contains("not the iothubowner key")
    })
    .await;
    b.screenshot("login-refused").await;

    b.type_into("#key", &key).await;
    b.click("#login").await;
    b.text_when("tr[data-device-id='myDevice'] td.state", STEP, |t| {
        t == "Disconnected"
    })
    .await;
    let cookies = b.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "iothub-console")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert!(!session.value().contains(&key));
    b.screenshot("logged-in").await;

    // Logging out clears the cookie: the login form again.
    b.click("#logout").await;
    b.text_when("h2", STEP, |t| t == "Log in").await;
    let cookies = b.client.get_all_cookies().await.unwrap();
    assert!(cookies.iter().all(|c| c.name() != "iothub-console"));
    b.close().await;
}

#[tokio::test]
async fn the_query_jobs_connection_and_fault_pages_work() {
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = Emulator::builder().start().await.unwrap();
    hub.hub().create_device("lab-1").unwrap();
    hub.hub().create_device("lab-2").unwrap();
    hub.hub()
        .update_twin("lab-2", None, &json!({"tags": {"site": "lab"}}), false)
        .unwrap();
    let service = iot_service::ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        iot_service::ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .unwrap();
    let later = iot_service::JobSchedule {
        start: Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
        max_execution: Duration::from_secs(600),
    };
    service
        .schedule_method_job(
            "reboot-lab",
            "tags.site = 'lab'",
            &iot_service::DirectMethodRequest::new("reboot"),
            later,
        )
        .await
        .unwrap();
    let b = Browser::start(1280, 800).await;

    b.goto(&format!("{}/#/query", hub.https_url())).await;
    b.type_into(
        "#query-text",
        "SELECT deviceId, tags FROM devices WHERE tags.site = 'lab'",
    )
    .await;
    b.click("#query-run").await;
    b.text_when("#query-message", STEP, |t| t == "1 rows").await;
    let table = b
        .text_when("#query-table", STEP, |t| t.contains("lab-2"))
        .await;
    assert!(!table.contains("lab-1"), "{table}");
    b.screenshot("query").await;

    b.goto(&format!("{}/#/jobs", hub.https_url())).await;
    b.text_when("#jobs-rows", STEP, |t| {
        t.contains("reboot-lab") && t.contains("scheduled")
    })
    .await;
    b.screenshot("jobs").await;
    b.click("#jobs-rows button").await;
    b.text_when("#jobs-rows", STEP, |t| t.contains("cancelled"))
        .await;

    b.goto(&format!("{}/#/connection", hub.https_url())).await;
    let shown = b
        .client
        .wait()
        .at_most(STEP)
        .for_element(fantoccini::Locator::Css("#service-cs"))
        .await
        .unwrap();
    let deadline = Instant::now() + STEP;
    while shown
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no connection string shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        shown.prop("value").await.unwrap().unwrap(),
        hub.service_connection_string()
    );
    b.screenshot("connection").await;

    // A fault armed from the page is what the next REST call meets.
    b.goto(&format!("{}/#/faults", hub.https_url())).await;
    b.type_into("#f-throttleRest", "1").await;
    b.click("#faults-apply").await;
    b.text_when("#faults-message", STEP, |t| t.starts_with("Applied"))
        .await;
    b.screenshot("faults").await;
    let fired = hub.faults().fired();
    b.goto(&format!("{}/#/jobs", hub.https_url())).await;
    b.text_when("#jobs-message", STEP, |t| t.contains("HTTP 429"))
        .await;
    assert_eq!(hub.faults().fired(), fired + 1);
    b.click("#jobs-reload").await;
    b.text_when("#jobs-rows", STEP, |t| t.contains("reboot-lab"))
        .await;
    b.close().await;
}
