//! One run of the maintenance sync: token upkeep, pull, push, reminders (and a push of the
//! statuses they set), re-drive — within the time the Lambda has left. The maintenance fields'
//! ids come from the configuration, else from the state table, else from the account (found
//! by name and remembered); without the fields the run still keeps the token alive and
//! re-drives stuck work, and its report says the fields are missing. A run that runs out of time stops
//! between requests and the next one resumes: the pull from its cursor, the push from the
//! index of machines still waiting. A lease keeps two runs from overlapping; the report is
//! kept as `SYNC#last_run` for the health check.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::apply::Applier;
use super::deal_fields::MaintenanceFields;
use super::model::MaintenanceFieldIds;
use super::pull::Puller;
use super::push::Pusher;
use super::redrive::Redriver;
use super::reminders::Reminders;
use super::report::{RunOutcome, RunReport, Step};
use super::step::{Budget, StepEnd, SyncError};
use super::token::TokenCare;
use crate::crm_events::EventProcessor;
use crate::leads::deliver::LeadDelivery;
use crate::maintenance::model::AccountZone;
use crate::passport::MaintenancePolicy;
use crate::ports::{
    CrmDeals, CrmFailure, CrmReachability, MaintenanceCrm, PassportStore, SyncStateStore,
    WorkQueues,
};

/// Conflicts kept in the report (all are logged and counted).
const REPORTED_CONFLICTS: usize = 50;
/// The longest a lease is held (Lambda's own limit is 15 minutes).
const MAX_LEASE: Duration = Duration::from_secs(15 * 60);

/// What a run needs to know besides its ports.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `AMOCRM_FIELD_NEXT_MAINTENANCE` & co. when the operator set them: used as they are.
    pub configured_fields: Option<MaintenanceFieldIds>,
    pub zone: AccountZone,
    /// The serial and Telegram id fields (to find the equipment by its key).
    pub serial_field: i64,
    pub telegram_id_field: i64,
    pub pipelines: Vec<i64>,
    pub reminder_days: i64,
    pub overlap_secs: i64,
    pub redrive_after_secs: i64,
    pub default_responsible_user_id: i64,
    pub policy: MaintenancePolicy,
}

pub struct MaintenanceSync {
    pub crm: Arc<dyn MaintenanceCrm>,
    pub deals: Arc<dyn CrmDeals>,
    pub passport: Arc<dyn PassportStore>,
    pub state: Arc<dyn SyncStateStore>,
    /// The re-drive feeds leads and events to the worker's own code.
    /// The lead delivery and webhook use case crm-worker runs, for the re-drive.
    pub delivery: LeadDelivery,
    pub events: Option<Arc<EventProcessor>>,
    /// Keeps the amoCRM token alive ahead of use (step `Token`).
    pub token: TokenCare,
    /// Parked work, for re-driving what waited while amoCRM refused our address.
    pub queues: Arc<dyn WorkQueues>,
    pub reach: Arc<dyn CrmReachability>,
    pub settings: SyncSettings,
}

