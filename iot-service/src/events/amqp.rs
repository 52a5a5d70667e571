//! The AMQP connection of the event reader: the crate's shared opening (`crate::amqp`: TCP,
//! TLS, AMQP open with SASL ANONYMOUS, one session) and CBS put-token, renewed before expiry
//! by a task of its own, and `$management` READ of the event hub.

use crate::{Error, ErrorKind, Result};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use iot_common::{SasToken, Secret};
use std::sync::Arc;
use std::time::Duration;

/// Where to connect and how to authorise.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: Arc<rustls::ClientConfig>,
    /// CBS `name`, e.g. `sb://{host}/{entity}`.
    pub(super) audience: String,
    pub(super) token: TokenSource,
    pub(super) timeout: Duration,
}

/// How tokens are signed: Event Hubs (Service Bus) style for an `sb://` audience, IoT Hub
/// style (`sr={host}`) for the hub itself.
#[derive(Clone)]
pub(super) struct TokenSource {
    pub(super) policy: String,
    pub(super) key: Secret,
    pub(super) event_hub: bool,
    pub(super) ttl: Duration,
}

impl TokenSource {
    fn sign(&self, audience: &str, host: &str) -> Result<String> {
        let expires = iot_common::sas::unix_seconds(std::time::SystemTime::now() + self.ttl);
        let t = if self.event_hub {
            SasToken::for_event_hub(audience, &self.policy, &self.key, expires)
        } else {
            SasToken::for_service(host, &self.policy, &self.key, expires)
        };
        t.map(|t| t.as_secret().expose().to_owned())
            .map_err(|e| Error::new(ErrorKind::Configuration, "cannot sign a token").with_source(e))
    }
}

/// An open, authorised connection and its session.
pub(super) struct Opened {
    pub(super) conn: ConnectionHandle<()>,
    pub(super) session: SessionHandle<()>,
    /// Puts a fresh token before the current one expires; aborted with the connection.
    renewal: tokio::task::JoinHandle<()>,
}

impl Opened {
    /// Ends the session and closes the connection (errors are moot then).
    pub(super) async fn close(mut self) {
        self.renewal.abort();
        let _ = self.session.end().await;
        let _ = self.conn.close().await;
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

fn failed(what: &str, ep: &Endpoint, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Connection,
        format!("{what} at {}:{}", ep.host, ep.port),
    )
    .with_source(e)
}

/// Opens and authorises a connection within `ep.timeout`.
pub(super) async fn open(ep: &Endpoint) -> Result<Opened> {
    tokio::time::timeout(ep.timeout, open_inner(ep))
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "the AMQP connection to {}:{} did not open in time",
                    ep.host, ep.port
                ),
            )
        })?
}

async fn open_inner(ep: &Endpoint) -> Result<Opened> {
    let crate::amqp::Connected {
        conn, mut session, ..
    } = crate::amqp::connect(&ep.host, ep.port, ep.tls.clone()).await?;
    let mut cbs = crate::amqp::Cbs::attach(&mut session).await?;
    put_token(&mut cbs, ep).await?;
    let renew_every = ep.token.ttl.mul_f64(0.85);
    let renewal_ep = ep.clone();
    let renewal = tokio::spawn(async move {
        loop {
            tokio::time::sleep(renew_every).await;
            let renewed =
                tokio::time::timeout(renewal_ep.timeout, put_token(&mut cbs, &renewal_ep)).await;
            if !matches!(renewed, Ok(Ok(()))) {
                // The hub closes the links at expiry; the stream then reports the error.
                tracing::warn!("the event reader's token could not be renewed");
            }
        }
    });
    Ok(Opened {
        conn,
        session,
        renewal,
    })
}

/// A request/response node (`$cbs`, `$management`): a sender and a receiver on one address.
pub(super) struct RequestLinks {
    tx: Sender,
    rx: Receiver,
    next_id: u64,
}

impl RequestLinks {
    /// Detaches both links.
    pub(super) async fn close(self) {
        let _ = self.tx.close().await;
        let _ = self.rx.close().await;
    }

