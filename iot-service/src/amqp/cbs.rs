//! The CBS put-token exchange on `$cbs`: a request with `operation`, `type` and `name`, the
//! token as an AMQP string, answered on the `$cbs` receiver with `status-code`.

use crate::{Error, ErrorKind, Result};
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use iot_common::Secret;
use std::time::Duration;

/// The request/response links of CBS.
#[derive(Debug)]
pub(crate) struct Cbs {
    pub(super) tx: Sender,
    pub(super) rx: Receiver,
}

impl Cbs {
    /// Attaches the sender and the receiver on `$cbs`.
    pub(crate) async fn attach(
        session: &mut fe2o3_amqp::session::SessionHandle<()>,
    ) -> Result<Self> {
        let suffix = uuid::Uuid::new_v4();
        let tx = Sender::attach(session, format!("cbs-sender-{suffix}"), "$cbs")
            .await
            .map_err(attach_error)?;
        let rx = Receiver::attach(session, format!("cbs-receiver-{suffix}"), "$cbs")
            .await
            .map_err(attach_error)?;
        Ok(Self { tx, rx })
    }

    /// Puts `token` for `audience`; `Ok` when the hub answered 200.
    pub(crate) async fn put_token(
        &mut self,
        audience: &str,
        token: &Secret,
        timeout: Duration,
    ) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let request = Message::builder()
            .properties(Properties {
                message_id: Some(MessageId::String(id.clone())),
                reply_to: Some("cbs".to_owned()),
                to: Some("$cbs".to_owned()),
                ..Default::default()
            })
            .application_properties(
                ApplicationProperties::builder()
                    .insert("operation", SimpleValue::String("put-token".into()))
                    .insert(
                        "type",
                        SimpleValue::String("servicebus.windows.net:sastoken".into()),
                    )
                    .insert("name", SimpleValue::String(audience.to_owned()))
                    .build(),
            )
            .value(token.expose().to_owned())
            .build();
        let exchange = async {
            self.tx.send(request).await.map_err(link_error)?;
            loop {
                let answer = self.rx.recv::<Body<Value>>().await.map_err(link_error)?;
                let _ = self.rx.accept(&answer).await;
                let msg = answer.into_message();
                let correlates = msg
                    .properties
                    .as_ref()
                    .and_then(|p| p.correlation_id.as_ref())
                    == Some(&MessageId::String(id.clone()));
                if !correlates {
                    continue;
                }
                let app = msg.application_properties.map(|a| a.0).unwrap_or_default();
                let status = match app.get("status-code") {
                    Some(SimpleValue::Int(n)) => i64::from(*n),
                    Some(SimpleValue::Long(n)) => *n,
                    Some(SimpleValue::Uint(n)) => i64::from(*n),
                    _ => 0,
                };
                let description = match app.get("status-description") {
                    Some(SimpleValue::String(s)) => s.clone(),
                    _ => String::new(),
                };
                return if status == 200 || status == 202 {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::Unauthorized,
                        format!("the hub refused the SAS token ({status} {description})"),
                    ))
                };
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "no CBS put-token answer in time"))?
    }
}

fn attach_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Connection, "cannot attach to $cbs").with_source(e)
}

/// A link or session failure while talking to CBS.
fn link_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Connection, "the AMQP CBS link failed").with_source(e)
}
