//! The register-then-poll exchange as a state machine: time is passed in, nothing is sent or
//! awaited here. The MQTT and HTTPS clients only move [`Outgoing`] requests and answers.

use super::topics::{self, ResponseTopic};
use super::{
    ProvisioningError, RegistrationOperation, RegistrationRequest, RegistrationState,
    RegistrationStatus, ServiceErrorBody, validate_registration_id,
};
use std::time::{Duration, Instant};

/// Timing rules of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOptions {
    /// How long to wait for DPS's answer to one request (the official SDKs wait 30 s).
    pub response_timeout: Duration,
    /// The wait before the next poll or retry when DPS gives no `retry-after` (2 s, as the
    /// official SDKs).
    pub default_retry_after: Duration,
    /// The longest `retry-after` honoured; longer ones are clamped so that a bad answer cannot
    /// park a device for hours.
    pub max_retry_after: Duration,
    /// The whole registration, polls and throttling included, ends with
    /// [`ProvisioningError::Timeout`] after this long.
    pub total_timeout: Duration,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(30),
            default_retry_after: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
        }
    }
}

/// Which request an [`Outgoing`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// The registration request (`PUT .../register`).
    Register,
    /// A poll of the registration's operation.
    Poll {
        /// The operation being polled.
        operation_id: String,
    },
}

/// A request for the transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The request id its answer must carry.
    pub rid: String,
    /// What is asked.
    pub kind: RequestKind,
    /// The JSON body (the registration request; a poll's body is a single space, as the
    /// Python SDK sends).
    pub body: Vec<u8>,
}

