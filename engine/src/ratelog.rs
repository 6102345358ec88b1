//! Rate limiting for log lines from the datapath: at most one line per interval per kind, with
//! the number of events suppressed since the last line.
//!
//! ```
//! use std::time::Duration;
//! use uring_tunnel_engine::ratelog::RateLimit;
//! let mut send_failed = RateLimit::new(Duration::from_secs(5));
//! for _ in 0..3 {
//!     if let Some(suppressed) = send_failed.check() {
//!         // tracing::warn!(suppressed, "UDP send failed");
//!         assert_eq!(suppressed, 0);
//!     }
//! }
//! ```

use std::time::{Duration, Instant};

/// One kind of event: owned by one thread (a shard), so plain fields, no atomics.
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            next: None,
            suppressed: 0,
        }
    }

    /// Call on each event: `Some(n)` when a line may be logged now (`n` events were suppressed
    /// since the last one), `None` when this one is suppressed.
    pub fn check(&mut self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`RateLimit::check`] with an explicit clock.
    pub fn check_at(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(next) if now < next => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next = Some(now + self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Interval of the datapath's warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.check_at(t0), Some(0));
        assert_eq!(r.check_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(r.check_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(30)), Some(1));
        assert_eq!(r.check_at(t0 + Duration::from_secs(31)), None);
    }
}
