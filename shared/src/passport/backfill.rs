//! The backfill: machines sold before the integration went live. Every deal won (status 142)
//! in the synced pipelines is read, a page of at most 250 at a time, and registered through the
//! same `Registrar` a won-deal webhook takes, so each machine is in its owner's passport exactly
//! once and a second run changes nothing. A cursor in the state table lets an interrupted run
//! resume where it stopped; deals that lack a serial number or a Telegram ID are reported and
//! wait like a webhook's deal would (without a note on each old deal unless asked).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::register::{DealOutcome, PassportError, Registrar, WON_STATUS_ID, telegram_id};
use crate::ports::{CrmDeal, CrmFailure, PassportStore, RegisterOutcome, StoreError, WonDeals};

/// Where an interrupted backfill resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillCursor {
    /// The next page to read.
    pub page: u32,
    /// The highest deal id done: a page that shifted since is not registered twice.
    pub last_id: i64,
    pub since: Option<i64>,
    pub counts: BackfillCounts,
    pub finished_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait BackfillCursorStore: Send + Sync {
    async fn backfill_cursor(&self) -> Result<Option<BackfillCursor>, StoreError>;
    async fn save_backfill_cursor(&self, cursor: &BackfillCursor) -> Result<(), StoreError>;
}

/// What the backfill found, deal by deal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillCounts {
    /// Won deals read.
    pub read: u64,
    /// Put into a passport now (with `--dry-run`: would be).
    pub registered: u64,
    /// In the passport already (a webhook or an earlier run put it there).
    pub already_there: u64,
    pub waiting_for_serial: u64,
    pub waiting_for_telegram_id: u64,
    /// Listed as won but no longer won when read, or outside the synced pipelines.
    pub skipped: u64,
    /// List requests made to amoCRM.
    pub requests: u64,
}

/// How to run it.
#[derive(Debug, Clone, Default)]
pub struct BackfillOptions {
    pub pipelines: Vec<i64>,
    /// Only deals closed at or after this time.
    pub since: Option<i64>,
    /// Read and report, write nothing (no passport, no cursor, no note).
    pub dry_run: bool,
}

pub struct Backfill<'a> {
    pub deals: &'a dyn WonDeals,
    pub registrar: Registrar<'a>,
    pub cursor: &'a dyn BackfillCursorStore,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Passport(#[from] PassportError),
    #[error(transparent)]
    Crm(#[from] CrmFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackfillError {
    pub fn hint(&self) -> String {
        match self {
            BackfillError::Passport(e) => e.hint(),
            BackfillError::Crm(e) => e.hint.clone(),
            BackfillError::Store(_) => {
                "DynamoDB failed; run backfill again: it resumes from its cursor".into()
            }
        }
    }
}

/// A run's result: the counts so far, and whether it resumed an earlier run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    pub counts: BackfillCounts,
    pub resumed_from_page: Option<u32>,
    pub dry_run: bool,
}