impl Outgoing {
    /// The MQTT topic to publish this request on.
    pub fn mqtt_topic(&self) -> String {
        match &self.kind {
            RequestKind::Register => topics::register_topic(&self.rid),
            RequestKind::Poll { operation_id } => topics::poll_topic(&self.rid, operation_id),
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Send {
        due: Instant,
        kind: RequestKind,
    },
    Await {
        rid: String,
        kind: RequestKind,
        deadline: Instant,
    },
    Done,
}

/// One registration, from the first request to the assigned hub.
///
/// ```
/// use iot_common::provisioning::{FlowOptions, RegistrationFlow, RegistrationRequest};
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// let request = RegistrationRequest { registration_id: "dev-1".into(), payload: None };
/// let mut flow = RegistrationFlow::new(&request, FlowOptions::default(), start)?;
/// let register = flow.poll_transmit(start).expect("registers at once");
/// assert!(register.mqtt_topic().starts_with("$dps/registrations/PUT/iotdps-register/"));
///
/// let assigning = format!("$dps/registrations/res/202/?$rid={}&retry-after=1", register.rid);
/// flow.handle_mqtt_answer(&assigning, br#"{"operationId":"op1","status":"assigning"}"#, start);
/// assert_eq!(flow.poll_timeout(), Some(start + Duration::from_secs(1)));
///
/// let later = start + Duration::from_secs(1);
/// let poll = flow.poll_transmit(later).expect("polls after retry-after");
/// let assigned = format!("$dps/registrations/res/200/?$rid={}", poll.rid);
/// flow.handle_mqtt_answer(&assigned, br#"{"operationId":"op1","status":"assigned",
///   "registrationState":{"registrationId":"dev-1","assignedHub":"hub.example","deviceId":"dev-1"}}"#, later);
/// let state = flow.take_outcome().expect("done")?;
/// assert_eq!(state.assigned_hub.as_deref(), Some("hub.example"));
/// # Ok::<(), iot_common::provisioning::ProvisioningError>(())
/// ```
#[derive(Debug)]
pub struct RegistrationFlow {
    body: Vec<u8>,
    options: FlowOptions,
    phase: Phase,
    deadline: Instant,
    next_rid: u64,
    outcome: Option<Result<RegistrationState, ProvisioningError>>,
}

impl RegistrationFlow {
    /// Starts a registration at `now`; the first [`poll_transmit`](Self::poll_transmit) returns
    /// the registration request.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidRegistrationId`] when the id breaks DPS's rules.
    pub fn new(
        request: &RegistrationRequest,
        options: FlowOptions,
        now: Instant,
    ) -> Result<Self, ProvisioningError> {
        validate_registration_id(&request.registration_id)?;
        let body =
            serde_json::to_vec(request).map_err(|e| ProvisioningError::Malformed(e.to_string()))?;
        Ok(Self {
            body,
            options,
            phase: Phase::Send {
                due: now,
                kind: RequestKind::Register,
            },
            deadline: now + options.total_timeout,
            next_rid: 0,
            outcome: None,
        })
    }

    /// The next request to send, if one is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Outgoing> {
        let Phase::Send { due, kind } = &self.phase else {
            return None;
        };
        if *due > now {
            return None;
        }
        let kind = kind.clone();
        self.next_rid += 1;
        let rid = self.next_rid.to_string();
        let body = match kind {
            RequestKind::Register => self.body.clone(),
            RequestKind::Poll { .. } => b" ".to_vec(),
        };
        self.phase = Phase::Await {
            rid: rid.clone(),
            kind: kind.clone(),
            deadline: (now + self.options.response_timeout).min(self.deadline),
        };
        Some(Outgoing { rid, kind, body })
    }

    /// When [`handle_timeout`](Self::handle_timeout) or [`poll_transmit`](Self::poll_transmit)
    /// must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Send { due, .. } => Some((*due).min(self.deadline)),
            Phase::Await { deadline, .. } => Some(*deadline),
            Phase::Done => None,
        }
    }

    /// When the whole registration times out. A transport that is not ready to send yet (not
    /// connected or not subscribed) waits for this rather than [`poll_timeout`](Self::poll_timeout),
    /// which may already be due.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Ends the registration with [`ProvisioningError::Timeout`] when an answer or the whole
    /// registration is overdue at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue = match &self.phase {
            Phase::Await { deadline, .. } => now >= *deadline,
            Phase::Send { .. } => now >= self.deadline,
            Phase::Done => false,
        };
        if overdue {
            let waited = match &self.phase {
                Phase::Await { .. } if now < self.deadline => self.options.response_timeout,
                _ => self.options.total_timeout,
            };
            self.finish(Err(ProvisioningError::Timeout(waited)));
        }
    }

    /// The connection dropped: an awaited answer is lost with it, so the request goes again
    /// as soon as the transport is back (re-registering and re-polling are both harmless).
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if let Phase::Await { kind, .. } = &self.phase {
            self.phase = Phase::Send {
                due: now,
                kind: kind.clone(),
            };
        }
    }

    /// Feeds an MQTT answer (topic and payload). Answers to other request ids are ignored.
    pub fn handle_mqtt_answer(&mut self, topic: &str, body: &[u8], now: Instant) {
        match topics::parse_response_topic(topic) {
            Ok(answer) => self.handle_answer(&answer, body, now),
            Err(e) => self.finish(Err(e.into())),
        }
    }

    /// Feeds an answer from any transport (HTTPS builds the [`ResponseTopic`] from the status,
    /// the `Retry-After` header and the request it sent).
    pub fn handle_answer(&mut self, answer: &ResponseTopic, body: &[u8], now: Instant) {
        let Phase::Await { rid, kind, .. } = &self.phase else {
            return;
        };
        if *rid != answer.rid {
            return;
        }
        let kind = kind.clone();
        let retry_after = answer
            .retry_after
            .map(Duration::from_secs)
            .unwrap_or(self.options.default_retry_after)
            .min(self.options.max_retry_after);
        match answer.status {
            200 | 202 => self.handle_operation(body, now + retry_after),
            429.. => {
                self.phase = Phase::Send {
                    due: now + retry_after,
                    kind,
                }
            }
            status => {
                let error: ServiceErrorBody = serde_json::from_slice(body).unwrap_or_default();
                self.finish(Err(ProvisioningError::Refused {
                    status,
                    error_code: error.error_code,
                    message: error.message,
                }));
            }
        }
    }

    fn handle_operation(&mut self, body: &[u8], next_poll: Instant) {
        let op: RegistrationOperation = match serde_json::from_slice(body) {
            Ok(op) => op,
            Err(e) => return self.finish(Err(ProvisioningError::Malformed(e.to_string()))),
        };
        match op.status {
            RegistrationStatus::Assigning => {
                self.phase = Phase::Send {
                    due: next_poll,
                    kind: RequestKind::Poll {
                        operation_id: op.operation_id,
                    },
                }
            }
            RegistrationStatus::Assigned => match op.registration_state {
                Some(state) if state.assigned_hub.is_some() && state.device_id.is_some() => {
                    self.finish(Ok(state))
                }
                _ => self.finish(Err(ProvisioningError::Malformed(
                    "an assigned registration without assignedHub and deviceId".into(),
                ))),
            },
            RegistrationStatus::Failed => {
                let state = op.registration_state;
                self.finish(Err(ProvisioningError::Failed {
                    error_code: state.as_ref().and_then(|s| s.error_code),
                    message: state.and_then(|s| s.error_message),
                }))
            }
            RegistrationStatus::Disabled => self.finish(Err(ProvisioningError::Disabled)),
            RegistrationStatus::Unassigned => self.finish(Err(ProvisioningError::Malformed(
                "the operation answered `unassigned`".into(),
            ))),
        }
    }

    fn finish(&mut self, outcome: Result<RegistrationState, ProvisioningError>) {
        self.phase = Phase::Done;
        self.outcome.get_or_insert(outcome);
    }

    /// Whether the registration is over (assigned or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Takes the outcome once the registration is over.
    pub fn take_outcome(&mut self) -> Option<Result<RegistrationState, ProvisioningError>> {
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests;
