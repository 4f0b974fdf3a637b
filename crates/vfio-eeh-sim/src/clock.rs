//! Time for the simulator: a [`Clock`] trait with a [`VirtualClock`] (tests,
//! the demo, benchmarks: sleeping advances virtual time, so a 1.8 s settle
//! takes microseconds and is deterministic) and a [`MonotonicClock`] (a live
//! VMM: real sleeps).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of time and a way to wait for it.
pub trait Clock: Send + Sync + Debug {
    /// Time since the clock's epoch.
    fn now(&self) -> Duration;
    /// Waits `d` of this clock's time.
    fn sleep(&self, d: Duration);
}

/// Virtual time, starting at zero; [`sleep`](Clock::sleep) advances it and
/// returns at once. Shared by all threads, it only moves forward.
#[derive(Debug, Default)]
pub struct VirtualClock {
    nanos: AtomicU64,
}

impl VirtualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        VirtualClock::default()
    }

    /// Moves time forward by `d` (saturating at `u64::MAX` ns, about 584
    /// years).
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The closure never returns None, so the update always succeeds.
        let _ = self.nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_add(add)));
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

/// The real monotonic clock; its epoch is its creation.
#[derive(Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        MonotonicClock { start: Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_sleep_advances_time_at_once() {
        let clock = VirtualClock::new();
        assert_eq!(clock.now(), Duration::ZERO);
        let wall = Instant::now();
        clock.sleep(Duration::from_secs(3600));
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), Duration::from_millis(3_600_005));
        assert!(wall.elapsed() < Duration::from_secs(1));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn monotonic_clock_moves() {
        let clock = MonotonicClock::new();
        let before = clock.now();
        clock.sleep(Duration::from_millis(2));
        assert!(clock.now() >= before + Duration::from_millis(2));
    }
}