impl MaintenanceSync {
    /// One run, as the schedule starts it. Never fails: the report says what happened.
    pub async fn run(&self, now: DateTime<Utc>, budget: &Budget) -> RunReport {
        let mut report = RunReport::new(now);
        let owner = ulid::Ulid::generate().to_string();
        let hold = budget.remaining().min(MAX_LEASE);
        let until = now + chrono::Duration::from_std(hold).unwrap_or_default();
        match self.state.acquire_lease(&owner, until, Utc::now()).await {
            Ok(true) => {}
            Ok(false) => {
                info!("another maintenance sync run holds the lease; skipped");
                report.outcome = RunOutcome::Skipped;
                report.finished_at = Utc::now();
                return report;
            }
            Err(e) => {
                error!(error = %e, alert = true, "maintenance sync could not take its lease");
                report.outcome = RunOutcome::Failed;
                report.error = Some(e.to_string());
                report.finished_at = Utc::now();
                return report;
            }
        }

        let mut plan = vec![
            Step::Token,
            Step::Pull,
            Step::Push,
            Step::Reminders,
            Step::Redrive,
        ];
        let mut pulled = false;
        let mut fields = None;
        let mut i = 0;
        while i < plan.len() {
            let step = plan[i];
            i += 1;
            if step == Step::Pull {
                match self.resolve_fields().await {
                    Ok(Some(found)) => fields = Some(found),
                    Ok(None) => {
                        warn!(
                            "maintenance fields missing in amoCRM: run `rss-ops setup`; only token upkeep and re-drive run"
                        );
                        report.fields_missing = true;
                    }
                    Err(e) => {
                        error!(error = %e, hint = %e.hint(), alert = true, "maintenance fields could not be resolved");
                        if report.error.is_none() {
                            report.error = Some(e.to_string());
                            report.hint = Some(e.hint());
                            report.stopped_in = Some(step);
                        }
                        report.outcome = RunOutcome::Failed;
                    }
                }
            }
            let needs_fields = matches!(step, Step::Pull | Step::Push | Step::Reminders);
            if needs_fields && fields.is_none() {
                continue;
            }
            if step == Step::Push && !pulled {
                // Without amoCRM's latest values a push could overwrite a manager's later change.
                continue;
            }
            let statuses_before = report.reminders.marked_due + report.reminders.marked_overdue;
            match self
                .step_with(step, fields.as_ref(), now, budget, &mut report)
                .await
            {
                Ok(StepEnd::Done) => {
                    pulled |= step == Step::Pull;
                    let statuses_set =
                        report.reminders.marked_due + report.reminders.marked_overdue;
                    if step == Step::Reminders && statuses_set > statuses_before {
                        // The statuses just set go to amoCRM in this run too.
                        plan.insert(i, Step::Push);
                    }
                }
                Ok(StepEnd::OutOfTime) => {
                    report.outcome = RunOutcome::Incomplete;
                    report.stopped_in = Some(step);
                    break;
                }
                Ok(StepEnd::Deferred(reason)) => {
                    warn!(step = ?step, reason, "maintenance sync stopped early");
                    report.outcome = RunOutcome::Incomplete;
                    report.stopped_in = Some(step);
                    report.error = Some(reason);
                    break;
                }
                Err(e) => {
                    error!(step = ?step, error = %e, hint = %e.hint(), alert = true, "maintenance sync step failed");
                    if report.error.is_none() {
                        report.error = Some(e.to_string());
                        report.hint = Some(e.hint());
                        report.stopped_in = Some(step);
                    }
                    report.outcome = RunOutcome::Failed;
                }
            }
        }
        report.finished_at = Utc::now();
        if let Err(e) = self.state.save_last_run(&report).await {
            error!(error = %e, "the maintenance sync report could not be saved");
        }
        if let Err(e) = self.state.release_lease(&owner).await {
            warn!(error = %e, "the maintenance sync lease could not be released; it lapses by itself");
        }
        info!(
            outcome = report.outcome.as_str(),
            token_refreshed = report.token.refreshed,
            token_notice_days = report.token.notice_days,
            pulled = report.pull.deals,
            applied = report.pull.applied.applied,
            conflicts = report.pull.applied.conflicts,
            pushed = report.push.written,
            patch_requests = report.push.requests,
            too_heavy = report.push.too_heavy,
            tasks = report.reminders.tasks_created,
            overdue = report.reminders.marked_overdue,
            redriven_leads = report.redrive.leads,
            redriven_events = report.redrive.events,
            seconds = (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0,
            "maintenance sync run finished"
        );
        report
    }

    /// The maintenance fields: configured, else remembered in the state table, else found by
    /// name in the account (and remembered). `None` while the account lacks them.
    pub async fn resolve_fields(&self) -> Result<Option<MaintenanceFields>, SyncError> {
        let s = &self.settings;
        let ids = match &s.configured_fields {
            Some(ids) => Some(ids.clone()),
            None => match self.state.field_ids().await? {
                Some(ids) => Some(ids),
                None => {
                    let found = self.crm.find_maintenance_fields().await?;
                    if let Some(ids) = &found {
                        info!(
                            next_maintenance = ids.next_maintenance,
                            status = ids.status,
                            "maintenance fields found in amoCRM by name; remembered"
                        );
                        self.state.save_field_ids(ids).await?;
                    }
                    found
                }
            },
        };
        Ok(ids.map(|ids| MaintenanceFields {
            ids,
            zone: s.zone,
            serial_field: s.serial_field,
            telegram_id_field: s.telegram_id_field,
        }))
    }

    /// One step on its own (tests drive steps one at a time to place faults between them).
    /// Steps that need the maintenance fields resolve them first and fail without them.
    pub async fn step(
        &self,
        step: Step,
        now: DateTime<Utc>,
        budget: &Budget,
        report: &mut RunReport,
    ) -> Result<StepEnd, SyncError> {
        let fields = match step {
            Step::Pull | Step::Push | Step::Reminders => self.resolve_fields().await?,
            Step::Token | Step::Redrive => None,
        };
        self.step_with(step, fields.as_ref(), now, budget, report)
            .await
    }

    async fn step_with(
        &self,
        step: Step,
        fields: Option<&MaintenanceFields>,
        now: DateTime<Utc>,
        budget: &Budget,
        report: &mut RunReport,
    ) -> Result<StepEnd, SyncError> {
        let s = &self.settings;
        let fields = || {
            fields.ok_or_else(|| {
                SyncError::Crm(CrmFailure::permanent(
                    "the maintenance fields are missing in amoCRM",
                    "Run `rss-ops setup`: it creates «Дата следующего ТО» and «Статус ТО» and \
                     remembers their ids; the next run uses them without a redeploy.",
                ))
            })
        };
        match step {
            Step::Token => self.token.run(now, budget, &mut report.token).await,
            Step::Pull => {
                let mut conflicts = Vec::new();
                let end = Puller {
                    crm: self.crm.as_ref(),
                    state: self.state.as_ref(),
                    applier: Applier {
                        store: self.passport.as_ref(),
                        pipelines: &s.pipelines,
                    },
                    fields: fields()?,
                    overlap_secs: s.overlap_secs,
                }
                .pull(budget, &mut report.pull, &mut conflicts)
                .await;
                let room = REPORTED_CONFLICTS.saturating_sub(report.conflicts.len());
                report.conflicts.extend(conflicts.into_iter().take(room));
                end
            }
            Step::Push => {
                Pusher {
                    crm: self.crm.as_ref(),
                    store: Arc::clone(&self.passport),
                    fields: &fields()?.ids,
                }
                .push(budget, &mut report.push)
                .await
            }
            Step::Reminders => {
                Reminders {
                    store: self.passport.as_ref(),
                    crm: self.crm.as_ref(),
                    deals: self.deals.as_ref(),
                    zone: s.zone,
                    days: s.reminder_days,
                    default_responsible_user_id: s.default_responsible_user_id,
                }
                .run(now, budget, &mut report.reminders)
                .await
            }
            Step::Redrive => {
                Redriver {
                    delivery: self.delivery.deliverer(),
                    events: self.events.as_deref(),
                    after: chrono::Duration::seconds(s.redrive_after_secs),
                    queues: self.queues.as_ref(),
                    reach: self.reach.as_ref(),
                }
                .run(now, budget, &mut report.redrive)
                .await
            }
        }
    }

    /// A fresh report for driving steps one at a time.
    pub fn new_report(now: DateTime<Utc>) -> RunReport {
        RunReport::new(now)
    }
}

impl RunReport {
    /// Counts this run in the invocation's metrics line (`metrics::flush` writes it).
    pub fn count_metrics(&self) {
        use crate::metrics::{Metric, add, count};
        count(Metric::SyncRuns);
        if self.outcome == RunOutcome::Failed {
            count(Metric::SyncFailures);
        }
        let millis = (self.finished_at - self.started_at)
            .num_milliseconds()
            .max(0);
        add(Metric::SyncDurationMs, millis as f64);
        add(Metric::SyncPulled, self.pull.deals as f64);
        add(Metric::SyncPushed, self.push.written as f64);
        add(
            Metric::RemindersCreated,
            self.reminders.tasks_created as f64,
        );
    }
}
