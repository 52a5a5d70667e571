//! The task that owns one AMQP connection: it opens it on the first request, attaches a
//! sender per target and the receivers asked for, renews the CBS token before it expires, and
//! opens the connection again after a loss (receivers are attached again; a send in progress
//! fails with a retryable error rather than being sent twice).

use super::Endpoint;
use super::open::{Opened, open, put_token};
use crate::{Error, ErrorKind, Result};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::{Body, Data, Message, Outcome};
use fe2o3_amqp::types::primitives::Value;
use futures_util::future::select_all;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Requests waiting for the task; a caller waits for room (its call's timeout still applies).
const COMMAND_QUEUE: usize = 64;
/// First pause before opening a lost connection again; doubles up to [`MAX_REOPEN_PAUSE`].
const FIRST_REOPEN_PAUSE: Duration = Duration::from_millis(500);
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(30);
/// How long closing a connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    Send {
        target: String,
        message: Box<Message<Data>>,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Receive {
        source: String,
        credit: u32,
        deliveries: mpsc::Sender<Incoming>,
    },
    Settle {
        link_id: u64,
        info: DeliveryInfo,
        accept: bool,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A message received on a link, to be settled through [`Incoming::settle`].
pub(crate) struct Incoming {
    pub(crate) message: Message<Body<Value>>,
    link_id: u64,
    info: DeliveryInfo,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("link_id", &self.link_id)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Accepts (`true`) or releases (`false`) the message, waiting at most `timeout`.
    pub(crate) async fn settle(&self, accept: bool, timeout: Duration) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Settle {
            link_id: self.link_id,
            info: self.info.clone(),
            accept,
            reply,
        };
        within(timeout, async {
            self.commands.send(command).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
        .await
    }
}

/// The handle to a connection's task. Cheap to clone; the task ends when the last handle
/// (and the last [`Incoming`]) is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    commands: mpsc::Sender<Command>,
    timeout: Duration,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Send { .. } => "Send",
            Self::Receive { .. } => "Receive",
            Self::Settle { .. } => "Settle",
        })
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Connection, "the AMQP connection task stopped")
}

async fn within<T>(timeout: Duration, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(timeout, f).await.map_err(|_| {
        Error::new(
            ErrorKind::Timeout,
            "the AMQP operation did not finish in time; it may have been applied",
        )
    })?
}

impl Link {
    /// Starts the task; nothing is opened until the first request.
    pub(crate) fn spawn(ep: Endpoint) -> Self {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let timeout = ep.timeout;
        tokio::spawn(run(ep, rx, tx.downgrade()));
        Self {
            commands: tx,
            timeout,
        }
    }

