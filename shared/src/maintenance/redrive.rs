//! Step 5, re-drive: leads and webhook events still pending longer than `after` (their stream
//! records were lost or their retries ran out) are fed again to the same `Deliverer` and
//! `EventProcessor` crm-worker uses. Parked ones wait for an operator and are left alone —
//! except those parked because amoCRM refused our address (IP whitelist, ban): once one cheap
//! call shows amoCRM answering again, they are set back to pending and crm-worker takes them
//! from the stream, so nobody has to re-drive them after the address is allowed. Leads that
//! met such a refusal wait pending (marked blocked) and are delivered here after that call.

use chrono::{DateTime, Utc};
use tracing::info;

use super::report::RedriveStats;
use super::step::{Budget, StepEnd, SyncError};
use crate::crm_events::{EventOutcome, EventProcessor};
use crate::leads::LeadStatus;
use crate::leads::deliver::{Deliverer, Outcome};
use crate::ports::{CrmErrorKind, CrmReachability, RedriveOutcome, WorkKind, WorkQueues};

/// At most this many of each kind per run (the rest wait for the next run).
const PER_RUN: usize = 100;
/// Parked items read per run to find the blocked ones among them.
const SCAN_PARKED: usize = 1_000;
/// Blocked work is re-driven by itself up to this many delivery attempts.
pub const MAX_AUTOMATIC_ATTEMPTS: u32 = crate::leads::deliver::MAX_BLOCKED_ATTEMPTS;

