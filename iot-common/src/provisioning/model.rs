//! The JSON bodies of the DPS device API (MQTT and HTTPS carry the same documents).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of a registration request: `{"registrationId": "...", "payload": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRequest {
    /// The registration id (for X.509, the certificate's subject CN).
    pub registration_id: String,
    /// Custom data for a custom allocation policy; DPS passes it on and may return data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    /// Not assigned (a registration state before its first registration).
    Unassigned,
    /// DPS is still working; poll again.
    Assigning,
    /// Done: the device has a hub.
    Assigned,
    /// Done: DPS refused or could not assign; `errorCode`/`errorMessage` say why.
    Failed,
    /// The enrollment is disabled.
    Disabled,
}

/// How an assignment relates to earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Substatus {
    /// The first assignment of this registration.
    InitialAssignment,
    /// Re-provisioned to another hub with its twin data moved.
    DeviceDataMigrated,
    /// Re-provisioned with the twin reset to the enrollment's initial twin.
    DeviceDataReset,
    /// Re-provisioned back to the initial assignment.
    ReprovisionedToInitialAssignment,
    /// A value this version does not know.
    #[serde(other)]
    Unknown,
}

/// The state of a registration, as DPS reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationState {
    /// The registration id.
    pub registration_id: String,
    /// When the registration was first made (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    /// The host name of the assigned hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// The device id in the assigned hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The registration's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RegistrationStatus>,
    /// How this assignment relates to earlier ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    /// When the registration last changed (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    /// The registration's etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Data returned by a custom allocation policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Why a failed registration failed (a DPS error code such as 400209).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// The message that goes with `error_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// DPS's answer to a registration request or a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperation {
    /// The operation to poll while the status is `assigning`.
    pub operation_id: String,
    /// Where the operation stands.
    pub status: RegistrationStatus,
    /// The registration's state, present once the operation is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<RegistrationState>,
}

/// The error document DPS answers with on a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceErrorBody {
    /// The DPS error code, e.g. 401002.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// The service's tracking id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// The service's message.
    #[serde(default)]
    pub message: String,
    /// When the error happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_utc: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assigned_answer_parses_as_the_service_sends_it() {
        let body = r#"{"operationId":"4.0123456789abcdef.1","status":"assigned",
          "registrationState":{"registrationId":"dev-sym-1","createdDateTimeUtc":"2026-12-01T09:14:30.169349Z",
          "assignedHub":"myhub.azure-devices.net","deviceId":"dev-sym-1","status":"assigned",
          "substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-12-01T09:14:30.3Z","etag":"\"x\"",
          "payload":{"a":1},"x509":{"enrollmentGroupId":"g"}}}"#;
        let op: RegistrationOperation = serde_json::from_str(body).unwrap();
        assert_eq!(op.status, RegistrationStatus::Assigned);
        let state = op.registration_state.unwrap();
        assert_eq!(
            state.assigned_hub.as_deref(),
            Some("myhub.azure-devices.net")
        );
        assert_eq!(state.substatus, Some(Substatus::InitialAssignment));
        assert_eq!(state.payload, Some(serde_json::json!({"a": 1})));
    }

    #[test]
    fn a_request_without_payload_omits_it_like_the_node_sdk() {
        let req = RegistrationRequest {
            registration_id: "d".into(),
            payload: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"registrationId":"d"}"#
        );
        let python: RegistrationRequest =
            serde_json::from_str(r#"{"payload": null, "registrationId": "d"}"#).unwrap();
        assert_eq!(python, req);
    }
}
