//! Who reads each partition of each consumer group, for Event Hubs' owner-level (epoch)
//! rules: a receiver with a higher epoch takes the partition from every lower or non-epoch
//! one; a non-epoch receiver is refused while an epoch receiver reads; at most
//! [`MAX_RECEIVERS`] receivers share a partition of a consumer group.

use crate::locks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Receivers per partition per consumer group (the Event Hubs quota).
pub(crate) const MAX_RECEIVERS: usize = 5;

type Key = (String, u32);

#[derive(Debug)]
struct Owner {
    id: u64,
    epoch: Option<i64>,
    /// Set to a reason when a higher epoch takes the partition.
    kick: watch::Sender<Option<String>>,
}

#[derive(Debug, Default)]
struct Table {
    owners: HashMap<Key, Vec<Owner>>,
    next_id: u64,
}

/// The registry of partition receivers.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventReceivers(Arc<Mutex<Table>>);

/// Why a receiver may not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimRefused {
    /// An epoch receiver at least as high reads the partition.
    Epoch(String),
    /// [`MAX_RECEIVERS`] read it already.
    Quota(String),
}

/// A receiver's claim on a partition; dropping it releases the claim.
#[derive(Debug)]
pub(crate) struct Claim {
    table: EventReceivers,
    key: Key,
    id: u64,
    kicked: watch::Receiver<Option<String>>,
}

impl Claim {
    /// Resolves with the reason once a higher epoch receiver takes the partition.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only watches.
    pub(crate) async fn kicked(&mut self) -> String {
        let kicked = self
            .kicked
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone());
        match kicked {
            Ok(r) => r.unwrap_or_default(),
            // The sender lives in the table as long as this claim: not reached.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut t = lock(&self.table.0);
        if let Some(v) = t.owners.get_mut(&self.key) {
            v.retain(|o| o.id != self.id);
            if v.is_empty() {
                t.owners.remove(&self.key);
            }
        }
    }
}

impl EventReceivers {
    /// Claims `partition` of `group` for a receiver with `epoch` (`None`: no owner level).
    pub(crate) fn claim(
        &self,
        group: &str,
        partition: u32,
        epoch: Option<i64>,
    ) -> Result<Claim, ClaimRefused> {
        let key = (group.to_ascii_lowercase(), partition);
        let mut t = lock(&self.0);
        t.next_id += 1;
        let id = t.next_id;
        let owners = t.owners.entry(key.clone()).or_default();
        let highest = owners.iter().filter_map(|o| o.epoch).max();
        match (epoch, highest) {
            (None, Some(h)) => {
                return Err(ClaimRefused::Epoch(format!(
                    "A receiver with epoch {h} reads partition {partition} of consumer group \
                     '{group}'; a receiver without an epoch cannot join it."
                )));
            }
            (Some(e), Some(h)) if e < h => {
                return Err(ClaimRefused::Epoch(format!(
                    "A receiver with the higher epoch {h} reads partition {partition} of \
                     consumer group '{group}'; epoch {e} cannot take it."
                )));
            }
            (Some(e), _) => {
                // The lower (and non-epoch) receivers lose the partition; equal epochs share.
                owners.retain(|o| {
                    if o.epoch.is_none_or(|oe| oe < e) {
                        o.kick.send_replace(Some(format!(
                            "New receiver with higher epoch of '{e}' is created hence current \
                             receiver with epoch '{}' is getting disconnected.",
                            o.epoch.map_or("none".to_owned(), |x| x.to_string())
                        )));
                        false
                    } else {
                        true
                    }
                });
            }
            (None, None) => {}
        }
        if owners.len() >= MAX_RECEIVERS {
            return Err(ClaimRefused::Quota(format!(
                "At most {MAX_RECEIVERS} receivers may read partition {partition} of consumer \
                 group '{group}'."
            )));
        }
        let (kick, kicked) = watch::channel(None);
        owners.push(Owner { id, epoch, kick });
        Ok(Claim {
            table: self.clone(),
            key,
            id,
            kicked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_higher_epoch_kicks_the_lower_and_refuses_non_epoch() {
        let r = EventReceivers::default();
        let plain = r.claim("$Default", 0, None).ok();
        let mut low = r
            .claim("$Default", 0, Some(1))
            .ok()
            .unwrap_or_else(|| panic!());
        drop(plain);
        assert!(matches!(
            r.claim("$Default", 0, None),
            Err(ClaimRefused::Epoch(_))
        ));
        let _high = r
            .claim("$default", 0, Some(2))
            .ok()
            .unwrap_or_else(|| panic!());
        assert!(low.kicked().await.contains("higher epoch of '2'"));
        assert!(matches!(
            r.claim("$Default", 0, Some(1)),
            Err(ClaimRefused::Epoch(_))
        ));
        // Another partition or group is not affected.
        assert!(r.claim("$Default", 1, None).is_ok());
        assert!(r.claim("other", 0, None).is_ok());
    }

    #[test]
    fn five_receivers_per_partition() {
        let r = EventReceivers::default();
        let claims: Vec<_> = (0..5).filter_map(|_| r.claim("g", 3, None).ok()).collect();
        assert_eq!(claims.len(), 5);
        assert!(matches!(r.claim("g", 3, None), Err(ClaimRefused::Quota(_))));
        drop(claims);
        assert!(r.claim("g", 3, None).is_ok());
    }
}
