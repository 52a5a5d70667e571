//! Reading device telemetry from the hub's built-in Event Hub-compatible endpoint, over AMQP.
//!
//! [`EventReader`] connects with the hub's service connection string (it follows the hub's
//! `amqp:link:redirect` to the endpoint, as the hub tells every reader to) or with the
//! endpoint's own Event Hubs connection string, reads every partition from a [`Position`],
//! and yields typed [`Event`]s as a bounded [`EventStream`] whose [`EventStream::position`]
//! can be persisted and resumed from without losing or repeating an event.
//!
//! ```no_run
//! # async fn f() -> iot_service::Result<()> {
//! use futures_util::StreamExt;
//! use iot_service::events::{EventReader, EventReaderOptions, Position};
//!
//! let cs = std::env::var("IOTHUB_CONNECTION_STRING").unwrap_or_default();
//! let reader = EventReader::from_connection_string(&cs, EventReaderOptions::new()).await?;
//! let mut events = reader.read(Position::end()).await?;
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{}: {}", event.device_id, event.body_str().unwrap_or("(binary)"));
//! }
//! # Ok(()) }
//! ```

mod amqp;
mod event;
mod position;

pub use event::{Event, SystemProperties};
pub use position::{Position, StartPosition};

use crate::{Error, ErrorKind, Result};
use amqp::{Endpoint, Opened, RequestLinks, TokenSource};
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{Receiver, RecvError};
use fe2o3_amqp::types::definitions::{self, ErrorCondition, Fields, LinkError};
use fe2o3_amqp::types::messaging::{Body, Source};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use iot_common::{EventHubConnectionString, ServiceConnectionString};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// The selector filter's key and descriptor.
const SELECTOR: &str = "apache.org:selector-filter:string";

/// How an [`EventReader`] connects and reads.
#[derive(Clone)]
pub struct EventReaderOptions {
    tls: Option<Arc<rustls::ClientConfig>>,
    consumer_group: String,
    prefetch: u32,
    buffer: usize,
    timeout: Duration,
    amqp_port: u16,
    token_ttl: Duration,
    owner_level: Option<i64>,
}

impl std::fmt::Debug for EventReaderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReaderOptions")
            .field("consumer_group", &self.consumer_group)
            .field("prefetch", &self.prefetch)
            .field("buffer", &self.buffer)
            .field("timeout", &self.timeout)
            .field("amqp_port", &self.amqp_port)
            .field("owner_level", &self.owner_level)
            .finish_non_exhaustive()
    }
}

impl Default for EventReaderOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl EventReaderOptions {
    /// Consumer group `$Default`, 64 events of link credit per partition, a stream buffer of
    /// 256 events, 30 s to connect, port 5671, tokens valid for 1 h (renewed at 85 %).
    pub fn new() -> Self {
        Self {
            tls: None,
            consumer_group: "$Default".to_owned(),
            prefetch: 64,
            buffer: 256,
            timeout: Duration::from_secs(30),
            amqp_port: 5671,
            token_ttl: Duration::from_secs(3600),
            owner_level: None,
        }
    }

    /// Trusts a CA (PEM) besides the platform roots, e.g. the emulator's.
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] when the PEM holds no valid certificate.
    pub fn trust_ca_pem(mut self, pem: &str) -> Result<Self> {
        self.tls = Some(crate::tls::amqp_client_config(Some(pem))?);
        Ok(self)
    }

    /// Trusts the CA in a PEM file.
    ///
    /// # Errors
    /// The file cannot be read ([`ErrorKind::Configuration`]) or holds no valid certificate.
    pub fn trust_ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self> {
        let pem = std::fs::read_to_string(path.as_ref()).map_err(|e| {
            Error::new(ErrorKind::Configuration, "cannot read the CA file").with_source(e)
        })?;
        self.trust_ca_pem(&pem)
    }

    /// The consumer group to read as (default `$Default`).
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = group.into();
        self
    }

    /// Link credit per partition (default 64, at least 1): how many events the endpoint may
    /// send ahead of the stream's consumer, per partition.
    pub fn prefetch(mut self, events: u32) -> Self {
        self.prefetch = events.max(1);
        self
    }

    /// Events the stream holds for the caller (default 256, at least 1). When it is full the
    /// partitions stop taking events and their link credit runs out, so memory stays bounded
    /// by this plus `prefetch` per partition.
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// How long connecting, authorising and each management request may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The hub's AMQP port when reading with the hub's service connection string (default
    /// 5671; the emulator's is in its `RunningEmulator::amqp_addr`). An Event Hubs connection
    /// string carries its own.
    pub fn amqp_port(mut self, port: u16) -> Self {
        self.amqp_port = port;
        self
    }

    /// Reads as an owner-level (epoch) receiver: a reader with a higher level takes the
    /// partitions from this one, whose stream then ends with [`ErrorKind::Conflict`].
    pub fn owner_level(mut self, level: i64) -> Self {
        self.owner_level = Some(level);
        self
    }
}

