//! Direct methods: route a service request to the device's live session and wait for its
//! answer, with the hub's timeouts and error codes. No request waits forever.

use super::{Hub, Outbound, SessionHandle, sub};
use crate::error::HubRefusal;
use crate::locks::lock;
use bytes::Bytes;
use iot_common::{ErrorCode, MethodInvocation, MethodInvocationResult, topic};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;

fn not_online(connect_timeout: u64) -> HubRefusal {
    HubRefusal::new(
        ErrorCode::DeviceNotOnline,
        "The operation failed because the requested device isn't online or hasn't registered the direct method callback. To learn more, see https://aka.ms/iothub404103",
    )
    .with_info(serde_json::json!({ "timeout": format!("00:00:{connect_timeout:02}") }))
}

/// Checks a method call as the hub does (name, timeouts, payload), plus the emulator's bound
/// on the name's length: a long name would make the device's request topic exceed what
/// devices accept.
pub(crate) fn validate(request: &MethodInvocation) -> Result<(), HubRefusal> {
    request
        .validate()
        .map_err(|e| HubRefusal::bad_request(e.to_string()))?;
    if request.method_name.len() > crate::limits::MAX_METHOD_NAME_LEN {
        return Err(HubRefusal::bad_request(format!(
            "methodName is {} characters, over the limit of {}",
            request.method_name.len(),
            crate::limits::MAX_METHOD_NAME_LEN
        )));
    }
    Ok(())
}

impl Hub {
    pub(crate) async fn invoke_method(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        request: MethodInvocation,
    ) -> Result<MethodInvocationResult, HubRefusal> {
        validate(&request)?;
        {
            let reg = lock(&self.registry);
            let rec = reg
                .devices
                .get(device_id)
                .ok_or_else(|| HubRefusal::device_not_found(device_id))?;
            if let Some(m) = module_id
                && !rec.modules.contains_key(m)
            {
                return Err(HubRefusal::module_not_found(device_id, m));
            }
        }
        let connect_timeout = request.connect_timeout();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(connect_timeout);
        let session = loop {
            let notified = self.sessions.changed.notified();
            if let Some(s) = self.session(device_id, module_id)
                && s.subscribed(sub::METHODS)
            {
                break s;
            }
            // A device that connects subscribes a moment later: poll as well as wait.
            let poll = deadline.min(tokio::time::Instant::now() + Duration::from_millis(50));
            if tokio::time::Instant::now() >= deadline {
                return Err(not_online(connect_timeout));
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(poll) => {}
            }
        };
        let rid = self.next_rid();
        let (tx, rx) = oneshot::channel();
        lock(&session.pending).insert(rid.clone(), tx);
        let payload = Bytes::from(request.payload.to_string());
        let sent = session.outbox.push(Outbound::Publish {
            topic: topic::method_request_topic(&request.method_name, &rid),
            payload,
        });
        if sent.is_err() {
            lock(&session.pending).remove(&rid);
            return Err(not_online(connect_timeout));
        }
        let timeout = Duration::from_secs(request.response_timeout());
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((status, body))) => {
                let payload = if body.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    serde_json::from_slice(&body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&body).into_owned())
                    })
                };
                Ok(MethodInvocationResult::new(status, payload))
            }
            Ok(Err(_)) => Err(not_online(connect_timeout)),
            Err(_) => {
                lock(&session.pending).remove(&rid);
                Err(HubRefusal::new(
                    ErrorCode::GatewayTimeout,
                    "Timed out waiting for the response from device.",
                ))
            }
        }
    }

    /// Completes a pending method call with the device's answer; `false` when none waits.
    pub(crate) fn complete_method(
        &self,
        session: &SessionHandle,
        rid: &str,
        reply: (i32, Bytes),
    ) -> bool {
        match lock(&session.pending).remove(rid) {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }
}
