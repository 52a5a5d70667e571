//! The one task per connection: it owns rumqttc's `EventLoop`, routes what arrives, reconnects
//! with backoff, and renews the SAS token. `poll()` is never cancelled (a cancelled poll can
//! cut a write in half), so renewal is checked between events (keep-alive pings bound the
//! wait) and shutdown travels through the request channel as a DISCONNECT.

use crate::shared::Shared;
use crate::status::{CloseReason, ConnectionStatus, DisconnectReason};
use crate::{Error, ErrorKind, Result};
use iot_common::{SasToken, Secret};
use rumqttc::{ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Where the MQTT password comes from.
pub(crate) enum Credentials {
    /// A key: tokens are signed here and renewed.
    Key {
        key: Secret,
        key_name: Option<String>,
    },
    /// A ready-made token: used as is, never renewed.
    Token(Secret),
}

impl Credentials {
    /// A password and, for keys, when to renew it.
    pub(crate) fn password(&self, shared: &Shared) -> Result<(Secret, Option<Instant>)> {
        match self {
            Self::Token(t) => Ok((t.clone(), None)),
            Self::Key { key, key_name } => {
                let ttl = shared.options.sas_ttl;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let expiry = now.as_secs() + ttl.as_secs();
                let resource = iot_common::sas::device_resource(
                    &shared.host_name,
                    &shared.device_id,
                    if key_name.is_some() {
                        None
                    } else {
                        shared.module_id.as_deref()
                    },
                );
                let token =
                    SasToken::sign(&resource, key, key_name.as_deref(), expiry).map_err(|e| {
                        Error::new(ErrorKind::Configuration, "cannot sign a SAS token")
                            .with_source(e)
                    })?;
                // Renewal is noticed on the next event, and keep-alive pings bound that wait:
                // leave at least two keep-alives of margin before the whole-second expiry.
                let keep_alive = effective_keep_alive(shared.options.keep_alive, ttl);
                let margin = ttl
                    .mul_f64(0.15)
                    .max(keep_alive * 2 + Duration::from_secs(1));
                let remaining = Duration::from_secs(expiry).saturating_sub(now);
                let renew_in = remaining.saturating_sub(margin).max(remaining / 2);
                let renew_at = Instant::now() + renew_in;
                Ok((token.as_secret().clone(), Some(renew_at)))
            }
        }
    }
}

/// Replaces the MQTT password (the SAS token), keeping the username.
pub(crate) fn set_password(eventloop: &mut EventLoop, password: &Secret) {
    let username = eventloop
        .mqtt_options
        .credentials()
        .map(|l| l.username)
        .unwrap_or_default();
    eventloop
        .mqtt_options
        .set_credentials(username, password.expose());
}

/// CONNACK 4 and 5 mean the credentials were refused; 3 (server unavailable) is transient.
fn is_auth_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
        )
    )
}

/// CONNACK 1 and 2 (protocol version, client id) cannot get better by retrying.
fn is_permanent_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::RefusedProtocolVersion | ConnectReturnCode::BadClientId
        )
    )
}

fn connect_error(e: &ConnectionError) -> Error {
    let kind = if is_auth_refusal(e) {
        ErrorKind::Unauthorized
    } else if is_permanent_refusal(e) {
        ErrorKind::Configuration
    } else {
        ErrorKind::Connection
    };
    Error::new(kind, format!("connection failed: {e}"))
}

