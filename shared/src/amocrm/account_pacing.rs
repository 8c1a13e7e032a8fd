//! The integration's rate limit held across every function and instance. amoCRM allows 7
//! requests per second per integration (all its tokens, the token endpoint included), while
//! our functions scale out: pacing each process to a share does not bound the sum.
//!
//! Time is cut into numbered slots of `1/N` s plus `ARRIVAL_MARGIN` (158 ms at 7/s). A request
//! starts at the beginning of a slot it alone holds: claiming it is one conditional write to
//! the state table (`RATE#<slot>`, kept for a minute). Any one second then holds at most 7 slot
//! beginnings, with 106 ms of slack for arrival jitter. A process claims for one task at a time
//! and never reuses a slot it saw taken, so conflicts stay few. When the table cannot be
//! reached, the process falls back to its own share (`AMOCRM_RPS`) and says so once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::sleep;

use super::pacing::{ARRIVAL_MARGIN, Pacer};
use crate::ports::StoreError;

/// Where slots are claimed (the state table in AWS).
#[async_trait]
pub trait SlotClaims: Send + Sync {
    /// Takes slot `index` unless it is taken; true when this call took it. `keep_secs` is how
    /// long the claim must be remembered.
    async fn claim_slot(&self, index: i64, keep_secs: i64) -> Result<bool, StoreError>;
}

/// What every amoCRM request start waits on: one process's pacer or the account's.
#[async_trait]
pub trait RequestPacing: Send + Sync {
    /// Returns when the caller may send its request.
    async fn wait_turn(&self);
}

#[async_trait]
impl RequestPacing for Pacer {
    async fn wait_turn(&self) {
        self.wait().await;
    }
}

/// How far ahead of now a claim aims: the claim itself takes a few milliseconds.
const CLAIM_LEAD_MS: i64 = 20;
/// A slot whose beginning passed more than this before its claim returned is not used: a
/// start that late would crowd the next slot's request.
const LATE_MS: i64 = 60;
/// Taken slots in a row before a claimer pauses one slot (the account is saturated).
const CONFLICTS_BEFORE_PAUSE: u32 = 14;
/// Claims are remembered this long (the limit's window is one second).
const KEEP_SECS: i64 = 60;

/// The account-wide pacer: this process's own share first, then a slot of the account's.
pub struct AccountPacer {
    claims: Arc<dyn SlotClaims>,
    /// The slot length in milliseconds.
    slot_ms: i64,
    /// This process's share, also what remains when the table cannot be reached.
    own: Pacer,
    /// The last slot this process claimed or saw taken; held while claiming.
    last_seen: Mutex<i64>,
    degraded_said: AtomicBool,
}

impl AccountPacer {
    /// `account_rps`: the integration's limit (7); `own_rps`: this process's share of it.
    pub fn new(claims: Arc<dyn SlotClaims>, account_rps: u32, own_rps: u32) -> Self {
        let n = i64::from(account_rps.max(1));
        let slot_ms = (1_000 + n - 1) / n + ARRIVAL_MARGIN.as_millis() as i64;
        AccountPacer {
            claims,
            slot_ms,
            own: Pacer::for_amocrm(own_rps),
            last_seen: Mutex::new(i64::MIN),
            degraded_said: AtomicBool::new(false),
        }
    }

    pub fn slot_ms(&self) -> i64 {
        self.slot_ms
    }

    /// Claims the next free slot from `now_ms` on: its index, or the store's error.
    pub async fn claim(&self, now_ms: i64) -> Result<i64, StoreError> {
        let mut last_seen = self.last_seen.lock().await;
        let mut conflicts = 0u32;
        let mut now_ms = now_ms;
        loop {
            let earliest = (now_ms + CLAIM_LEAD_MS).div_euclid(self.slot_ms) + 1;
            let index = earliest.max(last_seen.saturating_add(1));
            let taken = self.claims.claim_slot(index, KEEP_SECS).await?;
            *last_seen = index;
            let after = wall_ms();
            if taken && after <= index * self.slot_ms + LATE_MS {
                return Ok(index);
            }
            if !taken {
                conflicts += 1;
                if conflicts >= CONFLICTS_BEFORE_PAUSE {
                    conflicts = 0;
                    sleep(Duration::from_millis(self.slot_ms as u64)).await;
                }
            }
            now_ms = wall_ms();
        }
    }
}

