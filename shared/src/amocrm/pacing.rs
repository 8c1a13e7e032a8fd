//! Request pacing: amoCRM allows 7 requests per second per integration and bans IPs that keep
//! exceeding it, so every request start takes a slot at least `1/N` s after the previous one.
//!
//! One `Pacer` is shared (via `Arc`) by every request of the process; the slots are handed out
//! under a mutex, the waiting happens outside it.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep_until};

/// Extra spacing between two amoCRM requests of one process. amoCRM counts requests when they
/// arrive, and arrivals jitter (network, a busy runtime): starts exactly `1/7` s apart put an
/// eighth arrival inside some second now and then, and a client that keeps meeting 429s is
/// banned. 15 ms leaves over 100 ms of slack per second at 7/s (about 6.3 requests/s).
pub const ARRIVAL_MARGIN: Duration = Duration::from_millis(15);

/// Hands out request start slots no closer than `1/N` s apart.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// The earliest instant the next request may start; `None` before the first request.
    next_slot: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for at most `requests_per_second` starts in any one-second window (0 counts as 1).
    pub fn new(requests_per_second: u32) -> Self {
        let n = u64::from(requests_per_second.max(1));
        // Rounded up: 1 s / 7 rounded down would fit 8 starts into a closed second.
        let interval = Duration::from_nanos(1_000_000_000u64.div_ceil(n));
        Pacer {
            interval,
            next_slot: Mutex::new(None),
        }
    }

    /// Like `new`, with every spacing `margin` longer: amoCRM counts requests when they
    /// arrive, and arrival jitters (network, a busy runtime), so a client paced at exactly the
    /// limit meets an occasional 429.
    pub fn with_margin(requests_per_second: u32, margin: Duration) -> Self {
        let base = Self::new(requests_per_second);
        Pacer {
            interval: base.interval + margin,
            next_slot: Mutex::new(None),
        }
    }

    /// The pacer every amoCRM client uses: `requests_per_second` with `ARRIVAL_MARGIN`.
    pub fn for_amocrm(requests_per_second: u32) -> Self {
        Self::with_margin(requests_per_second, ARRIVAL_MARGIN)
    }

    /// The spacing between two request starts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's slot; returns the instant the slot began.
    pub async fn wait(&self) -> Instant {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = match *next {
                Some(earliest) if earliest > now => earliest,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot
        };
        sleep_until(slot).await;
        // A late wake-up (a busy runtime) must not squeeze the next start closer to this one.
        // Timers fire up to a millisecond late anyway: that much is no reason to move.
        let started = Instant::now();
        if started > slot + Duration::from_millis(2) {
            let mut next = self.next_slot.lock().await;
            if next.is_some_and(|n| n < started + self.interval) {
                *next = Some(started + self.interval);
            }
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn back_to_back_requests_start_one_interval_apart() {
        let pacer = Pacer::new(7);
        let t0 = Instant::now();
        let mut offsets = Vec::new();
        for _ in 0..8 {
            offsets.push(pacer.wait().await.duration_since(t0));
            // The caller observes its slot, not an earlier one.
            assert!(Instant::now() >= t0 + *offsets.last().unwrap());
        }
        let step = Duration::from_nanos(142_857_143);
        let expected: Vec<_> = (0..8u32).map(|i| step * i).collect();
        assert_eq!(offsets, expected);
        // Seven starts in the first second, the eighth strictly after it.
        assert!(offsets[7] > Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_share_or_crowd_a_slot() {
        let pacer = Arc::new(Pacer::new(5));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                tokio::spawn(async move { pacer.wait().await.duration_since(t0) })
            })
            .collect();
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap());
        }
        offsets.sort();
        let expected: Vec<_> = (0..10u64).map(|i| Duration::from_millis(200 * i)).collect();
        assert_eq!(offsets, expected);
        // Any one-second window holds at most 5 starts.
        for w in offsets.windows(6) {
            assert!(w[5] - w[0] >= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pacer_does_not_delay_the_next_request() {
        let pacer = Pacer::new(2);
        let t0 = Instant::now();
        assert_eq!(pacer.wait().await, t0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = Instant::now();
        assert_eq!(pacer.wait().await, now);
        // ...but the one right after it waits a full interval.
        assert_eq!(pacer.wait().await, now + Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_start_pushes_the_next_slot_and_a_margin_widens_every_spacing() {
        let pacer = Pacer::with_margin(5, Duration::from_millis(10));
        assert_eq!(pacer.interval(), Duration::from_millis(210));
        let t0 = Instant::now();
        pacer.wait().await;
        let mut second = Box::pin(pacer.wait());
        tokio::select! {
            biased;
            _ = &mut second => panic!("the second slot is not due yet"),
            _ = std::future::ready(()) => {}
        }
        // The runtime is busy past that slot: the caller starts 90 ms late.
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(second.await, t0 + Duration::from_millis(210));
        // The next start keeps a full interval from the late one (not t0 + 420 ms).
        let third = pacer.wait().await;
        assert_eq!(third, t0 + Duration::from_millis(510));
    }

    #[test]
    fn zero_requests_per_second_means_one() {
        assert_eq!(Pacer::new(0).interval(), Duration::from_secs(1));
    }
}
