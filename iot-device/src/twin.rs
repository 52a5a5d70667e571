//! Desired-property updates: patches as they arrive and, after a reconnect, the full desired
//! document when it changed while the client was away; each `$version` at most once, in order.

use futures_core::Stream;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::task::{Context, Poll};

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
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut updates = client.desired_updates().await?;
    /// if let Some(update) = updates.next().await {
    ///     let interval: Option<u64> = update.get("telemetryInterval").transpose()?;
    ///     println!("{interval:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        self.properties.get(key).map(|v| T::deserialize(v))
    }
}

/// The stream of desired-property updates; ends when the client closes.
///
/// It starts with the current desired state as a [`DesiredKind::Full`], then yields patches
/// in `$version` order. At most `desired_capacity` updates (default 16) wait for a slow
/// reader; past that they coalesce into one `Full` of the current state. All streams of a
/// client share one queue: each update goes to one of them.
pub struct DesiredUpdates {
    pub(crate) inner: crate::inner::Pull<DesiredUpdate>,
}

impl std::fmt::Debug for DesiredUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DesiredUpdates")
    }
}

impl DesiredUpdates {
    /// The next update.
    ///
    /// ```no_run
    /// # async fn demo(client: iot_device::DeviceClient) -> iot_device::Result<()> {
    /// let mut updates = client.desired_updates().await?;
    /// while let Some(update) = updates.next().await {
    ///     println!("desired v{}", update.version);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: an update is taken from the queue only when this resolves.
    pub async fn next(&mut self) -> Option<DesiredUpdate> {
        futures_util::StreamExt::next(&mut self.inner).await
    }
}

impl Stream for DesiredUpdates {
    type Item = DesiredUpdate;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }
}
