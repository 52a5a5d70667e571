//! The AMQP 1.0 connection of a service client (port 5671): TLS, SASL ANONYMOUS, a CBS
//! put-token renewed before it expires, and the links that C2D sends and the feedback stream
//! use. One background task per connection (`worker.rs`) owns it; callers talk to it through
//! a bounded queue. The connection is opened when first needed and opened again after a loss.
//!
//! Nothing here knows about C2D: an [`Endpoint`] names a host, a port, the TLS settings and a
//! token source, so any AMQP service of the hub (or its Event Hub-compatible endpoint) can use
//! it.

mod cbs;
mod open;
mod watched;
mod worker;

pub(crate) use cbs::Cbs;
pub(crate) use open::{Connected, connect};
pub(crate) use worker::{Incoming, Link};

use crate::Result;
use iot_common::Secret;
use std::sync::Arc;
use std::time::Duration;

/// Signs a token for the CBS `name` (the audience): `(token, lifetime)`.
pub(crate) type TokenSource = Arc<dyn Fn() -> Result<(Secret, Duration)> + Send + Sync>;

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The host name: TLS server name, AMQP `hostname`.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Without ALPN: AMQP over TLS negotiates none.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// The CBS `name` the token is put for.
    pub(crate) audience: String,
    pub(crate) token: TokenSource,
    /// How long opening (TCP, TLS, AMQP open, CBS) and each operation may take.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}
