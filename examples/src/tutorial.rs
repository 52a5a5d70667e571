//! The "get started with device management" tutorial, both halves.

use iot_device::{DeviceClient, MethodError, MethodResponse};
use iot_service::{DirectMethodRequest, ErrorKind, ServiceClient};
use serde_json::{Value, json};
use std::time::Duration;

/// The device half: answers `rebootDevice` by "rebooting" for `reboot_time`, reporting
/// `rebootTime`, and replying 200; any other method gets 404.
///
/// # Errors
/// The method subscription was not acknowledged.
pub async fn serve_reboot(client: &DeviceClient, reboot_time: Duration) -> iot_device::Result<()> {
    client
        .on_method_with_client(
            "rebootDevice",
            move |client: DeviceClient, _payload: Value| async move {
                println!(
                    "device: rebootDevice called, rebooting for {} ms ...",
                    reboot_time.as_millis()
                );
                tokio::time::sleep(reboot_time).await;
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let version = client
                    .update_reported(&json!({ "rebootTime": now }))
                    .await?;
                println!(
                    "device: rebooted at {now}; reported rebootTime (reported version {version})"
                );
                Ok::<_, MethodError>(json!({ "rebooted": true, "rebootTime": now }))
            },
        )
        .await?;
    client
        .on_unknown_method(|req: iot_device::MethodRequest| async move {
            println!("device: unknown method {} called, answering 404", req.name);
            MethodResponse::error(404, &format!("unknown method {}", req.name))
        })
        .await?;
    Ok(())
}

/// Why the service half failed.
#[derive(Debug)]
pub enum ServiceFailure {
    /// The device is not connected (404103).
    DeviceOffline,
    /// The device answered with a status other than 200.
    MethodFailed(i32, Value),
    /// `rebootTime` did not show up in time.
    NoRebootTime,
    /// Any other error.
    Service(iot_service::Error),
}

impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DeviceOffline => write!(
                f,
                "the device is offline: start the device app first (404103 DeviceNotOnline)"
            ),
            Self::MethodFailed(s, p) => write!(f, "the device answered {s}: {p}"),
            Self::NoRebootTime => write!(f, "rebootTime did not appear in the twin within 30 s"),
            Self::Service(e) => write!(f, "{e}"),
        }
    }
}

impl From<iot_service::Error> for ServiceFailure {
    fn from(e: iot_service::Error) -> Self {
        if e.kind() == ErrorKind::DeviceNotOnline {
            Self::DeviceOffline
        } else {
            Self::Service(e)
        }
    }
}

/// The service half: invokes `rebootDevice`, prints the answer, then reads the twin and runs
/// the twin query until a new `rebootTime` shows up. Returns it.
///
/// # Errors
/// See [`ServiceFailure`].
pub async fn reboot_device(
    service: &ServiceClient,
    device_id: &str,
) -> Result<String, ServiceFailure> {
    let before = reported_reboot_time(service, device_id).await?;
    println!("service: invoking rebootDevice on {device_id}");
    let request = DirectMethodRequest::new("rebootDevice")
        .payload_json(json!({}))
        .response_timeout(Duration::from_secs(30));
    let result = service.invoke_method(device_id, &request).await?;
    println!(
        "service: device answered {} {}",
        result.status, result.payload
    );
    if result.status != 200 {
        return Err(ServiceFailure::MethodFailed(result.status, result.payload));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = reported_reboot_time(service, device_id).await?;
        if let Some(t) = now.filter(|t| Some(t) != before.as_ref()) {
            println!("service: twin shows rebootTime = {t}");
            let sql = format!("SELECT * FROM devices WHERE deviceId = '{device_id}'");
            for twin in service.query(sql).collect_all().await? {
                println!(
                    "service: query: {} rebootTime = {}",
                    twin.device_id,
                    twin.properties
                        .reported
                        .properties
                        .get("rebootTime")
                        .unwrap_or(&Value::Null)
                );
            }
            return Ok(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServiceFailure::NoRebootTime);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn reported_reboot_time(
    service: &ServiceClient,
    device_id: &str,
) -> Result<Option<String>, ServiceFailure> {
    let twin = service.get_twin(device_id).await?;
    Ok(twin
        .properties
        .reported
        .properties
        .get("rebootTime")
        .and_then(Value::as_str)
        .map(str::to_owned))
}