impl Backfill<'_> {
    /// Reads every page; on an error the cursor holds what was done, and the counts so far
    /// come back with the error.
    pub async fn run(
        &self,
        opts: &BackfillOptions,
    ) -> Result<BackfillReport, (BackfillReport, BackfillError)> {
        let mut report = BackfillReport {
            dry_run: opts.dry_run,
            ..BackfillReport::default()
        };
        let saved = if opts.dry_run {
            None
        } else {
            match self.cursor.backfill_cursor().await {
                Ok(c) => c,
                Err(e) => return Err((report, e.into())),
            }
        };
        // An unfinished run with the same `since` resumes; anything else starts over.
        let mut cursor = match saved {
            Some(c) if c.finished_at.is_none() && c.since == opts.since && c.page > 1 => {
                report.resumed_from_page = Some(c.page);
                c
            }
            _ => BackfillCursor {
                page: 1,
                since: opts.since,
                ..BackfillCursor::default()
            },
        };
        loop {
            let page = match self
                .deals
                .won_deals(&opts.pipelines, opts.since, cursor.page)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    report.counts = cursor.counts;
                    return Err((report, e.into()));
                }
            };
            cursor.counts.requests += 1;
            let Some(page) = page else { break };
            let done_up_to = cursor.last_id;
            for deal in page.deals.iter().filter(|d| d.id > done_up_to) {
                let outcome = if opts.dry_run {
                    self.classify(deal, &opts.pipelines).await
                } else {
                    self.register(deal, &opts.pipelines).await
                };
                match outcome {
                    Ok(o) => cursor.counts.count(o),
                    Err(e) => {
                        report.counts = cursor.counts;
                        return Err((report, e));
                    }
                }
                cursor.last_id = cursor.last_id.max(deal.id);
            }
            cursor.page += 1;
            if !opts.dry_run
                && let Err(e) = self.cursor.save_backfill_cursor(&cursor).await
            {
                report.counts = cursor.counts;
                return Err((report, e.into()));
            }
            if !page.has_more {
                break;
            }
        }
        cursor.finished_at = Some(Utc::now());
        if !opts.dry_run
            && let Err(e) = self.cursor.save_backfill_cursor(&cursor).await
        {
            report.counts = cursor.counts;
            return Err((report, e.into()));
        }
        info!(
            read = cursor.counts.read,
            registered = cursor.counts.registered,
            already_there = cursor.counts.already_there,
            dry_run = opts.dry_run,
            "backfill finished"
        );
        report.counts = cursor.counts;
        Ok(report)
    }

    async fn register(&self, deal: &CrmDeal, pipelines: &[i64]) -> Result<Seen, BackfillError> {
        if !pipelines.contains(&deal.pipeline_id) {
            return Ok(Seen::Skipped);
        }
        Ok(match self.registrar.register_deal(deal).await? {
            DealOutcome::Registered(RegisterOutcome::AlreadyRegistered) => Seen::AlreadyThere,
            DealOutcome::Registered(_) => Seen::Registered,
            DealOutcome::Waiting { missing } => waiting(&missing),
            DealOutcome::NotWon => Seen::Skipped,
        })
    }

    /// What `register` would do, reading only.
    async fn classify(&self, deal: &CrmDeal, pipelines: &[i64]) -> Result<Seen, BackfillError> {
        if !pipelines.contains(&deal.pipeline_id) || deal.status_id != WON_STATUS_ID {
            return Ok(Seen::Skipped);
        }
        let fields = self.registrar.fields;
        let serial = deal.field_text(fields.serial);
        let owner = deal.field_text(fields.telegram_id).and_then(telegram_id);
        let (Some(serial), Some(_)) = (serial, owner) else {
            let mut missing = Vec::new();
            if serial.is_none() {
                missing.push("Серийный номер");
            }
            if owner.is_none() {
                missing.push("Telegram ID");
            }
            return Ok(waiting(&missing));
        };
        let store: &dyn PassportStore = self.registrar.store;
        let there = store
            .by_deal(deal.id)
            .await?
            .iter()
            .any(|e| e.serial == serial);
        Ok(if there {
            Seen::AlreadyThere
        } else {
            Seen::Registered
        })
    }
}

enum Seen {
    Registered,
    AlreadyThere,
    WaitingSerial,
    WaitingTelegram,
    Skipped,
}

fn waiting(missing: &[&str]) -> Seen {
    if missing.contains(&"Серийный номер") {
        Seen::WaitingSerial
    } else {
        Seen::WaitingTelegram
    }
}

impl BackfillCounts {
    fn count(&mut self, seen: Seen) {
        self.read += 1;
        match seen {
            Seen::Registered => self.registered += 1,
            Seen::AlreadyThere => self.already_there += 1,
            Seen::WaitingSerial => self.waiting_for_serial += 1,
            Seen::WaitingTelegram => self.waiting_for_telegram_id += 1,
            Seen::Skipped => self.skipped += 1,
        }
    }
}
