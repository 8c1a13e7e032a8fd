//! Step 5, re-drive: leads and webhook events still pending longer than `after` (their stream
//! records were lost or their retries ran out) are fed again to the same `Deliverer` and
//! `EventProcessor` crm-worker uses. Parked ones wait for an operator and are left alone —
//! except those parked because amoCRM refused our address (IP whitelist, ban): once one cheap
//! call shows amoCRM answering again, they are set back to pending and crm-worker takes them
//! from the stream, so nobody has to re-drive them after the address is allowed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::run::{Budget, StepEnd, SyncError};
use crate::amocrm::CrmErrorKind;
use crate::leads::LeadStatus;
use crate::leads::deliver::{Deliverer, Outcome};
use crate::ops::parked::{RedriveOutcome, WorkKind, WorkQueues};
use crate::passport::events::EventOutcome;
use crate::ports::CrmReachability;
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
    /// Parked because amoCRM refused our address, and set back to pending this run.
    #[serde(default)]
    pub unblocked: u64,
    /// Still parked that way: amoCRM refused our address again.
    #[serde(default)]
    pub still_blocked: u64,
}

pub struct Redriver<'a> {
    pub worker: &'a CrmWorker,
    pub after: chrono::Duration,
    pub queues: &'a dyn WorkQueues,
    pub reach: &'a dyn CrmReachability,
}

impl Redriver<'_> {
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut RedriveStats,
    ) -> Result<StepEnd, SyncError> {
        self.unblock(now, budget, stats).await?;
        self.stale(now, budget, stats).await
    }

    /// Work parked because amoCRM refused our address goes back to pending once amoCRM
    /// answers one call. While it still refuses, that one call is all this run costs it.
    async fn unblock(
        &self,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut RedriveStats,
    ) -> Result<(), SyncError> {
        let mut blocked = Vec::new();
        for kind in [WorkKind::Lead, WorkKind::Event] {
            if kind == WorkKind::Event && !self.queues.has_events() {
                continue;
            }
            let parked = self.queues.parked(kind, PER_RUN).await?;
            blocked.extend(
                parked
                    .into_iter()
                    .filter(|p| p.blocked)
                    .map(|p| (kind, p.id)),
            );
        }
        if blocked.is_empty() || !budget.allows_request() {
            return Ok(());
        }
        match self.reach.reachable().await {
            Ok(()) => {}
            Err(e) if e.kind == CrmErrorKind::Blocked || e.is_retryable() => {
                info!(waiting = blocked.len(), error = %e.message, "amoCRM still refuses us; blocked work keeps waiting");
                stats.still_blocked += blocked.len() as u64;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        for (kind, id) in blocked {
            if self.queues.redrive(kind, &id, now).await? == RedriveOutcome::Redriven {
                info!(kind = kind.as_str(), id = %id, "amoCRM answers again: blocked work re-driven");
                stats.unblocked += 1;
            }
        }
        Ok(())
    }

    async fn stale(
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
