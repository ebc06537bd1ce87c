//! Reconnect backoff: exponential from 0.5 s to 30 s with full jitter, so thousands of
//! agents that lost the broker at the same moment do not come back at the same moment.

use std::time::Duration;

const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(30);

/// The ceiling of the wait before reconnect attempt `attempt` (0-based).
pub(crate) fn ceiling(attempt: u32) -> Duration {
    BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP)
}

/// A random wait in `[0, ceiling(attempt)]`.
pub(crate) fn delay(attempt: u32) -> Duration {
    let max = ceiling(attempt).as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_below_it() {
        assert_eq!(ceiling(0), Duration::from_millis(500));
        assert_eq!(ceiling(1), Duration::from_secs(1));
        assert_eq!(ceiling(5), Duration::from_secs(16));
        assert_eq!(ceiling(6), Duration::from_secs(30));
        assert_eq!(ceiling(u32::MAX), Duration::from_secs(30));
        let samples: Vec<Duration> = (0..200).map(|_| delay(6)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(30)));
        // Full jitter: spread over the whole range, not bunched at the top.
        assert!(samples.iter().any(|d| *d < Duration::from_secs(10)));
        assert!(samples.iter().any(|d| *d > Duration::from_secs(20)));
    }
}
