//! `GET /console/events[?deviceId=]`: server-sent events for the console's live views.
//!
//! - `devices` — the registry's connection states or last-activity times changed; the page
//!   reloads the list from `GET /devices`. Sent once at the start too.
//! - `telemetry` — one device-to-cloud message, as `GET /emulator/telemetry` shows it; the
//!   event id is its sequence number, so a browser that reconnects (`Last-Event-ID`) goes on
//!   where it stopped. The stream starts with up to `limits::CONSOLE_EVENTS_BACKLOG` (100) recent messages.
//! - `dropped` — `{"count": n}`: messages this reader missed.
//!
//! Bound: a stream holds no copy of the telemetry beyond one poll, at most
//! `limits::CONSOLE_EVENTS_POLL_MAX` messages (200) and about 1 MiB; it reads the hub's bounded telemetry buffer at the pace its
//! reader takes the events. A reader slower than the traffic falls behind the buffer, whose
//! oldest messages are dropped as it fills: the messages it missed are counted in a
//! `dropped` event and the stream goes on from the oldest message still kept. The stream
//! ends when the reader goes away or the emulator shuts down.

use super::super::AppState;
use crate::error::HubRefusal;
use crate::hub::Hub;
use crate::hub::TelemetryRecord;
use crate::locks::lock;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::limits::{
    CONSOLE_EVENTS_BACKLOG as BACKLOG, CONSOLE_EVENTS_POLL_MAX as POLL_MAX,
    CONSOLE_EVENTS_POLL_MAX_BYTES as POLL_MAX_BYTES,
};

/// How often an idle stream looks for news.
const POLL_EVERY: Duration = Duration::from_millis(200);

pub(crate) async fn stream(
    State(s): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let console = match super::enabled(&s, method, uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if console.access.check(&s.hub, &headers) != super::access::Verdict::Allowed {
        return HubRefusal::unauthorized().into_response();
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let cursor = match resume {
        Some(last) => last + 1,
        None => end_of_buffer(&s.hub).saturating_sub(BACKLOG),
    };
    let feed = Feed {
        hub: s.hub.clone(),
        shutdown: s.shutdown.clone(),
        device: q.get("deviceId").cloned(),
        cursor,
        resumed: resume.is_some(),
        pending: VecDeque::new(),
        devices: None,
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The sequence number the next message will get (as far as the buffer tells).
fn end_of_buffer(hub: &Hub) -> u64 {
    let has_from = |from: u64| !hub.telemetry_page(None, from, 1, 1).0.is_empty();
    if !has_from(0) {
        return 0;
    }
    // Grow then halve: the buffer holds a contiguous run of sequence numbers.
    let mut hi = 1u64;
    while has_from(hi) && hi < u64::MAX / 2 {
        hi *= 2;
    }
    let mut lo = hi / 2;
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if has_from(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

struct Feed {
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
    device: Option<String>,
    cursor: u64,
    /// Whether `cursor` follows a message this reader saw, so a gap is a loss.
    resumed: bool,
    pending: VecDeque<Event>,
    devices: Option<u64>,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            self.poll();
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                _ = self.shutdown.changed() => return None,
            }
        }
    }

    fn poll(&mut self) {
        let print = devices_fingerprint(&self.hub);
        if self.devices != Some(print) {
            self.devices = Some(print);
            self.pending.push_back(
                Event::default()
                    .event("devices")
                    .data(format!("{{\"connected\":{}}}", self.hub.connected_count())),
            );
        }
        let (page, next) = self
            .hub
            .telemetry_page(None, self.cursor, POLL_MAX, POLL_MAX_BYTES);
        let Some(first) = page.first().map(|r| r.sequence_number) else {
            return;
        };
        if self.resumed && first > self.cursor {
            self.pending.push_back(
                Event::default()
                    .event("dropped")
                    .data(format!("{{\"count\":{}}}", first - self.cursor)),
            );
        }
        self.resumed = true;
        self.cursor = next.unwrap_or_else(|| page.last().map_or(first, |r| r.sequence_number) + 1);
        let device = self.device.as_deref();
        for r in page.iter().filter(|r| wanted(device, r)) {
            if let Ok(e) = Event::default()
                .event("telemetry")
                .id(r.sequence_number.to_string())
                .json_data(r)
            {
                self.pending.push_back(e);
            }
        }
    }
}

fn wanted(device: Option<&str>, r: &TelemetryRecord) -> bool {
    device.is_none_or(|d| r.device_id == d)
}

/// Changes when a device connects, disconnects or shows activity, or the device set changes.
fn devices_fingerprint(hub: &Hub) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let reg = lock(&hub.registry);
    for (id, rec) in &reg.devices {
        id.hash(&mut h);
        (rec.device.connection_state == iot_common::twin::ConnectionState::Connected).hash(&mut h);
        rec.device.last_activity_time.hash(&mut h);
    }
    h.finish()
}