#[async_trait]
impl RequestPacing for AccountPacer {
    async fn wait_turn(&self) {
        self.own.wait().await;
        match self.claim(wall_ms()).await {
            Ok(index) => {
                let wait = index * self.slot_ms - wall_ms();
                if wait > 0 {
                    sleep(Duration::from_millis(wait as u64)).await;
                }
            }
            Err(e) => {
                // The process's own share still paces it; the account-wide bound is lost until
                // the table answers again.
                if !self.degraded_said.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "amoCRM rate slots unavailable: pacing by this function's share only");
                }
            }
        }
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Slots in memory, for tests and single-process runs.
#[derive(Default)]
pub struct MemorySlots {
    taken: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    /// Claims fail with this store error while set.
    pub failing: AtomicBool,
}

impl MemorySlots {
    pub fn taken(&self) -> Vec<i64> {
        self.taken.lock().expect("slots").iter().copied().collect()
    }
}

#[async_trait]
impl SlotClaims for MemorySlots {
    async fn claim_slot(&self, index: i64, _keep_secs: i64) -> Result<bool, StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable("the table is down".into()));
        }
        Ok(self.taken.lock().expect("slots").insert(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(slots: &Arc<MemorySlots>, own_rps: u32) -> Arc<AccountPacer> {
        Arc::new(AccountPacer::new(slots.clone(), 7, own_rps))
    }

    #[test]
    fn a_slot_is_a_seventh_of_a_second_plus_the_arrival_margin() {
        let slots = Arc::new(MemorySlots::default());
        let p = pacer(&slots, 7);
        assert_eq!(p.slot_ms(), 158);
        // Any one-second window holds at most 7 slot beginnings.
        assert!(7 * p.slot_ms() > 1_000 && 6 * p.slot_ms() < 1_000);
    }

    #[tokio::test]
    async fn processes_sharing_the_slots_never_start_in_the_same_slot() {
        let slots = Arc::new(MemorySlots::default());
        // Three "processes", each with its own pacer and its own share, all at once.
        let processes = [pacer(&slots, 7), pacer(&slots, 7), pacer(&slots, 7)];
        let now = wall_ms();
        let mut tasks = Vec::new();
        for p in &processes {
            for _ in 0..5 {
                let p = Arc::clone(p);
                tasks.push(tokio::spawn(async move { p.claim(now).await.unwrap() }));
            }
        }
        let mut claimed = Vec::new();
        for t in tasks {
            claimed.push(t.await.unwrap());
        }
        claimed.sort();
        let before = claimed.len();
        claimed.dedup();
        assert_eq!(claimed.len(), before, "two requests got one slot");
        assert_eq!(claimed.len(), 15);
        // All in the future of `now`, each starting a full slot after the previous one.
        assert!(claimed[0] * 158 > now);
        assert_eq!(slots.taken(), claimed);
    }

    #[tokio::test]
    async fn a_process_does_not_retry_slots_it_saw_taken() {
        let slots = Arc::new(MemorySlots::default());
        let now = wall_ms();
        let first = (now + CLAIM_LEAD_MS) / 158 + 1;
        // Another process holds the next ten slots.
        for i in first..first + 10 {
            slots.claim_slot(i, 60).await.unwrap();
        }
        let p = pacer(&slots, 7);
        let got = p.claim(now).await.unwrap();
        assert!(got >= first + 10);
        // The next claim goes on from there instead of trying the ten again.
        let next = p.claim(now).await.unwrap();
        assert_eq!(next, got + 1);
    }

    #[tokio::test]
    async fn requests_wait_for_their_slot_and_an_unreachable_table_falls_back_to_the_share() {
        let slots = Arc::new(MemorySlots::default());
        let p = pacer(&slots, 7);
        let t0 = std::time::Instant::now();
        for _ in 0..3 {
            p.wait_turn().await;
        }
        // Three slots of 158 ms: the third starts at least two slots after the first.
        assert!(t0.elapsed() >= Duration::from_millis(2 * 158));
        assert_eq!(slots.taken().len(), 3);

        slots.failing.store(true, Ordering::Relaxed);
        p.wait_turn().await;
        assert_eq!(
            slots.taken().len(),
            3,
            "nothing claimed while the table is down"
        );
    }
}
