use super::*;

fn start() -> (RegistrationFlow, Instant) {
    let t0 = Instant::now();
    let request = RegistrationRequest {
        registration_id: "dev-1".into(),
        payload: Some(serde_json::json!({"model": "m"})),
    };
    (
        RegistrationFlow::new(&request, FlowOptions::default(), t0).unwrap(),
        t0,
    )
}

fn answer(
    flow: &mut RegistrationFlow,
    out: &Outgoing,
    status: u16,
    retry: Option<u64>,
    body: &str,
    now: Instant,
) {
    let topic = topics::response_topic(status, &out.rid, retry);
    flow.handle_mqtt_answer(&topic, body.as_bytes(), now);
}

const ASSIGNING: &str = r#"{"operationId":"op-1","status":"assigning"}"#;
const ASSIGNED: &str = r#"{"operationId":"op-1","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"localhost","deviceId":"dev-1","substatus":"initialAssignment","payload":{"ok":true}}}"#;

#[test]
fn registers_polls_after_retry_after_and_returns_the_state() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    assert_eq!(register.kind, RequestKind::Register);
    let body: serde_json::Value = serde_json::from_slice(&register.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"registrationId": "dev-1", "payload": {"model": "m"}})
    );
    assert!(flow.poll_transmit(t0).is_none(), "one request in flight");

    answer(&mut flow, &register, 202, Some(3), ASSIGNING, t0);
    assert_eq!(flow.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    assert!(flow.poll_transmit(t0 + Duration::from_secs(2)).is_none());
    let poll = flow.poll_transmit(t0 + Duration::from_secs(3)).unwrap();
    assert_eq!(
        poll.kind,
        RequestKind::Poll {
            operation_id: "op-1".into()
        }
    );
    assert!(poll.mqtt_topic().ends_with("&operationId=op-1"));
    assert_ne!(poll.rid, register.rid);

    answer(
        &mut flow,
        &poll,
        202,
        None,
        ASSIGNING,
        t0 + Duration::from_secs(3),
    );
    assert_eq!(
        flow.poll_timeout(),
        Some(t0 + Duration::from_secs(5)),
        "default 2 s"
    );
    let poll = flow.poll_transmit(t0 + Duration::from_secs(5)).unwrap();
    answer(
        &mut flow,
        &poll,
        200,
        None,
        ASSIGNED,
        t0 + Duration::from_secs(5),
    );
    assert!(flow.is_done());
    let state = flow.take_outcome().unwrap().unwrap();
    assert_eq!(state.device_id.as_deref(), Some("dev-1"));
    assert_eq!(state.payload, Some(serde_json::json!({"ok": true})));
}

#[test]
fn answers_to_other_request_ids_are_ignored() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    flow.handle_mqtt_answer(
        "$dps/registrations/res/200/?$rid=999",
        ASSIGNED.as_bytes(),
        t0,
    );
    assert!(!flow.is_done());
    answer(&mut flow, &register, 200, None, ASSIGNED, t0);
    assert!(flow.take_outcome().unwrap().is_ok());
}

#[test]
fn throttling_retries_the_same_request_after_retry_after() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(
        &mut flow,
        &register,
        429,
        Some(5),
        r#"{"errorCode":429001}"#,
        t0,
    );
    assert!(!flow.is_done());
    assert!(flow.poll_transmit(t0 + Duration::from_secs(4)).is_none());
    let again = flow.poll_transmit(t0 + Duration::from_secs(5)).unwrap();
    assert_eq!(again.kind, RequestKind::Register);
}

#[test]
fn a_huge_retry_after_is_clamped() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(&mut flow, &register, 202, Some(u64::MAX), ASSIGNING, t0);
    assert_eq!(flow.poll_timeout(), Some(t0 + Duration::from_secs(60)));
}

#[test]
fn a_refusal_is_typed_with_status_and_error_code() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(
        &mut flow,
        &register,
        401,
        None,
        r#"{"errorCode":401002,"trackingId":"t","message":"Unauthorized"}"#,
        t0,
    );
    let err = flow.take_outcome().unwrap().unwrap_err();
    assert_eq!(
        err,
        ProvisioningError::Refused {
            status: 401,
            error_code: Some(401002),
            message: "Unauthorized".into()
        }
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("401002"), "{err}");
}

