//! The one time type of the SDK: an instant in UTC as the hub writes it (ISO 8601 with seven
//! fractional digits and `Z`, .NET's round-trip format), read from any RFC 3339 text (or an
//! ISO 8601 one without offset, read as UTC).
//!
//! It replaces the strings and the hand-written calendar arithmetic the clients had; the
//! calendar work is chrono's, which the workspace already used. chrono stays out of the public
//! API: a [`Timestamp`] converts to and from [`std::time::SystemTime`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// An instant in UTC, as the hub's JSON carries times (`"2024-03-14T09:54:49.6536567Z"`).
///
/// ```
/// use iot_common::Timestamp;
/// use std::time::{Duration, SystemTime};
/// let t: Timestamp = "2023-11-14T22:13:20.123Z".parse()?;
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.1230000Z");
/// assert_eq!(
///     SystemTime::from(t),
///     SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
/// );
/// assert_eq!(Timestamp::from(SystemTime::from(t)), t);
/// # Ok::<(), iot_common::TimestampError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(chrono::DateTime<chrono::Utc>);

/// A text that is not an RFC 3339 / ISO 8601 time with an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO 8601 time with a time zone (e.g. 2024-01-01T00:00:00Z)")]
pub struct TimestampError;

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(chrono::DateTime::UNIX_EPOCH);

    /// The hub's "never": 0001-01-01T00:00:00Z (.NET's `DateTime.MinValue`), e.g. the
    /// `lastActivityTime` of a device that never connected.
    pub fn never() -> Self {
        chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(Self::UNIX_EPOCH, |t| Self(t.and_utc()))
    }

    /// `true` for [`Timestamp::never`] (and anything before 1970, which the hub never
    /// writes otherwise).
    pub fn is_never(&self) -> bool {
        *self < Self::UNIX_EPOCH
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(t.into())
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.0.into()
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// RFC 3339; a time without an offset is read as UTC, because the hub's registry writes
    /// some times that way (`"0001-01-01T00:00:00"` for "never").
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        let s = s.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(Self(t.with_timezone(&chrono::Utc)));
        }
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|t| Self(t.and_utc()))
            .map_err(|_| TimestampError)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::Timelike as _;
        write!(
            f,
            "{}.{:07}Z",
            self.0.format("%Y-%m-%dT%H:%M:%S"),
            self.0.nanosecond() % 1_000_000_000 / 100
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_as_the_hub_does_and_reads_rfc3339() {
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_string(),
            "1970-01-01T00:00:00.0000000Z"
        );
        let leap = Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(leap.to_string(), "2000-02-29T00:00:00.0000000Z");
        let hub: Timestamp = "2024-03-14T09:54:49.6536567Z".parse().unwrap();
        assert_eq!(hub.to_string(), "2024-03-14T09:54:49.6536567Z");
        let offset: Timestamp = "2024-03-14T10:54:49+01:00".parse().unwrap();
        assert_eq!(offset.to_string(), "2024-03-14T09:54:49.0000000Z");
        assert_eq!(
            "0001-01-01T00:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "0001-01-01T00:00:00.0000000Z"
        );
        assert_eq!(
            "0001-01-01T00:00:00"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "0001-01-01T00:00:00.0000000Z"
        );
        assert_eq!("yesterday".parse::<Timestamp>(), Err(TimestampError));
        assert_eq!("2024-01-01".parse::<Timestamp>(), Err(TimestampError));
        let json = serde_json::to_string(&hub).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), hub);
        assert!(serde_json::from_str::<Timestamp>("\"2024-13-01T00:00:00Z\"").is_err());
    }
}
