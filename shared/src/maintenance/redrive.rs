//! Step 5, re-drive: leads and webhook events still pending longer than `after` (their stream
//! records were lost or their retries ran out) are fed again to the same `Deliverer` and
//! `EventProcessor` crm-worker uses. Parked ones wait for an operator and are left alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::run::{Budget, StepEnd, SyncError};
use crate::leads::LeadStatus;
use crate::leads::deliver::{Deliverer, Outcome};
use crate::passport::events::EventOutcome;
use crate::worker::CrmWorker;

/// At most this many of each kind per run (the rest wait for the next run).
const PER_RUN: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveStats {
    pub leads: u64,
    pub leads_delivered: u64,
    pub leads_parked: u64,
    pub events: u64,
    pub events_done: u64,
    pub events_parked: u64,
}

pub struct Redriver<'a> {
    pub worker: &'a CrmWorker,
    pub after: chrono::Duration,
}

impl Redriver<'_> {
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut RedriveStats,
    ) -> Result<StepEnd, SyncError> {
        let cutoff = now - self.after;
        let deliverer = Deliverer {
            store: self.worker.store.as_ref(),
            crm: self.worker.crm.as_ref(),
            notifier: self.worker.notifier.as_ref(),
            mail: &self.worker.mail,
        };
        let stale = self
            .worker
            .store
            .list_by_status(LeadStatus::Pending, PER_RUN)
            .await?;
        for lead in stale.into_iter().filter(|l| l.updated_at < cutoff) {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            stats.leads += 1;
            info!(lead_id = %lead.lead.id, pending_since = %lead.updated_at, "re-driving a stale pending lead");
            match deliverer.deliver(&lead.lead.id).await {
                Outcome::Delivered { .. } => stats.leads_delivered += 1,
                Outcome::Parked { .. } => stats.leads_parked += 1,
                Outcome::Retry { .. } | Outcome::Skipped => {}
            }
        }
        let Some(events) = &self.worker.events else {
            return Ok(StepEnd::Done);
        };
        for id in events.inbox.pending_before(cutoff, PER_RUN).await? {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            stats.events += 1;
            info!(event_id = %id, "re-driving a stale pending webhook event");
            match events.process(&id).await {
                EventOutcome::Done => stats.events_done += 1,
                EventOutcome::Parked { .. } => stats.events_parked += 1,
                EventOutcome::Retry { .. } | EventOutcome::Skipped => {}
            }
        }
        Ok(StepEnd::Done)
    }
}
