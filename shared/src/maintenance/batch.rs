//! How many deals go into one `PATCH /api/v4/leads`. amoCRM takes at most 250 and answers 504
//! to batches too heavy for it at the moment: halve on a 504 or a timeout, and grow back by
//! doubling. After a shrink the failed size is tried again after one success (a 504 under
//! load is usually passing); each time the same size fails again, the sizer waits twice as
//! many successes before trying it — so a lasting limit costs few 504s, a passing one few
//! small batches.

/// amoCRM's cap per batch write.
pub const MAX_BATCH: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSizer {
    max: usize,
    size: usize,
    /// The largest size allowed until the next probe.
    cap: usize,
    /// Successes needed at `cap` before growing past it.
    probe_after: u32,
    streak: u32,
    /// The size of the last batch amoCRM accepted.
    last_ok: Option<usize>,
}

impl BatchSizer {
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, MAX_BATCH);
        Self {
            max,
            size: max,
            cap: max,
            probe_after: 1,
            streak: 0,
            last_ok: None,
        }
    }

    /// The size of the next batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// amoCRM accepted a batch of `sent`.
    pub fn accepted(&mut self, sent: usize) {
        self.last_ok = Some(sent);
        self.streak += 1;
        if self.size < self.cap {
            self.size = (self.size * 2).min(self.cap);
        } else if self.cap < self.max && self.streak >= self.probe_after {
            self.cap = (self.cap * 2).min(self.max);
            self.size = self.cap;
            self.streak = 0;
        }
    }

    /// amoCRM found a batch of `sent` too heavy (504 or no answer in time).
    pub fn too_heavy(&mut self, sent: usize) {
        let grew_into_it = self.last_ok.is_some_and(|ok| ok < sent);
        if grew_into_it {
            // A size that worked before failed after growing: probe less eagerly.
            self.probe_after = (self.probe_after * 2).min(64);
            self.cap = self.last_ok.unwrap_or(1).min(sent / 2).max(1);
        } else {
            self.cap = (sent / 2).max(1);
        }
        self.size = self.cap;
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` items through a sizer against an amoCRM that fails the first `fail_first`
    /// requests and every batch above `limit`; returns (requests, failures).
    fn simulate(n: usize, fail_first: usize, limit: usize) -> (usize, usize) {
        let mut sizer = BatchSizer::new(MAX_BATCH);
        let (mut left, mut requests, mut failures) = (n, 0, 0);
        while left > 0 {
            let size = sizer.size().min(left);
            requests += 1;
            if requests <= fail_first || size > limit {
                failures += 1;
                sizer.too_heavy(size);
            } else {
                left -= size;
                sizer.accepted(size);
            }
            assert!(requests < 10 * n, "no progress");
        }
        (requests, failures)
    }

    #[test]
    fn without_trouble_every_batch_is_full() {
        assert_eq!(simulate(10_000, 0, MAX_BATCH), (40, 0));
        assert_eq!(simulate(251, 0, MAX_BATCH), (2, 0));
    }

    #[test]
    fn passing_504s_cost_at_most_one_extra_request_each_besides_themselves() {
        for k in 1..=5 {
            let (requests, failures) = simulate(10_000, k, MAX_BATCH);
            assert_eq!(failures, k);
            assert!(
                requests - failures <= 40 + k,
                "{k} failures: {requests} requests"
            );
        }
    }

    #[test]
    fn a_lasting_limit_is_found_and_probed_rarely() {
        let (requests, failures) = simulate(10_000, 0, 100);
        // At best 100 requests of 100; the sizer settles at 62 with exponentially rarer probes.
        assert!(requests - failures <= 10_000 / 62 + 1, "{requests}");
        assert!(failures <= 10, "{failures} failures");
    }

    #[test]
    fn the_size_never_leaves_one_to_max() {
        let mut s = BatchSizer::new(1000);
        assert_eq!(s.size(), MAX_BATCH);
        for _ in 0..20 {
            s.too_heavy(s.size());
        }
        assert_eq!(s.size(), 1);
        for _ in 0..200 {
            let size = s.size();
            s.accepted(size);
        }
        assert_eq!(s.size(), MAX_BATCH);
    }
}
