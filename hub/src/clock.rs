//! The hub's source of wall-clock time, as a seam: timestamps the hub writes into
//! objects (`creationTimestamp`, `deletionTimestamp`, ...) come from a `Clock` handed
//! in at construction, so tests can pin them.

use std::fmt::Debug;

use skiff_api::Time;

/// Wall-clock time for timestamps written into objects.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Time;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        Time::from_datetime(chrono::Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_whole_seconds_and_current() {
        let before = chrono::Utc::now().timestamp();
        let t = SystemClock.now();
        let after = chrono::Utc::now().timestamp();
        assert_eq!(t.0.timestamp_subsec_nanos(), 0);
        assert!(t.0.timestamp() >= before - 1 && t.0.timestamp() <= after);
    }
}