    /// Sends `message` to `target` and returns the hub's outcome.
    ///
    /// # Cancel safety
    /// Not cancel-safe: once queued, the message is sent even if the caller stops waiting.
    pub(crate) async fn send(&self, target: &str, message: Message<Data>) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Send {
            target: target.to_owned(),
            message: Box::new(message),
            reply,
        };
        within(self.timeout * 2, async {
            self.commands.send(command).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
        .await
    }

    /// Attaches a receiver on `source` (now and after every reconnect) that hands messages
    /// to `deliveries`; at most `credit` are unsettled at the hub's side. The receiver is
    /// detached when `deliveries` is closed.
    pub(crate) async fn receive(
        &self,
        source: &str,
        credit: u32,
        deliveries: mpsc::Sender<Incoming>,
    ) -> Result<()> {
        let command = Command::Receive {
            source: source.to_owned(),
            credit,
            deliveries,
        };
        within(self.timeout, async {
            self.commands.send(command).await.map_err(|_| stopped())
        })
        .await
    }
}

/// A receiver wanted on every connection.
struct Subscription {
    source: String,
    credit: u32,
    deliveries: mpsc::Sender<Incoming>,
}

struct LiveReceiver {
    id: u64,
    sub: usize,
    link: Receiver,
}

struct Live {
    opened: Opened,
    senders: HashMap<String, Sender>,
    receivers: Vec<LiveReceiver>,
}

struct Task {
    ep: Endpoint,
    commands: mpsc::WeakSender<Command>,
    live: Option<Live>,
    subs: Vec<Subscription>,
    next_link_id: u64,
    reopen_at: Option<Instant>,
    pause: Duration,
}

/// A received message (or the failure), boxed: deliveries are large.
type Got = Option<Result<Box<fe2o3_amqp::link::delivery::Delivery<Body<Value>>>, String>>;

enum Event {
    Command(Option<Command>),
    Renew,
    Reopen,
    Lost,
    Received(usize, Got),
}

async fn run(ep: Endpoint, mut commands: mpsc::Receiver<Command>, weak: mpsc::WeakSender<Command>) {
    let mut task = Task {
        ep,
        commands: weak,
        live: None,
        subs: Vec::new(),
        next_link_id: 1,
        reopen_at: None,
        pause: FIRST_REOPEN_PAUSE,
    };
    loop {
        let renew_at = task.live.as_ref().map(|l| l.opened.renew_at);
        let (receivers, conn) = match task.live.as_mut() {
            Some(l) => (Some(&mut l.receivers[..]), Some(l.opened.ended.clone())),
            None => (None, None),
        };
        let event = tokio::select! {
            c = commands.recv() => Event::Command(c),
            () = sleep_until(renew_at) => Event::Renew,
            () = sleep_until(task.reopen_at) => Event::Reopen,
            (i, r) = next_delivery(receivers, &task.subs) => Event::Received(i, r),
            () = connection_ended(conn) => Event::Lost,
        };
        match event {
            Event::Command(None) => break,
            Event::Command(Some(c)) => task.handle(c).await,
            Event::Renew => {
                if let Some(live) = task.live.as_mut()
                    && let Err(e) = renew(&task.ep, live).await
                {
                    tracing::warn!(error = %e, "AMQP token renewal failed; reconnecting");
                    task.lost().await;
                }
            }
            Event::Reopen => {
                task.reopen_at = None;
                if task.live.is_none() && !task.subs.is_empty() {
                    let _ = task.connect().await;
                }
            }
            Event::Received(i, r) => task.received(i, r).await,
            Event::Lost => {
                tracing::warn!("AMQP connection lost; reconnecting");
                task.lost().await;
            }
        }
    }
    if let Some(live) = task.live.take() {
        close(live).await;
    }
}

async fn renew(ep: &Endpoint, live: &mut Live) -> Result<()> {
    live.opened.renew_at = put_token(ep, &mut live.opened.cbs).await?;
    Ok(())
}

/// Completes when the connection's engine stops (the hub closed it, or the transport failed).
async fn connection_ended(ended: Option<std::sync::Arc<tokio::sync::Notify>>) {
    match ended {
        Some(e) => e.notified().await,
        None => std::future::pending().await,
    }
}

/// A message written to its link, waiting for the hub's disposition.
struct Pending {
    outcome: fe2o3_amqp::link::delivery::DeliveryFut<
        std::result::Result<Outcome, fe2o3_amqp::link::SendError>,
    >,
    ended: std::sync::Arc<tokio::sync::Notify>,
}

impl Pending {
    async fn outcome(self, timeout: Duration) -> Result<Outcome> {
        match unless_ended(&self.ended, tokio::time::timeout(timeout, self.outcome)).await {
            Some(Ok(Ok(outcome))) => Ok(outcome),
            Some(Ok(Err(e))) => Err(link_error("the send failed", &format!("{e:?}"))),
            Some(Err(_)) => Err(Error::new(
                ErrorKind::Timeout,
                "the hub did not settle the message in time; it may have been accepted",
            )),
            None => Err(Error::new(
                ErrorKind::Connection,
                "the AMQP connection was lost during the send; the message may have been queued",
            )),
        }
    }
}

/// `f`'s output, or `None` if the transport ends first (fe2o3 may leave `f` pending then).
async fn unless_ended<T>(ended: &tokio::sync::Notify, f: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = f => Some(r),
        () = ended.notified() => None,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message of any receiver whose consumer has room; `(i, None)` when receiver `i`'s
/// consumer made room or went away.
async fn next_delivery(
    receivers: Option<&mut [LiveReceiver]>,
    subs: &[Subscription],
) -> (usize, Got) {
    let Some(receivers) = receivers.filter(|r| !r.is_empty()) else {
        return std::future::pending().await;
    };
    let futures = receivers.iter_mut().enumerate().map(|(i, r)| {
        let deliveries = subs[r.sub].deliveries.clone();
        Box::pin(async move {
            if deliveries.capacity() == 0 || deliveries.is_closed() {
                // Recv is cancel-safe, so waiting for room instead loses nothing.
                let _ = deliveries.reserve().await;
                return (i, None);
            }
            let got = r
                .link
                .recv::<Body<Value>>()
                .await
                .map(Box::new)
                .map_err(|e| e.to_string());
            (i, Some(got))
        }) as std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>>
    });
    select_all(futures).await.0
}

impl Task {
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Send {
                target,
                message,
                reply,
            } => match self.send(&target, *message).await {
                Ok(pending) => {
                    let timeout = self.ep.timeout;
                    tokio::spawn(async move {
                        let _ = reply.send(pending.outcome(timeout).await);
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Receive {
                source,
                credit,
                deliveries,
            } => {
                self.subs.push(Subscription {
                    source,
                    credit,
                    deliveries,
                });
                let sub = self.subs.len() - 1;
                match self.live.as_mut() {
                    Some(live) => {
                        let ep = self.ep.clone();
                        if attach_receiver(&ep, live, &self.subs, sub, &mut self.next_link_id)
                            .await
                            .is_err()
                        {
                            self.lost().await;
                        }
                    }
                    None => {
                        let _ = self.connect().await;
                    }
                }
            }
            Command::Settle {
                link_id,
                info,
                accept,
                reply,
            } => {
                let live_link = self
                    .live
                    .as_ref()
                    .and_then(|l| l.receivers.iter().find(|r| r.id == link_id));
                let r = match live_link {
                    None => Err(Error::new(
                        ErrorKind::Connection,
                        "the link that received this message is gone; the hub delivers it again",
                    )),
                    Some(r) => {
                        let done = if accept {
                            r.link.accept(info).await
                        } else {
                            r.link.release(info).await
                        };
                        done.map_err(|e| {
                            Error::new(ErrorKind::Connection, "the settlement was not sent")
                                .with_source(e)
                        })
                    }
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Opens the connection and attaches every subscription's receiver.
    async fn connect(&mut self) -> Result<()> {
        let opened = match open(&self.ep).await {
            Ok(o) => o,
            Err(e) => {
                self.schedule_reopen();
                return Err(e);
            }
        };
        let mut live = Live {
            opened,
            senders: HashMap::new(),
            receivers: Vec::new(),
        };
        for sub in 0..self.subs.len() {
            if let Err(e) =
                attach_receiver(&self.ep, &mut live, &self.subs, sub, &mut self.next_link_id).await
            {
                close(live).await;
                self.schedule_reopen();
                return Err(e);
            }
        }
        self.pause = FIRST_REOPEN_PAUSE;
        self.live = Some(live);
        Ok(())
    }

    fn schedule_reopen(&mut self) {
        if !self.subs.is_empty() {
            self.reopen_at = Some(Instant::now() + self.pause);
            self.pause = (self.pause * 2).min(MAX_REOPEN_PAUSE);
        }
    }

    /// The connection failed: close what is left and open again later if receivers want it.
    async fn lost(&mut self) {
        if let Some(live) = self.live.take() {
            close(live).await;
        }
        self.schedule_reopen();
    }

    /// Writes the message; the returned [`Pending`] resolves to the hub's outcome.
    async fn send(&mut self, target: &str, message: Message<Data>) -> Result<Pending> {
        if self.live.is_none() {
            self.connect().await?;
        }
        let Some(live) = self.live.as_mut() else {
            return Err(stopped());
        };
        if !live.senders.contains_key(target) {
            let name = format!("sender-{}", uuid::Uuid::new_v4());
            let ended = live.opened.ended.clone();
            let attached = unless_ended(
                &ended,
                tokio::time::timeout(
                    self.ep.timeout,
                    Sender::attach(&mut live.opened.session, name, target),
                ),
            )
            .await;
            let Some(attached) = attached else {
                self.lost().await;
                return Err(Error::new(
                    ErrorKind::Connection,
                    "the AMQP connection was lost",
                ));
            };
            match attached {
                Ok(Ok(s)) => {
                    live.senders.insert(target.to_owned(), s);
                }
                Ok(Err(e)) => {
                    let e = link_error("cannot attach a sender", &e.to_string());
                    if e.kind() == ErrorKind::Connection {
                        self.lost().await;
                    }
                    return Err(e);
                }
                Err(_) => {
                    self.lost().await;
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "the sender did not attach in time",
                    ));
                }
            }
        }
        let Some(sender) = live.senders.get_mut(target) else {
            return Err(stopped());
        };
        // Written now; the outcome is awaited off this task, so that sends are pipelined
        // (the link's credit bounds how many are in flight) rather than one per round trip.
        let ended = live.opened.ended.clone();
        let written = unless_ended(
            &ended,
            tokio::time::timeout(self.ep.timeout, sender.send_batchable(message)),
        )
        .await;
        let failed = match written {
            Some(Ok(Ok(outcome))) => return Ok(Pending { outcome, ended }),
            Some(Ok(Err(e))) => link_error("the send failed", &format!("{e:?}")),
            Some(Err(_)) => Error::new(ErrorKind::Timeout, "the message could not be sent in time"),
            None => Error::new(
                ErrorKind::Connection,
                "the AMQP connection was lost during the send; the message may have been queued",
            ),
        };
        live.senders.remove(target);
        if failed.kind() != ErrorKind::Unauthorized {
            self.lost().await;
        }
        Err(failed)
    }

    async fn received(&mut self, i: usize, got: Got) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let sub = live.receivers[i].sub;
        match got {
            None => {
                if self.subs[sub].deliveries.is_closed() {
                    // The consumer went away: detach (the hub redelivers what it did not settle).
                    let r = live.receivers.remove(i);
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, r.link.close()).await;
                    self.forget_subscription(sub);
                }
            }
            Some(Ok(delivery)) => {
                let Some(commands) = self.commands.upgrade() else {
                    return;
                };
                let incoming = Incoming {
                    link_id: live.receivers[i].id,
                    info: DeliveryInfo::from(&*delivery),
                    message: delivery.into_message(),
                    commands,
                };
                // Room was checked before receiving, and only this task sends.
                let _ = self.subs[sub].deliveries.try_send(incoming);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "AMQP receiver failed; reconnecting");
                self.lost().await;
            }
        }
    }

    fn forget_subscription(&mut self, sub: usize) {
        self.subs.remove(sub);
        if let Some(live) = self.live.as_mut() {
            for r in &mut live.receivers {
                if r.sub > sub {
                    r.sub -= 1;
                }
            }
        }
    }
}

async fn attach_receiver(
    ep: &Endpoint,
    live: &mut Live,
    subs: &[Subscription],
    sub: usize,
    next_id: &mut u64,
) -> Result<()> {
    let s = &subs[sub];
    let link = tokio::time::timeout(
        ep.timeout,
        Receiver::builder()
            .name(format!("receiver-{}", uuid::Uuid::new_v4()))
            .source(s.source.as_str())
            .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Auto(s.credit))
            .attach(&mut live.opened.session),
    )
    .await
    .map_err(|_| Error::new(ErrorKind::Timeout, "the receiver did not attach in time"))?
    .map_err(|e| link_error("cannot attach a receiver", &e.to_string()))?;
    live.receivers.push(LiveReceiver {
        id: *next_id,
        sub,
        link,
    });
    *next_id += 1;
    Ok(())
}

/// A link failure: refused authorisation is the caller's to fix, the rest is the connection's.
fn link_error(what: &str, detail: &str) -> Error {
    let kind = if detail.contains("UnauthorizedAccess") || detail.contains("unauthorized-access") {
        ErrorKind::Unauthorized
    } else {
        ErrorKind::Connection
    };
    Error::new(kind, format!("{what}: {detail}"))
}

async fn close(live: Live) {
    let Live {
        mut opened,
        senders,
        receivers,
    } = live;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async move {
        drop(senders);
        drop(receivers);
        let _ = opened.session.end().await;
        let _ = opened.conn.close().await;
    })
    .await;
}