/// A connected reader of the Event Hub-compatible endpoint.
pub struct EventReader {
    opened: Opened,
    endpoint: Endpoint,
    entity: String,
    partitions: Vec<String>,
    options: EventReaderOptions,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("host", &self.endpoint.host)
            .field("entity", &self.entity)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl EventReader {
    /// Connects with a hub service connection string (`HostName=…;SharedAccessKeyName=…`,
    /// a policy with `ServiceConnect`; the hub redirects to its Event Hub-compatible
    /// endpoint) or an Event Hubs one (`Endpoint=sb://…;EntityPath=…`).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future closes what was opened. It resolves within a few
    /// times [`EventReaderOptions::timeout`] (redirect, connection, management request).
    ///
    /// # Errors
    /// [`ErrorKind::Configuration`] (connection string, CA), [`ErrorKind::Unauthorized`],
    /// [`ErrorKind::Connection`], [`ErrorKind::Certificate`], [`ErrorKind::Timeout`].
    pub async fn from_connection_string(cs: &str, options: EventReaderOptions) -> Result<Self> {
        let config = |e: iot_common::ConnectionStringError| {
            Error::new(ErrorKind::Configuration, e.to_string()).with_source(e)
        };
        if cs.to_ascii_lowercase().contains("endpoint=") {
            Self::connect(cs.parse().map_err(config)?, options).await
        } else {
            let hub: ServiceConnectionString = cs.parse().map_err(config)?;
            let eh = resolve_redirect(&hub, &options).await?;
            Self::connect(eh, options).await
        }
    }

    /// Connects to an Event Hubs endpoint and reads its partition ids.
    ///
    /// # Cancel safety
    /// As [`EventReader::from_connection_string`].
    ///
    /// # Errors
    /// As [`EventReader::from_connection_string`].
    pub async fn connect(
        cs: EventHubConnectionString,
        options: EventReaderOptions,
    ) -> Result<Self> {
        let endpoint = Endpoint {
            host: cs.host.clone(),
            port: cs.port.unwrap_or(5671),
            tls: tls(&options)?,
            audience: cs.audience(),
            token: TokenSource {
                policy: cs.key_name.clone(),
                key: cs.key.clone(),
                event_hub: true,
                ttl: options.token_ttl,
            },
            timeout: options.timeout,
        };
        let mut opened = amqp::open(&endpoint).await?;
        let entity = cs.entity_path.clone();
        let info = tokio::time::timeout(options.timeout, async {
            let mut mgmt =
                RequestLinks::attach(&mut opened.session, "$management", &endpoint).await?;
            let body = amqp::management_read(&mut mgmt, &entity, None, &endpoint).await;
            mgmt.close().await;
            body
        })
        .await
        .map_err(|_| timeout("the event hub's runtime information"))??;
        let partitions = amqp::partition_ids(&info)?;
        Ok(Self {
            opened,
            endpoint,
            entity,
            partitions,
            options,
        })
    }

    /// The partition ids.
    pub fn partition_ids(&self) -> &[String] {
        &self.partitions
    }

    /// The event hub's name (the `EntityPath`).
    pub fn event_hub_name(&self) -> &str {
        &self.entity
    }

    /// Starts reading every partition from `from`, and hands the connection to the stream.
    /// With [`StartPosition::End`], each partition without a checkpoint gets one at its
    /// current last event, so the stream's position is exact from the start.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the connection. Resolves within a few times
    /// [`EventReaderOptions::timeout`].
    ///
    /// # Errors
    /// [`ErrorKind::Connection`], [`ErrorKind::Timeout`] (attaching the partition links or
    /// reading their runtime information). A refusal of a partition link (an unknown consumer
    /// group, a higher owner level) arrives as the stream's first error.
    pub async fn read(mut self, from: Position) -> Result<EventStream> {
        let mut position = from;
        if position.start() == StartPosition::End {
            position =
                tokio::time::timeout(self.options.timeout, self.checkpoints_at_end(position))
                    .await
                    .map_err(|_| timeout("the partitions' runtime information"))??;
        }
        let (tx, rx) = mpsc::channel(self.options.buffer);
        let mut tasks = tokio::task::JoinSet::new();
        for id in self.partitions.clone() {
            let link = tokio::time::timeout(self.options.timeout, self.attach(&id, &position))
                .await
                .map_err(|_| timeout("attaching a partition link"))??;
            tasks.spawn(pump(id, link, tx.clone()));
        }
        Ok(EventStream {
            rx,
            position,
            tasks,
            opened: Some(self.opened),
        })
    }

    async fn checkpoints_at_end(&mut self, mut position: Position) -> Result<Position> {
        let mut mgmt =
            RequestLinks::attach(&mut self.opened.session, "$management", &self.endpoint).await?;
        for id in &self.partitions {
            if position.checkpoint(id).is_some() {
                continue;
            }
            let info =
                amqp::management_read(&mut mgmt, &self.entity, Some(id), &self.endpoint).await?;
            let last = match amqp::field(&info, "last_enqueued_sequence_number") {
                Some(Value::Long(n)) => *n,
                Some(Value::Int(n)) => i64::from(*n),
                _ => -1,
            };
            position = position.with_checkpoint(id.clone(), last);
        }
        mgmt.close().await;
        Ok(position)
    }

    async fn attach(&mut self, partition: &str, position: &Position) -> Result<Receiver> {
        let address = format!(
            "amqps://{}/{}/ConsumerGroups/{}/Partitions/{partition}",
            self.endpoint.host, self.entity, self.options.consumer_group
        );
        let mut filter = OrderedMap::new();
        filter.insert(
            Symbol::from(SELECTOR),
            Value::Described(Box::new(serde_amqp::described::Described {
                descriptor: serde_amqp::descriptor::Descriptor::Name(Symbol::from(SELECTOR)),
                value: Value::String(position.selector(partition)),
            })),
        );
        let mut builder = Receiver::builder()
            .name(format!("event-reader-{partition}-{}", uuid::Uuid::new_v4()))
            .source(Source::builder().address(address).filter(filter).build())
            .target(format!("event-reader-{partition}"))
            .credit_mode(CreditMode::Auto(self.options.prefetch));
        if let Some(level) = self.options.owner_level {
            let mut props = Fields::new();
            props.insert(Symbol::from("com.microsoft:epoch"), Value::Long(level));
            builder = builder.properties(props);
        }
        builder.attach(&mut self.opened.session).await.map_err(|e| {
            Error::new(
                ErrorKind::Connection,
                format!("cannot attach to partition {partition}"),
            )
            .with_source(e)
        })
    }
}

fn tls(options: &EventReaderOptions) -> Result<Arc<rustls::ClientConfig>> {
    match &options.tls {
        Some(t) => Ok(t.clone()),
        None => crate::tls::amqp_client_config(None),
    }
}

fn timeout(what: &str) -> Error {
    Error::new(ErrorKind::Timeout, format!("{what} did not arrive in time"))
}

/// Asks the hub where its Event Hub-compatible endpoint is: a receiver on
/// `amqps://{hub}/messages/events/` is detached with `amqp:link:redirect`, whose info names
/// the endpoint's host, port and address (its last segment is the entity).
async fn resolve_redirect(
    hub: &ServiceConnectionString,
    options: &EventReaderOptions,
) -> Result<EventHubConnectionString> {
    let host = hub
        .host_name
        .rsplit_once(':')
        .map_or(hub.host_name.as_str(), |(h, _)| h)
        .to_owned();
    let endpoint = Endpoint {
        host: host.clone(),
        port: options.amqp_port,
        tls: tls(options)?,
        audience: host.clone(),
        token: TokenSource {
            policy: hub.key_name.clone(),
            key: hub.key.clone(),
            event_hub: false,
            ttl: options.token_ttl,
        },
        timeout: options.timeout,
    };
    let mut opened = amqp::open(&endpoint).await?;
    let refused = tokio::time::timeout(options.timeout, async {
        let mut link = Receiver::attach(
            &mut opened.session,
            format!("redirect-{}", uuid::Uuid::new_v4()),
            format!("amqps://{host}/messages/events/"),
        )
        .await
        .map_err(|e| format!("{e}"))?;
        match link.recv::<Body<Value>>().await {
            Err(e) => Ok(link_error(e)),
            Ok(_) => Err("the hub sent an event instead of a redirect".to_owned()),
        }
    })
    .await;
    opened.close().await;
    let refused = refused
        .map_err(|_| timeout("the hub's redirect"))?
        .map_err(|why| Error::new(ErrorKind::Connection, why))?;
    let Some(e) = refused else {
        return Err(Error::new(
            ErrorKind::Connection,
            "the hub closed the events link without a redirect",
        ));
    };
    if e.condition != ErrorCondition::LinkError(LinkError::Redirect) {
        return Err(link_refusal(&e));
    }
    let info = e.info.unwrap_or_default();
    let text = |k: &str| match info.get(&Symbol::from(k)) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Symbol(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let port = match info.get(&Symbol::from("port")) {
        Some(Value::Int(p)) => u16::try_from(*p).ok(),
        Some(Value::Uint(p)) => u16::try_from(*p).ok(),
        Some(Value::Long(p)) => u16::try_from(*p).ok(),
        _ => None,
    };
    let address = text("address").unwrap_or_default();
    let entity = address
        .split('/')
        .rev()
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_owned();
    match (text("hostname"), entity.is_empty()) {
        (Some(host), false) => Ok(EventHubConnectionString::new(
            host,
            port,
            hub.key_name.clone(),
            hub.key.clone(),
            entity,
        )),
        _ => Err(Error::new(
            ErrorKind::Connection,
            "the hub's redirect names no endpoint",
        )),
    }
}

/// The AMQP error a link ended with, if it ended with one.
fn link_error(e: RecvError) -> Option<definitions::Error> {
    use fe2o3_amqp::link::LinkStateError as S;
    match e {
        RecvError::LinkStateError(S::RemoteClosedWithError(e) | S::RemoteDetachedWithError(e)) => {
            Some(e)
        }
        _ => None,
    }
}

fn link_refusal(e: &definitions::Error) -> Error {
    let kind = match &e.condition {
        ErrorCondition::LinkError(LinkError::Stolen) => ErrorKind::Conflict,
        ErrorCondition::AmqpError(fe2o3_amqp::types::definitions::AmqpError::NotFound) => {
            ErrorKind::NotFound
        }
        ErrorCondition::AmqpError(
            fe2o3_amqp::types::definitions::AmqpError::UnauthorizedAccess,
        ) => ErrorKind::Unauthorized,
        _ => ErrorKind::Connection,
    };
    Error::new(
        kind,
        format!(
            "the endpoint closed the link: {}",
            e.description.as_deref().unwrap_or("no description")
        ),
    )
}

/// Moves one partition's events into the stream's channel until the link fails or the
/// stream is dropped. Waiting on a full channel stops taking events, so the link's credit
/// runs out and the endpoint stops sending: flow control end to end.
async fn pump(partition: String, mut link: Receiver, tx: mpsc::Sender<Result<Event>>) {
    loop {
        let delivery = match link.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                let err = match link_error(e) {
                    Some(amqp) => link_refusal(&amqp),
                    None => Error::new(
                        ErrorKind::Connection,
                        format!("partition {partition}'s link ended"),
                    ),
                };
                let _ = tx.send(Err(err)).await;
                return;
            }
        };
        // Unsettled deliveries (a real endpoint may send them) are accepted; settled ones
        // need nothing.
        let _ = link.accept(&delivery).await;
        match Event::from_message(&partition, delivery.into_message()) {
            Some(event) => {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            None => {
                tracing::warn!(%partition, "an event without Event Hubs annotations was skipped")
            }
        }
    }
}

/// The events of every partition, as a bounded [`futures_core::Stream`] of
/// `Result<Event>`. Its [`EventStream::position`] covers exactly the events it has yielded.
/// Dropping it stops the partition links and closes the connection.
pub struct EventStream {
    rx: mpsc::Receiver<Result<Event>>,
    position: Position,
    tasks: tokio::task::JoinSet<()>,
    opened: Option<Opened>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Where the stream is: a checkpoint for every partition it yielded an event of. Give it
    /// to [`EventReader::read`] to go on after the last event yielded.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The next event.
    ///
    /// # Cancel safety
    /// Cancel-safe: an event is taken from the stream (and counted in its position) only when
    /// this returns it.
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_event(cx)).await
    }

    /// Stops the links and closes the connection.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the stream closes it too.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        if let Some(o) = self.opened.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), o.close()).await;
        }
    }

    fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(event))) => {
                self.position.record(&event);
                Poll::Ready(Some(Ok(event)))
            }
            other => other,
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_event(cx)
    }
}
