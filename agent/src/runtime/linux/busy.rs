//! Starts under way, so that background work waits for them. Deleting removed pods'
//! directories and making spares share the disk (and, on a small device, the CPUs)
//! with a container start; run beside one they slow it down (a directory made on a busy
//! disk can take half a millisecond), so they wait until no start is under way, or for
//! at most a while, so that a steady stream of starts cannot hold them off for good.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Busy {
    starts: Mutex<usize>,
    idle: Condvar,
}

/// One start under way, until dropped.
pub(crate) struct Start<'a>(&'a Busy);

impl Busy {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.starts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn start(&self) -> Start<'_> {
        *self.lock() += 1;
        Start(self)
    }

    /// Waits until no start is under way, or `max` has passed.
    pub fn wait_idle(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let mut n = self.lock();
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            n = self
                .idle
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Start<'_> {
    fn drop(&mut self) {
        let mut n = self.0.lock();
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn background_work_waits_for_the_starts_under_way_but_not_for_ever() {
        let busy = Arc::new(Busy::default());
        let t = Instant::now();
        busy.wait_idle(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1), "idle: no wait");

        let b = busy.clone();
        let start = std::thread::spawn(move || {
            let _s = b.start();
            let _nested = b.start();
            std::thread::sleep(Duration::from_millis(200));
        });
        while *busy.lock() == 0 {
            std::thread::yield_now();
        }
        let t = Instant::now();
        busy.wait_idle(Duration::from_secs(5));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        start.join().unwrap();

        let _held = busy.start();
        let t = Instant::now();
        busy.wait_idle(Duration::from_millis(100));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
