//! amoCRM's request limits: at most N requests per integration (all its tokens and its token
//! endpoint calls together) in any sliding second (429 beyond),
//! and a ban (every API call 403) for a client that keeps hitting 429s.

use std::collections::{HashMap, VecDeque};

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the per-second limit: answer 429.
    TooMany,
}

#[derive(Debug, Default)]
pub struct Limiter {
    /// Times (ms) of the accepted requests of each integration within the last second.
    windows: HashMap<String, VecDeque<i64>>,
    /// Times (ms) of the 429s answered within the last minute.
    strikes: VecDeque<i64>,
    banned_until_ms: Option<i64>,
}

const WINDOW_MS: i64 = 1_000;
const STRIKE_WINDOW_MS: i64 = 60_000;

impl Limiter {
    /// Whether the client is banned at `now_ms`.
    pub fn is_banned(&mut self, now_ms: i64) -> bool {
        match self.banned_until_ms {
            Some(until) if until > now_ms => true,
            Some(_) => {
                self.banned_until_ms = None;
                false
            }
            None => false,
        }
    }

    pub fn banned_until_ms(&self) -> Option<i64> {
        self.banned_until_ms
    }

    /// Counts a request of `integration` (its client id); only accepted requests occupy
    /// the window.
    pub fn admit(&mut self, integration: &str, now_ms: i64, per_second: u32) -> Verdict {
        let window = self.windows.entry(integration.to_string()).or_default();
        while window.front().is_some_and(|&t| t <= now_ms - WINDOW_MS) {
            window.pop_front();
        }
        if window.len() >= per_second as usize {
            return Verdict::TooMany;
        }
        window.push_back(now_ms);
        Verdict::Allowed
    }

    /// Records a 429 answer; more than `threshold` within a minute starts a ban.
    pub fn strike(&mut self, now_ms: i64, threshold: u32, ban_secs: u64) {
        while self
            .strikes
            .front()
            .is_some_and(|&t| t <= now_ms - STRIKE_WINDOW_MS)
        {
            self.strikes.pop_front();
        }
        self.strikes.push_back(now_ms);
        if self.strikes.len() > threshold as usize {
            self.banned_until_ms = Some(now_ms + ban_secs as i64 * 1_000);
            self.strikes.clear();
        }
    }

    /// Lifts a ban and forgets past strikes (what amoCRM support does on request).
    pub fn unban(&mut self) {
        self.banned_until_ms = None;
        self.strikes.clear();
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let mut l = Limiter::default();
        for i in 0..3 {
            assert_eq!(l.admit("t", 1_000 + i, 3), Verdict::Allowed);
        }
        assert_eq!(l.admit("t", 1_500, 3), Verdict::TooMany);
        assert_eq!(l.admit("other", 1_500, 3), Verdict::Allowed);
        // The first request leaves the window exactly one second later.
        assert_eq!(l.admit("t", 2_000, 3), Verdict::Allowed);
        assert_eq!(l.admit("t", 2_000, 3), Verdict::TooMany);
    }

    #[test]
    fn strikes_beyond_the_threshold_ban_and_bans_end() {
        let mut l = Limiter::default();
        for i in 0..3 {
            l.strike(10_000 + i, 3, 5);
            assert!(!l.is_banned(10_000 + i));
        }
        l.strike(10_010, 3, 5);
        assert!(l.is_banned(10_011));
        assert!(!l.is_banned(15_010));
    }

    #[test]
    fn old_strikes_do_not_count() {
        let mut l = Limiter::default();
        for i in 0..3 {
            l.strike(i, 3, 5);
        }
        l.strike(61_000, 3, 5);
        assert!(!l.is_banned(61_001));
    }
}
