//! The registration over MQTT: a short-lived connection that pumps rumqttc's event loop into
//! the pure [`RegistrationFlow`] and publishes what it asks for.

use super::ProvisioningClient;
use crate::client::split_host_port;
use crate::{Error, ErrorKind, Result, Transport};
use iot_common::SasToken;
use iot_common::provisioning::{RegistrationFlow, RegistrationRequest, RegistrationState, topics};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

/// Lifetime of the registration's SAS token: longer than any registration may take.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Waits before reconnecting after a connection dropped mid-registration.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

fn options(c: &ProvisioningClient) -> Result<MqttOptions> {
    let (host, port) = split_host_port(&c.endpoint, 8883);
    let mut o = MqttOptions::new(c.registration_id.clone(), host, port);
    match c.options.transport {
        Transport::InsecureTcp => {}
        _ => {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(c.options.tls_config()?),
            ));
        }
    }
    let password = match &c.key {
        Some(key) => SasToken::sign(
            &topics::sas_resource(&c.id_scope, &c.registration_id),
            key,
            Some("registration"),
            iot_common::sas::unix_seconds(std::time::SystemTime::now()) + TOKEN_TTL.as_secs(),
        )
        .map_err(|e| {
            Error::new(ErrorKind::Configuration, "the device key is not base64").with_source(e)
        })?
        .as_secret()
        .clone(),
        // X.509: the certificate in the handshake is the credential.
        None => {
            c.options.check_client_certificate()?;
            iot_common::Secret::new("")
        }
    };
    let username = topics::username(&c.id_scope, &c.registration_id, &c.options.client_type());
    o.set_credentials(username, password.expose())
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_max_packet_size(64 * 1024, 64 * 1024);
    Ok(o)
}

fn connect_error(c: &ProvisioningClient, e: &ConnectionError) -> Error {
    let endpoint = &c.endpoint;
    let id = &c.registration_id;
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
        ) => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "the provisioning service at {endpoint} refused registration `{id}` (CONNACK {e}). Hint: check the ID scope `{}`, the registration id and the key (for a group enrollment, the key derived from the group key)",
                c.id_scope
            ),
        ),
        _ => Error::new(
            ErrorKind::Connection,
            format!(
                "cannot reach the provisioning service at {endpoint} for registration `{id}`: {e}"
            ),
        ),
    }
}

/// Runs one registration to its end.
pub(super) async fn register(c: &ProvisioningClient) -> Result<RegistrationState> {
    let request = RegistrationRequest {
        registration_id: c.registration_id.clone(),
        payload: c.payload.clone(),
    };
    let mut flow = RegistrationFlow::new(&request, c.timeouts, Instant::now().into_std())?;
    let (client, mut events) = AsyncClient::new(options(c)?, 8);
    let mut subscribed = false;
    let mut connected_once = false;
    loop {
        let now = Instant::now().into_std();
        if subscribed {
            while let Some(out) = flow.poll_transmit(now) {
                client
                    .try_publish(out.mqtt_topic(), QoS::AtLeastOnce, false, out.body)
                    .map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
            }
        }
        if let Some(outcome) = flow.take_outcome() {
            let _ = client.try_disconnect();
            return outcome.map_err(Error::from);
        }
        // Until the subscription is in place a due request cannot go out: waking for it would
        // spin, and would keep cancelling rumqttc's connection attempt.
        let wake = Instant::from_std(if subscribed {
            flow.poll_timeout().unwrap_or_else(|| flow.deadline())
        } else {
            flow.deadline()
        });
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected_once = true;
                    client
                        .try_subscribe(topics::RESPONSE_FILTER, QoS::AtLeastOnce)
                        .map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        return Err(Error::new(
                            ErrorKind::Hub,
                            "the provisioning service refused the response subscription",
                        ));
                    }
                    subscribed = true;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    flow.handle_mqtt_answer(&p.topic, &p.payload, Instant::now().into_std());
                }
                Ok(_) => {}
                // The first connection failing ends the registration with the reason (an
                // untrusted certificate or a refused key does not get better by retrying).
                Err(e) if !connected_once => return Err(connect_error(c, &e).with_source(e)),
                Err(e) => {
                    tracing::warn!(registration_id = %c.registration_id, error = %e, "provisioning connection lost; reconnecting");
                    subscribed = false;
                    flow.handle_connection_lost(Instant::now().into_std());
                    tokio::select! {
                        () = sleep(RECONNECT_DELAY) => {}
                        () = sleep_until(wake) => flow.handle_timeout(Instant::now().into_std()),
                    }
                }
            },
            () = sleep_until(wake) => flow.handle_timeout(Instant::now().into_std()),
        }
    }
}