pub struct Redriver<'a> {
    /// The lead delivery crm-worker runs.
    pub delivery: Deliverer<'a>,
    /// The webhook use case crm-worker runs; `None` where no inbox is configured.
    pub events: Option<&'a EventProcessor>,
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
        if self.mails(budget, stats).await? == StepEnd::OutOfTime {
            return Ok(StepEnd::OutOfTime);
        }
        self.stale(now, budget, stats).await
    }

    /// Sales copies SES did not take: each run tries them again (the lead is in amoCRM).
    async fn mails(&self, budget: &Budget, stats: &mut RedriveStats) -> Result<StepEnd, SyncError> {
        let deliverer = &self.delivery;
        for lead in self
            .delivery
            .store
            .list_by_status(LeadStatus::Mailing, PER_RUN)
            .await?
        {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            stats.mails += 1;
            if let Outcome::Delivered { .. } = deliverer.deliver(&lead.lead.id).await
                && let Ok(Some(after)) = self.delivery.store.get(&lead.lead.id).await
                && after.status == LeadStatus::Delivered
            {
                stats.mails_sent += 1;
            }
        }
        Ok(StepEnd::Done)
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
            // Past the ones parked for good (a rejected field), up to a run's worth.
            let parked = self.queues.parked(kind, SCAN_PARKED).await?;
            blocked.extend(
                parked
                    .into_iter()
                    // Tried this often, it is refused for another reason than our address
                    // (a 403 for the token user's rights looks the same): an operator decides.
                    .filter(|p| p.blocked && p.attempts <= MAX_AUTOMATIC_ATTEMPTS)
                    .map(|p| (kind, p.id))
                    .take(PER_RUN),
            );
        }
        // Leads that met the refusal wait pending, marked blocked: delivered here, not by
        // the stale re-drive, so that nothing calls amoCRM for them before the probe passes.
        let waiting: Vec<String> = self
            .delivery
            .store
            .list_by_status(LeadStatus::Pending, PER_RUN)
            .await?
            .into_iter()
            .filter(|l| l.delivery.blocked)
            .map(|l| l.lead.id)
            .collect();
        if (blocked.is_empty() && waiting.is_empty()) || !budget.allows_request() {
            return Ok(());
        }
        match self.reach.reachable().await {
            Ok(()) => {}
            Err(e) if e.kind == CrmErrorKind::Blocked || e.is_retryable() => {
                let count = blocked.len() + waiting.len();
                info!(waiting = count, error = %e.message, "amoCRM still refuses us; blocked work keeps waiting");
                stats.still_blocked += count as u64;
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
        let deliverer = &self.delivery;
        for id in waiting {
            if !budget.allows_request() {
                break;
            }
            info!(lead_id = %id, "amoCRM answers again: a waiting lead delivered");
            stats.unblocked += 1;
            if let Outcome::Delivered { .. } = deliverer.deliver(&id).await {
                stats.leads_delivered += 1;
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
        let deliverer = &self.delivery;
        let stale = self
            .delivery
            .store
            .list_by_status(LeadStatus::Pending, PER_RUN)
            .await?;
        // Blocked leads wait for the probe in `unblock`.
        for lead in stale
            .into_iter()
            .filter(|l| l.updated_at < cutoff && !l.delivery.blocked)
        {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            stats.leads += 1;
            info!(lead_id = %lead.lead.id, pending_since = %lead.updated_at, "re-driving a stale pending lead");
            match deliverer.deliver(&lead.lead.id).await {
                Outcome::Delivered { .. } => stats.leads_delivered += 1,
                Outcome::Parked { .. } => stats.leads_parked += 1,
                Outcome::Retry { .. }
                | Outcome::Skipped
                | Outcome::Busy
                | Outcome::Waiting { .. } => {}
            }
        }
        let Some(events) = self.events else {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::amocrm::testkit::{CannedServer, client_for};
    use crate::leads::deliver::{LeadDelivery, MailSettings};
    use crate::ports::CrmFailure;
    use crate::ports::ParkedItem;
    use crate::ports::{CrmErrorKind, MailMessage, Notifier, NotifyError, StoreError};
    use crate::store::MemoryLeadStore;

    /// Parked items by id: (blocked, attempts); records what was re-driven.
    #[derive(Default)]
    struct Parked {
        items: BTreeMap<String, (bool, u32)>,
        redriven: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl WorkQueues for Parked {
        fn has_events(&self) -> bool {
            false
        }
        async fn parked(
            &self,
            kind: WorkKind,
            limit: usize,
        ) -> Result<Vec<ParkedItem>, StoreError> {
            Ok(self
                .items
                .iter()
                .take(limit)
                .map(|(id, (blocked, attempts))| ParkedItem {
                    kind,
                    id: id.clone(),
                    received_at: None,
                    parked_at: None,
                    attempts: *attempts,
                    source: None,
                    last_error: None,
                    hint: None,
                    blocked: *blocked,
                })
                .collect())
        }
        async fn count(
            &self,
            _: WorkKind,
            _: &str,
            _: Option<DateTime<Utc>>,
        ) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn redrive(
            &self,
            _: WorkKind,
            id: &str,
            _: DateTime<Utc>,
        ) -> Result<RedriveOutcome, StoreError> {
            self.redriven.lock().unwrap().push(id.to_string());
            Ok(RedriveOutcome::Redriven)
        }
    }

    /// amoCRM answering the probe, or refusing our address; counts the probes.
    struct Probe {
        refuses: bool,
        calls: Mutex<u32>,
    }

    #[async_trait]
    impl CrmReachability for Probe {
        async fn reachable(&self) -> Result<(), CrmFailure> {
            *self.calls.lock().unwrap() += 1;
            if self.refuses {
                Err(CrmFailure::new(CrmErrorKind::Blocked, "403", "whitelist"))
            } else {
                Ok(())
            }
        }
    }

    struct NoMail;

    #[async_trait]
    impl Notifier for NoMail {
        async fn send(&self, _: &MailMessage) -> Result<(), NotifyError> {
            unreachable!("no lead is delivered here")
        }
    }

    async fn run(parked: &Parked, probe: &Probe) -> RedriveStats {
        run_with(parked, probe, Arc::new(MemoryLeadStore::default())).await
    }

    async fn run_with(parked: &Parked, probe: &Probe, store: Arc<MemoryLeadStore>) -> RedriveStats {
        let server = CannedServer::start(Vec::new()).await;
        let delivery = LeadDelivery {
            store,
            crm: Arc::new(client_for(&server, "tok").0),
            notifier: Arc::new(NoMail),
            mail: MailSettings {
                sales_mailbox: "zakaz@tdrusstankosbyt.ru".into(),
                amo_base_url: server.base_url.clone(),
            },
            hold: chrono::Duration::seconds(2),
        };
        let mut stats = RedriveStats::default();
        let end = Redriver {
            delivery: delivery.deliverer(),
            events: None,
            after: chrono::Duration::minutes(15),
            queues: parked,
            reach: probe,
        }
        .run(
            Utc::now(),
            &Budget::from_fn(|| Duration::from_secs(60)),
            &mut stats,
        )
        .await
        .unwrap();
        assert_eq!(end, StepEnd::Done);
        assert!(server.requests().is_empty(), "only the probe asks amoCRM");
        stats
    }

    fn parked(items: &[(&str, bool, u32)]) -> Parked {
        Parked {
            items: items
                .iter()
                .map(|(id, b, a)| (id.to_string(), (*b, *a)))
                .collect(),
            ..Parked::default()
        }
    }

    #[tokio::test]
    async fn blocked_work_is_redriven_once_amocrm_answers_and_only_blocked_work() {
        let queues = parked(&[("A", true, 1), ("B", false, 1), ("C", true, 6)]);
        let probe = Probe {
            refuses: false,
            calls: Mutex::new(0),
        };
        let stats = run(&queues, &probe).await;
        assert_eq!(*queues.redriven.lock().unwrap(), vec!["A".to_string()]);
        assert_eq!(stats.unblocked, 1);
        assert_eq!(*probe.calls.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_lead_waiting_blocked_is_delivered_after_the_probe_and_never_before() {
        use crate::leads::Delivery;
        use crate::ports::LeadStore;
        let store = Arc::new(MemoryLeadStore::default());
        let id = "01JWAITWAITWAITWAITWAITWAIT";
        let waiting = Delivery {
            attempts: 1,
            blocked: true,
            ..Delivery::default()
        };
        store.with_lead(id, LeadStatus::Pending, &waiting).await;
        let queues = parked(&[]);
        // amoCRM still refuses: the probe is the only call, the lead stays as it was.
        let refusing = Probe {
            refuses: true,
            calls: Mutex::new(0),
        };
        let stats = run_with(&queues, &refusing, store.clone()).await;
        assert_eq!(stats.still_blocked, 1);
        assert_eq!(*refusing.calls.lock().unwrap(), 1);
        let after = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (after.status, after.delivery.attempts),
            (LeadStatus::Pending, 1)
        );
    }

    #[tokio::test]
    async fn while_amocrm_still_refuses_one_probe_is_all_a_run_costs() {
        let queues = parked(&[("A", true, 1), ("D", true, 2)]);
        let probe = Probe {
            refuses: true,
            calls: Mutex::new(0),
        };
        let stats = run(&queues, &probe).await;
        assert!(queues.redriven.lock().unwrap().is_empty());
        assert_eq!((stats.unblocked, stats.still_blocked), (0, 2));
        assert_eq!(*probe.calls.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn without_blocked_work_amocrm_is_not_asked() {
        let queues = parked(&[("B", false, 1), ("C", true, 6)]);
        let probe = Probe {
            refuses: false,
            calls: Mutex::new(0),
        };
        run(&queues, &probe).await;
        assert_eq!(*probe.calls.lock().unwrap(), 0);
        assert!(queues.redriven.lock().unwrap().is_empty());
    }
}
