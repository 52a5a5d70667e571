//! Desired-property updates: patches as they arrive and, after a reconnect, the full desired
//! document when it changed while the client was away; each `$version` at most once, in order.

use futures_core::Stream;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Whether an update is a patch or the whole desired section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DesiredKind {
    /// A patch from the service (merge it: `null` deletes).
    Patch,
    /// The whole desired section, fetched after a reconnect because patches were missed.
    Full,
}

/// A desired-properties update.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DesiredUpdate {
    /// The desired `$version` after this update.
    pub version: u64,
    /// Patch or full document.
    pub kind: DesiredKind,
    /// The properties (without `$version`).
    pub properties: Map<String, Value>,
}

impl DesiredUpdate {
    /// A property deserialized as `T`, or `None` when absent.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        self.properties.get(key).map(|v| T::deserialize(v))
    }
}

/// The stream of desired-property updates; ends when the client closes.
#[derive(Debug)]
pub struct DesiredUpdates {
    pub(crate) rx: mpsc::UnboundedReceiver<DesiredUpdate>,
}

impl DesiredUpdates {
    /// The next update.
    pub async fn next(&mut self) -> Option<DesiredUpdate> {
        self.rx.recv().await
    }
}

impl Stream for DesiredUpdates {
    type Item = DesiredUpdate;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// The client's side of desired-property tracking.
#[derive(Debug, Default)]
pub(crate) struct DesiredState {
    pub(crate) last_version: Option<u64>,
    pub(crate) subscribers: Vec<mpsc::UnboundedSender<DesiredUpdate>>,
}

impl DesiredState {
    /// Delivers an update unless its version was already seen; `true` when delivered.
    pub(crate) fn deliver(
        &mut self,
        version: u64,
        kind: DesiredKind,
        mut properties: Map<String, Value>,
    ) -> bool {
        if self.last_version.is_some_and(|v| version <= v) {
            return false;
        }
        self.last_version = Some(version);
        properties.remove("$version");
        let update = DesiredUpdate {
            version,
            kind,
            properties,
        };
        self.subscribers.retain(|s| s.send(update.clone()).is_ok());
        true
    }

    /// After a (re)connect's twin GET: the first time only records the version; later, a
    /// newer version means patches were missed, so the whole section is delivered.
    pub(crate) fn resync(&mut self, version: u64, properties: Map<String, Value>) {
        match self.last_version {
            None => self.last_version = Some(version),
            Some(_) => {
                self.deliver(version, DesiredKind::Full, properties);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_once_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = DesiredState {
            last_version: None,
            subscribers: vec![tx],
        };
        s.resync(3, Map::new());
        assert!(rx.try_recv().is_err(), "the first GET is a baseline");
        assert!(s.deliver(4, DesiredKind::Patch, Map::new()));
        assert!(!s.deliver(4, DesiredKind::Patch, Map::new()));
        assert!(!s.deliver(2, DesiredKind::Patch, Map::new()));
        s.resync(7, Map::new());
        s.resync(7, Map::new());
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|u| (u.version, u.kind))
            .collect();
        assert_eq!(got, [(4, DesiredKind::Patch), (7, DesiredKind::Full)]);
    }
}