/// Runs the connection until the client closes or gives up.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut eventloop: EventLoop,
    credentials: Credentials,
    mut renew_at: Option<Instant>,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready);
    let mut attempt: u32 = 0;
    let mut resigned_after_refusal = false;
    let close_reason = loop {
        let event = eventloop.poll().await;
        let closing = shared.closing.load(Ordering::Acquire);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                attempt = 0;
                resigned_after_refusal = false;
                shared.stats.connects.fetch_add(1, Ordering::Relaxed);
                if !ack.session_present {
                    shared.outbox.on_session_lost();
                }
                shared.status.send_replace(ConnectionStatus::Connected);
                tracing::debug!(device_id = %shared.device_id, "connected");
                match ready.take() {
                    Some(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                    None => shared.on_connected(),
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => shared.dispatch(p),
            Ok(Event::Incoming(Packet::PubAck(a))) => shared.outbox.on_puback(a.pkid),
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                shared.outbox.on_suback(s.pkid, &s.return_codes)
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => shared.outbox.on_outgoing_publish(pkid),
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                shared.outbox.on_outgoing_subscribe(pkid)
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if closing => {
                break CloseReason::ClientClosed;
            }
            Ok(_) => {}
            Err(_) if closing => break CloseReason::ClientClosed,
            Err(e) => {
                let refused = is_auth_refusal(&e);
                shared
                    .stats
                    .connection_losses
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(device_id = %shared.device_id, error = %e, attempt, "connection lost");
                if is_permanent_refusal(&e) {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(connect_error(&e)));
                    }
                    break CloseReason::Unauthorized;
                }
                if let Some(tx) = ready.take() {
                    if refused || !shared.options.retry_initial_connect {
                        let _ = tx.send(Err(connect_error(&e)));
                        break if refused {
                            CloseReason::Unauthorized
                        } else {
                            CloseReason::RetriesExhausted
                        };
                    }
                    ready = Some(tx);
                }
                if refused {
                    // One fresh token, in case the old one expired; a second refusal is final.
                    if resigned_after_refusal || matches!(credentials, Credentials::Token(_)) {
                        break CloseReason::Unauthorized;
                    }
                    resigned_after_refusal = true;
                }
                if shared
                    .options
                    .max_reconnect_attempts
                    .is_some_and(|max| attempt >= max)
                {
                    break CloseReason::RetriesExhausted;
                }
                let reason = if refused {
                    DisconnectReason::Refused
                } else {
                    DisconnectReason::ConnectionLost
                };
                shared
                    .status
                    .send_replace(ConnectionStatus::Disconnected { reason, attempt });
                let delay = shared.options.backoff.delay(attempt, rand::random::<f64>());
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.close_notify.notified() => break CloseReason::ClientClosed,
                }
                if shared.closing.load(Ordering::Acquire) {
                    break CloseReason::ClientClosed;
                }
                match credentials.password(&shared) {
                    Ok((password, renew)) => {
                        set_password(&mut eventloop, &password);
                        renew_at = renew;
                    }
                    Err(_) => break CloseReason::Unauthorized,
                }
                continue;
            }
        }
        if renew_at.is_some_and(|at| Instant::now() >= at) && eventloop.network.is_some() {
            match credentials.password(&shared) {
                Ok((password, renew)) => {
                    tracing::debug!(device_id = %shared.device_id, "renewing the SAS token");
                    shared.stats.token_renewals.fetch_add(1, Ordering::Relaxed);
                    set_password(&mut eventloop, &password);
                    renew_at = renew;
                    shared.status.send_replace(ConnectionStatus::Disconnected {
                        reason: DisconnectReason::TokenRenewal,
                        attempt: 0,
                    });
                    // Unacknowledged publishes move to the replay queue; the next poll
                    // reconnects with the new token.
                    eventloop.clean();
                    eventloop.network = None;
                }
                Err(_) => break CloseReason::Unauthorized,
            }
        }
    };
    shared.closing.store(true, Ordering::Release);
    shared.status.send_replace(ConnectionStatus::Closed {
        reason: close_reason,
    });
    shared.shut_down();
    if let Some(tx) = ready.take() {
        let _ = tx.send(Err(Error::closed()));
    }
    tracing::debug!(device_id = %shared.device_id, reason = ?close_reason, "client stopped");
}

/// Keep-alive short enough that a token renewal is noticed in time.
pub(crate) fn effective_keep_alive(keep_alive: Duration, ttl: Duration) -> Duration {
    keep_alive.min(ttl.mul_f64(0.1)).max(Duration::from_secs(1))
}
