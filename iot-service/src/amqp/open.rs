//! Opening a connection: TCP, TLS, AMQP open with SASL ANONYMOUS, one session, the CBS links
//! and the first put-token.

use super::Endpoint;
use super::cbs::Cbs;
use crate::{Error, ErrorKind, Result};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Session};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An open, authorised connection.
pub(super) struct Opened {
    pub(super) conn: ConnectionHandle<()>,
    pub(super) session: SessionHandle<()>,
    pub(super) cbs: Cbs,
    /// When to put a fresh token.
    pub(super) renew_at: tokio::time::Instant,
    /// Notified when the transport ends.
    pub(super) ended: std::sync::Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

fn failed(what: &str, ep: &Endpoint, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Connection,
        format!("{what} at {}:{}", ep.host, ep.port),
    )
    .with_source(e)
}

/// Opens a connection within `ep.timeout`.
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
    let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| failed("cannot connect to the hub's AMQP endpoint", ep, e))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(ep.host.clone()).map_err(|e| {
        Error::new(
            ErrorKind::Configuration,
            "the host name is not a valid TLS name",
        )
        .with_source(e)
    })?;
    let tls = TlsConnector::from(ep.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            let mut err = failed("TLS handshake failed", ep, e);
            if certificate {
                err = Error::new(
                    ErrorKind::Certificate,
                    format!("the certificate of {}:{} was refused", ep.host, ep.port),
                );
            }
            err
        })?;
    let ended = std::sync::Arc::new(tokio::sync::Notify::new());
    let tls = super::watched::Watched {
        inner: tls,
        ended: ended.clone(),
    };
    let mut conn = Connection::builder()
        .container_id(format!("azure-iot-rs-service-{}", uuid::Uuid::new_v4()))
        .hostname(ep.host.as_str())
        .max_frame_size(65536)
        .sasl_profile(SaslProfile::Anonymous)
        .open_with_stream(tls)
        .await
        .map_err(|e| failed("AMQP open failed", ep, e))?;
    let mut session = Session::begin(&mut conn)
        .await
        .map_err(|e| failed("AMQP begin failed", ep, e))?;
    let suffix = uuid::Uuid::new_v4();
    let tx = Sender::attach(&mut session, format!("cbs-sender-{suffix}"), "$cbs")
        .await
        .map_err(|e| failed("cannot attach to $cbs", ep, e))?;
    let rx = Receiver::attach(&mut session, format!("cbs-receiver-{suffix}"), "$cbs")
        .await
        .map_err(|e| failed("cannot attach to $cbs", ep, e))?;
    let mut cbs = Cbs { tx, rx };
    let renew_at = put_token(ep, &mut cbs).await?;
    Ok(Opened {
        conn,
        session,
        cbs,
        renew_at,
        ended,
    })
}

/// Puts a fresh token; returns when to renew it (`iot_common::sas::renew_after`).
pub(super) async fn put_token(ep: &Endpoint, cbs: &mut Cbs) -> Result<tokio::time::Instant> {
    let (token, ttl) = (ep.token)()?;
    cbs.put_token(&ep.audience, &token, ep.timeout).await?;
    Ok(tokio::time::Instant::now() + iot_common::sas::renew_after(ttl, std::time::Duration::ZERO))
}
