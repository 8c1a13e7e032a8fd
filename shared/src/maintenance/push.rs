//! Step 2, push: machines whose values changed on our side since they were last written
//! (`push-index`) → `PATCH /api/v4/leads` in batches of up to 250, sized by `BatchSizer`.
//!
//! After a batch is accepted each machine records what amoCRM now holds (the merge's base), so
//! the values coming back by webhook or pull are recognised as ours. Those writes run beside
//! the next requests; if the function dies between a PATCH and its record, the next pull sees
//! amoCRM holding our values and records them then — nothing is pushed twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::batch::{BatchSizer, MAX_BATCH};
use super::model::MaintenanceFieldIds;
use super::modify;
use super::report::PushStats;
use super::step::{Budget, StepEnd, SyncError};
use crate::passport::{AmoValues, Equipment, Maintenance};
use crate::ports::{
    CrmErrorKind, MaintenanceCrm, MaintenanceWrite, PassportStore, StoreError, WriteOutcome,
};

/// Machines read from the index per query.
const INDEX_PAGE: usize = 2000;
/// Accepted batches recorded at once while requests go on (the store groups each batch's
/// machines and keeps its own writes in flight).
const RECORDING_BATCHES: usize = 1;
/// Other 5xx answers in a row before the step gives up until the next run.
const MAX_SERVER_ERRORS: u32 = 3;

pub struct Pusher<'a> {
    pub crm: &'a dyn MaintenanceCrm,
    pub store: Arc<dyn PassportStore>,
    pub fields: &'a MaintenanceFieldIds,
}

/// The change that records amoCRM holding `written` (as of `updated_at`) on a machine; false
/// when there is nothing to record.
fn record_of(written: Maintenance, updated_at: Option<i64>) -> impl FnMut(&mut Equipment) -> bool {
    move |e| {
        let newer_known = e
            .sync
            .amo_updated_at
            .zip(updated_at)
            .is_some_and(|(known, ours)| known > ours);
        if newer_known {
            return false; // a later reading of the deal was applied meanwhile
        }
        let before = e.sync.clone();
        e.sync.amo = AmoValues::of(&written);
        e.sync.amo_updated_at = updated_at.or(e.sync.amo_updated_at);
        e.sync.push_refused_for = None;
        e.sync != before // the webhook path may have recorded it already
    }
}

/// One accepted machine: as read before the PATCH, what amoCRM took, and amoCRM's `updated_at`.
type Accepted = (Equipment, Maintenance, Option<i64>);

/// Records an accepted batch: all at once as read (`update_many`); a machine that changed
/// meanwhile (a TMA edit, a webhook) is read again and merged on its own, so its local change
/// stays and waits for the next push.
async fn record_batch(
    store: Arc<dyn PassportStore>,
    accepted: Vec<Accepted>,
) -> Result<(), StoreError> {
    let mut pairs = Vec::with_capacity(accepted.len());
    let mut kept = Vec::with_capacity(accepted.len());
    for (machine, written, at) in accepted {
        let mut next = machine.clone();
        if record_of(written, at)(&mut next) {
            pairs.push((machine, next));
            kept.push((written, at));
        }
    }
    let done = store.update_many(&pairs).await?;
    for (((machine, _), (written, at)), ok) in pairs.into_iter().zip(kept).zip(done) {
        if !ok {
            let fresh = store
                .get(machine.owner_telegram_id, &machine.serial)
                .await?;
            if let Some(fresh) = fresh {
                modify(store.as_ref(), fresh, record_of(written, at)).await?;
            }
        }
    }
    Ok(())
}

/// Records that amoCRM refused a machine's values.
async fn record_refused(
    store: &dyn PassportStore,
    machine: Equipment,
    reason: &str,
) -> Result<(), StoreError> {
    error!(
        amo_lead_id = machine.amo_lead_id,
        serial = %machine.serial,
        reason,
        alert = true,
        "amoCRM refused the maintenance values because it does not know the deal; \
         not retried until the values change"
    );
    modify(store, machine, |e| {
        e.sync.push_refused_for = Some(e.maintenance);
        true
    })
    .await
    .map(|_| ())
}

/// Machines waiting in the index, read page by page as the queue runs low.
struct PendingQueue {
    items: VecDeque<Equipment>,
    seen: HashSet<(i64, String)>,
    position: Option<String>,
    exhausted: bool,
}

impl PendingQueue {
    fn wants_more(&self, want: usize) -> bool {
        self.items.len() < want && !self.exhausted
    }

    async fn fill(&mut self, store: &dyn PassportStore, want: usize) -> Result<(), StoreError> {
        while self.items.len() < want && !self.exhausted {
            let page = store.pending_push(INDEX_PAGE, self.position.take()).await?;
            for e in page.items {
                if e.needs_push() && self.seen.insert((e.owner_telegram_id, e.serial.clone())) {
                    self.items.push_back(e);
                }
            }
            self.position = page.next;
            self.exhausted = self.position.is_none();
        }
        Ok(())
    }