#[test]
fn failed_and_disabled_registrations_end_with_their_errors() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(
        &mut flow,
        &register,
        200,
        None,
        r#"{"operationId":"o","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":400209,"errorMessage":"Custom allocation failed"}}"#,
        t0,
    );
    assert_eq!(
        flow.take_outcome().unwrap().unwrap_err(),
        ProvisioningError::Failed {
            error_code: Some(400209),
            message: Some("Custom allocation failed".into())
        }
    );

    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(
        &mut flow,
        &register,
        200,
        None,
        r#"{"operationId":"o","status":"disabled"}"#,
        t0,
    );
    assert_eq!(
        flow.take_outcome().unwrap().unwrap_err(),
        ProvisioningError::Disabled
    );
}

#[test]
fn a_missing_answer_times_out_after_the_response_timeout() {
    let (mut flow, t0) = start();
    flow.poll_transmit(t0).unwrap();
    assert_eq!(flow.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    flow.handle_timeout(t0 + Duration::from_secs(29));
    assert!(!flow.is_done());
    flow.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(
        flow.take_outcome().unwrap().unwrap_err(),
        ProvisioningError::Timeout(Duration::from_secs(30))
    );
}

#[test]
fn endless_assigning_ends_at_the_total_timeout() {
    let (mut flow, t0) = start();
    let mut now = t0;
    let mut polls = 0;
    while !flow.is_done() {
        assert!(polls < 1_000, "bounded");
        if let Some(out) = flow.poll_transmit(now) {
            answer(&mut flow, &out, 202, Some(10), ASSIGNING, now);
            polls += 1;
        }
        now = flow.poll_timeout().unwrap_or(now);
        flow.handle_timeout(now);
    }
    assert_eq!(
        flow.take_outcome().unwrap().unwrap_err(),
        ProvisioningError::Timeout(Duration::from_secs(300))
    );
    assert!(polls <= 31, "{polls} polls in 300 s at 10 s each");
}

#[test]
fn a_lost_connection_sends_the_awaited_request_again() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(&mut flow, &register, 202, Some(1), ASSIGNING, t0);
    let poll = flow.poll_transmit(t0 + Duration::from_secs(1)).unwrap();
    flow.handle_connection_lost(t0 + Duration::from_secs(2));
    let again = flow.poll_transmit(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(again.kind, poll.kind);
    answer(
        &mut flow,
        &poll,
        200,
        None,
        ASSIGNED,
        t0 + Duration::from_secs(2),
    );
    assert!(!flow.is_done(), "the old request id is stale");
    answer(
        &mut flow,
        &again,
        200,
        None,
        ASSIGNED,
        t0 + Duration::from_secs(2),
    );
    assert!(flow.take_outcome().unwrap().is_ok());
}

#[test]
fn an_assigned_answer_without_a_hub_is_malformed_and_garbage_is_too() {
    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(
        &mut flow,
        &register,
        200,
        None,
        r#"{"operationId":"o","status":"assigned"}"#,
        t0,
    );
    assert!(matches!(
        flow.take_outcome().unwrap(),
        Err(ProvisioningError::Malformed(_))
    ));

    let (mut flow, t0) = start();
    let register = flow.poll_transmit(t0).unwrap();
    answer(&mut flow, &register, 200, None, "not json", t0);
    assert!(matches!(
        flow.take_outcome().unwrap(),
        Err(ProvisioningError::Malformed(_))
    ));
}

#[test]
fn an_invalid_registration_id_is_refused_up_front() {
    let request = RegistrationRequest {
        registration_id: "Bad Id".into(),
        payload: None,
    };
    assert!(matches!(
        RegistrationFlow::new(&request, FlowOptions::default(), Instant::now()),
        Err(ProvisioningError::InvalidRegistrationId { .. })
    ));
}
