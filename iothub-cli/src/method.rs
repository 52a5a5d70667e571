//! `iothub method invoke`.

use crate::cli::MethodCommand;
use crate::error::CliError;
use crate::hub::Hub;
use crate::input;
use crate::output::Output;
use iot_service::DirectMethodRequest;
use serde_json::json;
use std::time::Duration;

/// Runs one `method` subcommand.
///
/// # Cancel safety
/// Dropped after sending, the device may still run the method; the answer is lost. Bounded by
/// the method's response timeout plus the client's margin.
pub async fn run(hub: &Hub, out: &Output, cmd: MethodCommand) -> Result<(), CliError> {
    let MethodCommand::Invoke(a) = cmd;
    let mut req = DirectMethodRequest::new(&a.method)
        .response_timeout(Duration::from_secs(a.response_timeout))
        .connect_timeout(Duration::from_secs(a.connect_timeout));
    if let Some(p) = &a.payload {
        req = req.payload_json(input::json(p)?);
    }
    let result = {
        let _s = out.spinner(format!("invoking {} on {}", a.method, a.device_id));
        hub.client.invoke_method(&a.device_id, &req).await?
    };
    // The call succeeded whatever status the device chose; scripts read it from the output.
    out.object(&json!({ "status": result.status, "payload": result.payload }));
    Ok(())
}
