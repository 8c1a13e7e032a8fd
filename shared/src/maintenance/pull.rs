//! Step 1, pull: deals changed in amoCRM since the stored cursor, oldest change first, 250 per
//! request, applied page by page; the cursor moves only after a page is applied.
//!
//! Pages are read by key (`filter[updated_at][from]` = the newest `updated_at` read so far),
//! not by page number, so deals edited while we read can only move behind us, never make us
//! skip one. When a whole page shares one second (a batch write touches up to 250 deals at
//! once), that second is paged through by number (`from` = `to` = that second) before moving on.
//! Each run starts `overlap` seconds before the cursor: amoCRM stamps changes by the second and
//! lists may lag; re-applying a deal is harmless.

use serde::{Deserialize, Serialize};

use super::apply::{Applier, ApplyStats};
use super::conflict::Conflict;
use super::fields::MaintenanceFields;
use super::run::{Budget, StepEnd, SyncError};
use crate::ports::{ChangedLeadsQuery, MaintenanceCrm, SyncStateStore};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullStats {
    pub requests: u64,
    pub deals: u64,
    #[serde(flatten)]
    pub applied: ApplyStats,
    pub cursor: Option<i64>,
}

pub struct Puller<'a> {
    pub crm: &'a dyn MaintenanceCrm,
    pub state: &'a dyn SyncStateStore,
    pub applier: Applier<'a>,
    pub fields: &'a MaintenanceFields,
    pub overlap_secs: i64,
}

impl Puller<'_> {
    pub async fn pull(
        &self,
        budget: &Budget,
        stats: &mut PullStats,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<StepEnd, SyncError> {
        let cursor = self.state.cursor().await?.unwrap_or(0);
        stats.cursor = Some(cursor);
        let mut from = (cursor - self.overlap_secs).max(0);
        // Some(n): paging through the one second `from`, next page n.
        let mut within_second: Option<u32> = None;
        loop {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            let query = ChangedLeadsQuery {
                updated_from: from,
                updated_to: within_second.map(|_| from),
                page: within_second.unwrap_or(1),
                pipelines: self.applier.pipelines.to_vec(),
            };
            stats.requests += 1;
            let page = self.crm.changed_leads(&query).await?;
            let Some(page) = page else {
                if within_second.take().is_some() {
                    from += 1;
                    self.advance(from, stats).await?;
                    continue;
                }
                return Ok(StepEnd::Done);
            };
            let readings: Vec<_> = page
                .leads
                .iter()
                .map(|d| self.fields.read_deal(d))
                .collect();
            stats.deals += readings.len() as u64;
            let (applied, found) = self.applier.apply(&readings).await?;
            stats.applied.add(&applied);
            conflicts.extend(found);
            let newest = readings.iter().map(|r| r.updated_at).max().unwrap_or(from);
            let oldest = readings.iter().map(|r| r.updated_at).min().unwrap_or(from);
            match within_second {
                Some(n) if page.has_more => within_second = Some(n + 1),
                Some(_) => {
                    // That second is read through: go on after it.
                    within_second = None;
                    from += 1;
                    self.advance(from, stats).await?;
                }
                None if !page.has_more => {
                    self.advance(newest, stats).await?;
                    return Ok(StepEnd::Done);
                }
                None if oldest == newest => {
                    // A full page within one second (nothing older was left): it is that
                    // second's first page; read its next pages by number.
                    from = newest;
                    within_second = Some(2);
                    self.advance(newest, stats).await?;
                }
                None => {
                    // Go on from the newest second read; its deals are read again (harmless).
                    from = newest;
                    self.advance(newest, stats).await?;
                }
            }
        }
    }

    async fn advance(&self, to: i64, stats: &mut PullStats) -> Result<(), SyncError> {
        if stats.cursor.is_none_or(|c| to > c) {
            self.state.save_cursor(to).await?;
            stats.cursor = Some(to);
        }
        Ok(())
    }
}
