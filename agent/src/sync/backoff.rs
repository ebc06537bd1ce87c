//! Reconnect backoff, with full jitter so thousands of agents that lost the broker at
//! the same moment do not come back at the same moment.
//!
//! A refused TCP connection means the broker's host answered and nothing listens: the
//! hub (or its broker) is restarting, and a refusal costs it nothing. For the first
//! [`RESTART_WINDOW`] of an outage such attempts wait at most [`RESTART_CAP`] and do not
//! count towards the exponential backoff, so a restarted hub has its fleet back about a
//! second after it listens again, and an agent that then meets a busy broker starts
//! backing off from 0.5 s rather than from where its refusals left it. Anything else
//! (timeouts, unreachable networks, refused logins), and refusals that go on longer,
//! back off exponentially from 0.5 s to 30 s.

use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(30);
/// The longest wait between refused attempts early in an outage.
const RESTART_CAP: Duration = Duration::from_secs(1);
/// How long refusals count as a restart in progress.
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// `base` doubled `n` times, at most `cap`.
pub(crate) fn doubling(base: Duration, n: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << n.min(16)).min(cap)
}

/// The ceiling of the wait before reconnect attempt `attempt` (0-based).
pub(crate) fn ceiling(attempt: u32) -> Duration {
    doubling(BASE, attempt, CAP)
}

/// A random wait in `[0, ceiling]`.
fn jitter(ceiling: Duration) -> Duration {
    Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64))
}

/// The reconnect schedule of one connection.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failed attempts since the last connection.
    attempt: u32,
    /// Those that count towards the exponential backoff.
    counted: u32,
    /// When the first failed attempt of this outage failed.
    since: Option<Instant>,
}

impl Backoff {
    /// The wait after a failed attempt; `refused` when the TCP connection was refused.
    pub(crate) fn failed(&mut self, refused: bool, now: Instant) -> Duration {
        let since = *self.since.get_or_insert(now);
        let mut max = ceiling(self.counted);
        if refused && now.duration_since(since) < RESTART_WINDOW {
            max = max.min(RESTART_CAP);
        } else {
            self.counted = self.counted.saturating_add(1);
        }
        self.attempt = self.attempt.saturating_add(1);
        jitter(max)
    }

    /// Failed attempts since the last connection.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Connected: the next outage starts from the beginning.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::default();
    }
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
        let samples: Vec<Duration> = (0..200).map(|_| jitter(ceiling(6))).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(30)));
        // Full jitter: spread over the whole range, not bunched at the top.
        assert!(samples.iter().any(|d| *d < Duration::from_secs(10)));
        assert!(samples.iter().any(|d| *d > Duration::from_secs(20)));
    }

    #[test]
    fn refusals_early_in_an_outage_retry_within_a_second() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        // A minute of refusals: never more than a second apart, however many.
        for i in 0..100 {
            let at = t0 + Duration::from_millis(500 * i);
            assert!(b.failed(true, at) <= RESTART_CAP, "attempt {i}");
        }
        assert_eq!(b.attempts(), 100);
        // A timeout once the hub is back starts the exponential backoff afresh.
        let after: Vec<Duration> = (0..3)
            .map(|_| b.failed(false, t0 + Duration::from_secs(50)))
            .collect();
        assert!(after[0] <= BASE && after[1] <= 2 * BASE && after[2] <= 4 * BASE);
        // Past the window refusals count again and the ceiling grows to 30 s.
        let late: Vec<Duration> = (0..50)
            .map(|_| b.failed(true, t0 + RESTART_WINDOW))
            .collect();
        assert!(late.iter().all(|d| *d <= CAP));
        assert!(late.iter().any(|d| *d > Duration::from_secs(10)));
    }

    #[test]
    fn other_failures_back_off_exponentially_and_a_connection_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..6 {
            b.failed(false, t0);
        }
        let waits: Vec<Duration> = (0..50).map(|_| b.failed(false, t0)).collect();
        assert!(waits.iter().all(|d| *d <= CAP));
        assert!(waits.iter().any(|d| *d > Duration::from_secs(2)));
        // A refusal after timeouts is still early in the outage: short.
        assert!(b.failed(true, t0 + Duration::from_secs(5)) <= RESTART_CAP);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.failed(false, t0) <= BASE);
    }
}
