//! Exponential backoff with jitter, as a pure function: the caller supplies the random draw.

use std::time::Duration;

/// Exponential backoff: `min · 2^attempt`, capped at `max`, plus up to `max_jitter`.
///
/// ```
/// use iot_common::Backoff;
/// use std::time::Duration;
/// let b = Backoff::default();
/// assert_eq!(b.delay(0, 0.0), Duration::from_secs(1));
/// assert_eq!(b.delay(3, 0.0), Duration::from_secs(8));
/// assert_eq!(b.delay(30, 1.0), Duration::from_secs(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The largest delay, jitter included.
    pub max: Duration,
    /// The largest random addition.
    pub max_jitter: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling up to 100 s, plus up to 5 s of jitter (the azure-sdk-for-c defaults).
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(100),
            max_jitter: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// A backoff with the given bounds.
    pub fn new(min: Duration, max: Duration, max_jitter: Duration) -> Self {
        Self {
            min,
            max,
            max_jitter,
        }
    }

    /// The delay before retry number `attempt` (0-based). `jitter` is a random draw in
    /// `[0, 1]`; values outside are clamped, NaN counts as 0.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.min.saturating_mul(factor).min(self.max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        (base + self.max_jitter.mul_f64(jitter)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::ZERO,
        );
        let delays: Vec<_> = (0..8).map(|a| b.delay(a, 0.5).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.delay(u32::MAX, f64::NAN), Duration::from_secs(2));
    }
}