    pub(super) async fn attach(
        session: &mut SessionHandle<()>,
        node: &str,
        ep: &Endpoint,
    ) -> Result<Self> {
        let suffix = uuid::Uuid::new_v4();
        let tx = Sender::attach(session, format!("{node}-sender-{suffix}"), node)
            .await
            .map_err(|e| failed(&format!("cannot attach to {node}"), ep, e))?;
        let rx = Receiver::attach(session, format!("{node}-receiver-{suffix}"), node)
            .await
            .map_err(|e| failed(&format!("cannot attach to {node}"), ep, e))?;
        Ok(Self { tx, rx, next_id: 1 })
    }

    /// Sends one request and waits for the answer with its correlation id: `(status, body)`.
    pub(super) async fn call(
        &mut self,
        app: ApplicationProperties,
        body: Value,
        ep: &Endpoint,
    ) -> Result<(i32, String, Value)> {
        let id = MessageId::Ulong(self.next_id);
        self.next_id += 1;
        let request = Message::builder()
            .properties(Properties {
                message_id: Some(id.clone()),
                reply_to: Some("event-reader".into()),
                ..Default::default()
            })
            .application_properties(app)
            .value(body)
            .build();
        self.tx
            .send(request)
            .await
            .map_err(|e| failed("a request was not accepted", ep, e))?;
        // Answers to earlier, abandoned requests are skipped (bounded: one per request sent).
        for _ in 0..self.next_id {
            let d = self
                .rx
                .recv::<Body<Value>>()
                .await
                .map_err(|e| failed("no answer to a request", ep, e))?;
            let _ = self.rx.accept(&d).await;
            let msg = d.into_message();
            if msg
                .properties
                .as_ref()
                .and_then(|p| p.correlation_id.as_ref())
                != Some(&id)
            {
                continue;
            }
            let app = msg.application_properties.map(|a| a.0).unwrap_or_default();
            let status = match app.get("status-code") {
                Some(SimpleValue::Int(n)) => *n,
                Some(SimpleValue::Long(n)) => i32::try_from(*n).unwrap_or(500),
                _ => 500,
            };
            let description = match app.get("status-description") {
                Some(SimpleValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let body = match msg.body {
                Body::Value(v) => v.0,
                _ => Value::Null,
            };
            return Ok((status, description, body));
        }
        Err(Error::new(
            ErrorKind::Connection,
            "the answer to a request never came",
        ))
    }
}

async fn put_token(cbs: &mut crate::amqp::Cbs, ep: &Endpoint) -> Result<()> {
    let token = Secret::from(ep.token.sign(&ep.audience, &ep.host)?);
    cbs.put_token(&ep.audience, &token, ep.timeout).await
}

/// `$management` READ of the event hub (`partition: None`) or of one partition: the
/// answer's map.
pub(super) async fn management_read(
    mgmt: &mut RequestLinks,
    entity: &str,
    partition: Option<&str>,
    ep: &Endpoint,
) -> Result<Value> {
    let kind = if partition.is_some() {
        "com.microsoft:partition"
    } else {
        "com.microsoft:eventhub"
    };
    let mut app = ApplicationProperties::builder()
        .insert("operation", SimpleValue::String("READ".into()))
        .insert("type", SimpleValue::String(kind.into()))
        .insert("name", SimpleValue::String(entity.to_owned()));
    if let Some(p) = partition {
        app = app.insert("partition", SimpleValue::String(p.to_owned()));
    }
    let (status, description, body) = mgmt.call(app.build(), Value::Null, ep).await?;
    if !(200..300).contains(&status) {
        let kind = match status {
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            _ => ErrorKind::Hub,
        };
        return Err(Error::new(
            kind,
            format!("reading the event hub '{entity}' answered {status}: {description}"),
        ));
    }
    Ok(body)
}

/// The value of `key` in a `$management` answer.
pub(super) fn field<'v>(body: &'v Value, key: &str) -> Option<&'v Value> {
    match body {
        Value::Map(m) => m.get(&Value::String(key.into())),
        _ => None,
    }
}

/// The event hub's partition ids.
pub(super) fn partition_ids(body: &Value) -> Result<Vec<String>> {
    let ids: Vec<String> = match field(body, "partition_ids") {
        Some(Value::Array(a)) => a.iter().filter_map(string).collect(),
        Some(Value::List(l)) => l.iter().filter_map(string).collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Err(Error::new(
            ErrorKind::Serialization,
            "the event hub's runtime information has no partition ids",
        ));
    }
    Ok(ids)
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