    /// Up to `n` machines of different deals (a deal's second machine waits for the next batch).
    fn take(&mut self, n: usize) -> Vec<Equipment> {
        let mut batch = Vec::with_capacity(n);
        let mut deals = HashSet::new();
        let mut later = Vec::new();
        while batch.len() < n {
            let Some(e) = self.items.pop_front() else {
                break;
            };
            if deals.insert(e.amo_lead_id) {
                batch.push(e);
            } else {
                later.push(e);
            }
        }
        for e in later.into_iter().rev() {
            self.items.push_front(e);
        }
        batch
    }

    fn put_back(&mut self, batch: Vec<Equipment>) {
        for e in batch.into_iter().rev() {
            self.items.push_front(e);
        }
    }
}

/// Waits for every record in flight; the first failure is returned.
async fn drain(records: &mut JoinSet<Result<(), StoreError>>) -> Result<(), SyncError> {
    let mut first = None;
    while let Some(joined) = records.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => StoreError::Unavailable(format!("recording a push failed: {e}")),
        };
        first.get_or_insert(failure);
    }
    first.map_or(Ok(()), |e| Err(SyncError::Store(e)))
}

impl Pusher<'_> {
    pub async fn push(&self, budget: &Budget, stats: &mut PushStats) -> Result<StepEnd, SyncError> {
        let mut sizer = BatchSizer::new(MAX_BATCH);
        let mut queue = PendingQueue {
            items: VecDeque::new(),
            seen: HashSet::new(),
            position: None,
            exhausted: false,
        };
        let mut records: JoinSet<Result<(), StoreError>> = JoinSet::new();
        let slots = Arc::new(Semaphore::new(RECORDING_BATCHES));
        let outcome = self
            .send_all(budget, stats, &mut sizer, &mut queue, &mut records, &slots)
            .await;
        stats.batch_size = sizer.size();
        // Every accepted batch is recorded before the step ends.
        let recorded = drain(&mut records).await;
        match (outcome, recorded) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(end), Ok(())) => Ok(end),
        }
    }

    async fn send_all(
        &self,
        budget: &Budget,
        stats: &mut PushStats,
        sizer: &mut BatchSizer,
        queue: &mut PendingQueue,
        records: &mut JoinSet<Result<(), StoreError>>,
        slots: &Arc<Semaphore>,
    ) -> Result<StepEnd, SyncError> {
        let mut server_errors = 0u32;
        loop {
            if queue.wants_more(MAX_BATCH * 2) {
                // Records first: the index then no longer lists what was written.
                drain(records).await?;
                queue.fill(self.store.as_ref(), MAX_BATCH * 2).await?;
            }
            if queue.items.is_empty() {
                return Ok(StepEnd::Done);
            }
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            let batch = queue.take(sizer.size());
            let writes: Vec<MaintenanceWrite> = batch
                .iter()
                .map(|e| MaintenanceWrite {
                    lead_id: e.amo_lead_id,
                    maintenance: e.maintenance,
                })
                .collect();
            stats.requests += 1;
            let sent = batch.len();
            match self.crm.write_maintenance(self.fields, &writes).await {
                Ok(WriteOutcome::Written(updated)) => {
                    sizer.accepted(sent);
                    server_errors = 0;
                    stats.written += sent as u64;
                    let accepted: Vec<Accepted> = batch
                        .into_iter()
                        .zip(writes)
                        .map(|(e, w)| {
                            let at = updated
                                .iter()
                                .find(|(id, _)| *id == w.lead_id)
                                .and_then(|(_, t)| *t);
                            (e, w.maintenance, at)
                        })
                        .collect();
                    let store = Arc::clone(&self.store);
                    let slots = Arc::clone(slots);
                    records.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        record_batch(store, accepted).await
                    });
                }
                Ok(WriteOutcome::TooHeavy(e)) => {
                    stats.too_heavy += 1;
                    warn!(batch = sent, error = %e, "amoCRM found the batch too heavy; shrinking it");
                    if sent == 1 {
                        server_errors += 1;
                        if server_errors >= MAX_SERVER_ERRORS {
                            queue.put_back(batch);
                            return Err(e.into());
                        }
                    }
                    sizer.too_heavy(sent);
                    queue.put_back(batch);
                }
                Ok(WriteOutcome::DealsGone {
                    items: gone,
                    failure: e,
                }) => {
                    let mut rest = Vec::new();
                    for (i, machine) in batch.into_iter().enumerate() {
                        if gone.contains(&i) {
                            stats.refused += 1;
                            record_refused(self.store.as_ref(), machine, &e.message).await?;
                        } else {
                            rest.push(machine);
                        }
                    }
                    queue.put_back(rest);
                }
                Err(e) if e.kind == CrmErrorKind::RateLimited => {
                    queue.put_back(batch);
                    return Ok(StepEnd::Deferred(format!(
                        "amoCRM rate limit: {} (resumes next run)",
                        e.message
                    )));
                }
                Err(e) if e.is_retryable() => {
                    server_errors += 1;
                    queue.put_back(batch);
                    if server_errors >= MAX_SERVER_ERRORS {
                        return Err(e.into());
                    }
                    info!(error = %e, "amoCRM failed the batch; trying again shortly");
                    tokio::time::sleep(Duration::from_millis(500 << server_errors)).await;
                }
                Err(e) => {
                    queue.put_back(batch);
                    return Err(e.into());
                }
            }
        }
    }
}
