//! Opening a connection: TCP, TLS, AMQP open with SASL ANONYMOUS, one session, the CBS links
//! and the first put-token.

use super::Endpoint;
use super::cbs::Cbs;
use crate::{Error, ErrorKind, Result};
use fe2o3_amqp::connection::ConnectionHandle;
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

fn failed_at(
    what: &str,
    host: &str,
    port: u16,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::new(ErrorKind::Connection, format!("{what} at {host}:{port}")).with_source(e)
}

/// A transport with an AMQP connection and one session on it, not yet authorised.
pub(crate) struct Connected {
    pub(crate) conn: ConnectionHandle<()>,
    pub(crate) session: SessionHandle<()>,
    /// Notified when the transport ends (fe2o3-amqp leaves pending sends hanging then).
    pub(crate) ended: std::sync::Arc<tokio::sync::Notify>,
}

/// TCP, TLS (a refused certificate is [`ErrorKind::Certificate`]), AMQP open with SASL
/// ANONYMOUS, and one session: what every AMQP client of the hub and of its Event
/// Hub-compatible endpoint starts with. No timeout of its own: callers bound the whole open.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Connected> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| failed_at("cannot connect to the AMQP endpoint", host, port, e))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        Error::new(
            ErrorKind::Configuration,
            "the host name is not a valid TLS name",
        )
        .with_source(e)
    })?;
    let tls = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            let mut err = failed_at("TLS handshake failed", host, port, e);
            if certificate {
                err = Error::new(
                    ErrorKind::Certificate,
                    format!("the certificate of {host}:{port} was refused"),
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
        .hostname(host)
        .max_frame_size(65536)
        .sasl_profile(SaslProfile::Anonymous)
        .open_with_stream(tls)
        .await
        .map_err(|e| failed_at("AMQP open failed", host, port, e))?;
    let session = Session::begin(&mut conn)
        .await
        .map_err(|e| failed_at("AMQP begin failed", host, port, e))?;
    Ok(Connected {
        conn,
        session,
        ended,
    })
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
    let Connected {
        conn,
        mut session,
        ended,
    } = connect(&ep.host, ep.port, ep.tls.clone()).await?;
    let mut cbs = Cbs::attach(&mut session).await?;
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
