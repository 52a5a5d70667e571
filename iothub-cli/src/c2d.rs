//! `iothub c2d send`: through the emulator's `POST /emulator/devices/{id}/messages`. The real
//! hub takes cloud-to-device messages over AMQP only, which azure-iot-rs does not speak yet,
//! so against it this fails with exit code 5 instead of pretending.

use crate::cli::C2dCommand;
use crate::emulator_http::EmulatorHttp;
use crate::error::CliError;
use crate::hub::Hub;
use crate::input;
use crate::output::Output;

/// Runs one `c2d` subcommand.
///
/// # Cancel safety
/// Dropped before the POST is answered, the message may or may not have been queued; nothing
/// is printed either way. Bounded by the client's 30 s request timeout.
pub async fn run(hub: &Hub, out: &Output, cmd: C2dCommand) -> Result<(), CliError> {
    let C2dCommand::Send {
        device_id,
        body,
        message_id,
        correlation_id,
        content_type,
        content_encoding,
        ack,
        properties,
    } = cmd;
    let mut query: Vec<(String, String)> = [
        ("messageId", message_id),
        ("correlationId", correlation_id),
        ("contentType", content_type),
        ("contentEncoding", content_encoding),
        ("ack", ack),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect();
    for p in &properties {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--property {p}: expected NAME=VALUE")))?;
        query.push((format!("app.{k}"), v.to_owned()));
    }
    let body = input::bytes(&body)?;
    let http = EmulatorHttp::new(hub)?;
    if !http.is_emulator().await? {
        return Err(CliError::Unsupported(format!(
            "c2d send works against the emulator only: {} is not the emulator, and a real IoT Hub \
             takes cloud-to-device messages over AMQP, which azure-iot-rs does not support yet",
            hub.connection.host_name
        )));
    }
    let answer = http.send_c2d(&device_id, body, &query).await?;
    let id = answer
        .get("messageId")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    out.text_or_json(&format!("queued message {id} for {device_id}"), &answer);
    Ok(())
}
