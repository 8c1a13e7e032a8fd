//! Step 1, pull: deals changed in amoCRM since the stored cursor, oldest change first, 250 per
//! request, applied page by page; the cursor moves only after a page is applied.
//!
//! Pages are read by key (`filter[updated_at][from]` = the newest `updated_at` read so far),
//! not by page number, so deals edited while we read can only move behind us, never make us
//! skip one. A whole page sharing one second (a batch write touches up to 250 deals at once)
//! makes that second "crowded": it is paged through by number in id order, which is stable
//! where `updated_at` ties, with `from` = `to` = that second. Nothing says whether `to`
//! includes its bound, so the run checks: a crowded second (known to hold deals) answered
//! empty means it does not, and the run's windows end one second later. There a deal already read that
//! changes before we finish shifts an unread one into a page already read; such a deal shows up
//! again later in the run with a newer `updated_at`, and the second is then read once more. The cursor never passes a crowded second before the run has
//! read to the end. Each run starts `overlap` seconds before the cursor: amoCRM stamps changes
//! by the second and lists may lag; re-applying a deal is harmless.

use std::collections::HashSet;

use super::apply::Applier;
use super::conflict::Conflict;
use super::deal_fields::MaintenanceFields;
use super::model::AmoReading;
use super::report::PullStats;
use super::step::{Budget, StepEnd, SyncError};
use crate::ports::{ChangedLeadsQuery, MaintenanceCrm, SyncStateStore};

pub struct Puller<'a> {
    pub crm: &'a dyn MaintenanceCrm,
    pub state: &'a dyn SyncStateStore,
    pub applier: Applier<'a>,
    pub fields: &'a MaintenanceFields,
    pub overlap_secs: i64,
}

/// A second read page by page, and the deals read in it.
struct Crowded {
    second: i64,
    ids: HashSet<i64>,
    /// A deal read here was seen again, changed: an unread one may have been skipped.
    shifted: bool,
}

/// One page: the readings and whether amoCRM has more; `None` when it had nothing (204).
type PageRead = Option<(Vec<AmoReading>, bool)>;

/// What this run found `filter[updated_at][to]` to mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToBound {
    Unknown,
    Inclusive,
    Exclusive,
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
        let mut newest_read = cursor;
        let mut crowded: Vec<Crowded> = Vec::new();
        let mut bound = ToBound::Unknown;
        // Some(n): paging through the crowded second `from`, next page n.
        let mut within_second: Option<u32> = None;
        loop {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            let page = match within_second {
                Some(n) => {
                    self.read_second(from, n, &mut bound, stats, conflicts)
                        .await?
                }
                None => self.read(from, None, 1, false, stats, conflicts).await?,
            };
            let Some((readings, has_more)) = page else {
                if within_second.take().is_some() {
                    from += 1;
                    self.advance(from, &crowded, stats).await?;
                    continue;
                }
                return self
                    .finish(newest_read, &mut crowded, bound, budget, stats, conflicts)
                    .await;
            };
            for c in &mut crowded {
                c.shifted |= readings
                    .iter()
                    .any(|r| r.updated_at > c.second && c.ids.contains(&r.lead_id));
            }
            let newest = readings.iter().map(|r| r.updated_at).max().unwrap_or(from);
            let oldest = readings.iter().map(|r| r.updated_at).min().unwrap_or(from);
            newest_read = newest_read.max(newest);
            match within_second {
                Some(n) => {
                    if let Some(c) = crowded.last_mut() {
                        let second = c.second;
                        c.ids.extend(
                            readings
                                .iter()
                                .filter(|r| r.updated_at == second)
                                .map(|r| r.lead_id),
                        );
                    }
                    if has_more {
                        within_second = Some(n + 1);
                    } else {
                        // That second is read through: go on after it.
                        within_second = None;
                        from += 1;
                        self.advance(from, &crowded, stats).await?;
                    }
                }
                None if !has_more => {
                    return self
                        .finish(newest_read, &mut crowded, bound, budget, stats, conflicts)
                        .await;
                }
                None if oldest == newest => {
                    // A full page within one second (nothing older was left): read that
                    // second through by id, from its first page (the order differs).
                    from = newest;
                    within_second = Some(1);
                    stats.crowded_seconds += 1;
                    crowded.push(Crowded {
                        second: newest,
                        ids: readings.iter().map(|r| r.lead_id).collect(),
                        shifted: false,
                    });
                    self.advance(newest, &crowded, stats).await?;
                }
                None => {
                    // Go on from the newest second read; its deals are read again (harmless).
                    from = newest;
                    self.advance(newest, &crowded, stats).await?;
                }
            }
        }
    }

    /// Page `page` of crowded second `second`, in id order. The first such page tells what
    /// `to` means: that second holds deals, so an empty answer says the bound is excluded.
    async fn read_second(
        &self,
        second: i64,
        page: u32,
        bound: &mut ToBound,
        stats: &mut PullStats,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<PageRead, SyncError> {
        let to = match bound {
            ToBound::Exclusive => second + 1,
            ToBound::Unknown | ToBound::Inclusive => second,
        };
        let read = self
            .read(second, Some(to), page, true, stats, conflicts)
            .await?;
        if *bound == ToBound::Unknown && page == 1 {
            if read.is_some() {
                *bound = ToBound::Inclusive;
            } else {
                *bound = ToBound::Exclusive;
                return self
                    .read(second, Some(second + 1), page, true, stats, conflicts)
                    .await;
            }
        }
        Ok(read)
    }

    /// One request: the page's readings, applied.
    async fn read(
        &self,
        from: i64,
        to: Option<i64>,
        page: u32,
        by_id: bool,
        stats: &mut PullStats,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<PageRead, SyncError> {
        let query = ChangedLeadsQuery {
            updated_from: from,
            updated_to: to,
            page,
            pipelines: self.applier.pipelines.to_vec(),
            by_id,
        };
        stats.requests += 1;
        let Some(page) = self.crm.changed_leads(&query).await? else {
            return Ok(None);
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
        Ok(Some((readings, page.has_more)))
    }

    /// Read to the end: crowded seconds where a deal changed meanwhile are read again, then
    /// the cursor moves to the newest change read.
    async fn finish(
        &self,
        newest_read: i64,
        crowded: &mut Vec<Crowded>,
        mut bound: ToBound,
        budget: &Budget,
        stats: &mut PullStats,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<StepEnd, SyncError> {
        for second in crowded.iter().filter(|c| c.shifted).map(|c| c.second) {
            stats.seconds_reread += 1;
            let mut page = 1;
            loop {
                if !budget.allows_request() {
                    return Ok(StepEnd::OutOfTime);
                }
                match self
                    .read_second(second, page, &mut bound, stats, conflicts)
                    .await?
                {
                    Some((_, true)) => page += 1,
                    _ => break,
                }
            }
        }
        crowded.clear();
        self.advance(newest_read, crowded, stats).await?;
        Ok(StepEnd::Done)
    }

    /// Saves the cursor, but never past a crowded second not yet known to be complete.
    async fn advance(
        &self,
        to: i64,
        crowded: &[Crowded],
        stats: &mut PullStats,
    ) -> Result<(), SyncError> {
        let safe = crowded.first().map_or(to, |c| c.second.min(to));
        if stats.cursor.is_none_or(|c| safe > c) {
            self.state.save_cursor(safe).await?;
            stats.cursor = Some(safe);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::{DateTime, NaiveDate, Utc};

    use super::*;
    use crate::maintenance::model::{AccountZone, MaintenanceFieldIds, StatusEnums};
    use crate::passport::{Equipment, EquipmentState};
    use crate::ports::CrmFailure;
    use crate::ports::{
        ChangedLeads, CrmDeal, CrmTask, MaintenanceWrite, NewTask, Page, PassportStore,
        RegisterOutcome, StoreError,
    };

    /// amoCRM's list as the sandbox serves it, with a small page; `edits` change deals
    /// after the n-th request (a manager at work while we read).
    struct Deals {
        page_size: usize,
        /// Whether `filter[updated_at][to]` includes its bound (nothing documents it).
        to_inclusive: bool,
        deals: Mutex<Vec<(i64, i64)>>,
        requests: Mutex<u32>,
        served: Mutex<Vec<(i64, i64)>>,
        edits: Vec<(u32, i64, i64)>,
    }

    #[async_trait]
    impl MaintenanceCrm for Deals {
        async fn changed_leads(
            &self,
            q: &ChangedLeadsQuery,
        ) -> Result<Option<ChangedLeads>, CrmFailure> {
            let n = {
                let mut r = self.requests.lock().unwrap();
                *r += 1;
                *r
            };
            let mut deals = self.deals.lock().unwrap();
            for (after, id, at) in &self.edits {
                if *after + 1 == n {
                    deals
                        .iter_mut()
                        .filter(|d| d.0 == *id)
                        .for_each(|d| d.1 = *at);
                }
            }
            let mut hits: Vec<(i64, i64)> = deals
                .iter()
                .copied()
                .filter(|(_, at)| {
                    *at >= q.updated_from
                        && q.updated_to
                            .is_none_or(|t| *at < t || (self.to_inclusive && *at == t))
                })
                .collect();
            if q.by_id {
                hits.sort_by_key(|(id, _)| *id);
            } else {
                hits.sort_by_key(|(id, at)| (*at, *id));
            }
            let start = (q.page as usize - 1) * self.page_size;
            if start >= hits.len() {
                return Ok(None);
            }
            let page: Vec<(i64, i64)> = hits
                .iter()
                .copied()
                .skip(start)
                .take(self.page_size)
                .collect();
            self.served.lock().unwrap().extend(&page);
            Ok(Some(ChangedLeads {
                has_more: hits.len() > start + self.page_size,
                leads: page
                    .into_iter()
                    .map(|(id, updated_at)| CrmDeal {
                        id,
                        updated_at,
                        ..CrmDeal::default()
                    })
                    .collect(),
            }))
        }
        async fn write_maintenance(
            &self,
            _: &crate::maintenance::model::MaintenanceFieldIds,
            _: &[MaintenanceWrite],
        ) -> Result<crate::ports::WriteOutcome, CrmFailure> {
            unreachable!("the pull never writes")
        }
        async fn create_tasks(&self, _: &[NewTask]) -> Result<Vec<i64>, CrmFailure> {
            unreachable!()
        }
        async fn tasks_on(&self, _: &[i64]) -> Result<Vec<CrmTask>, CrmFailure> {
            unreachable!()
        }
    }

    #[derive(Default)]
    struct Cursor(Mutex<Option<i64>>);

    #[async_trait]
    impl SyncStateStore for Cursor {
        async fn cursor(&self) -> Result<Option<i64>, StoreError> {
            Ok(*self.0.lock().unwrap())
        }
        async fn save_cursor(&self, at: i64) -> Result<(), StoreError> {
            let mut c = self.0.lock().unwrap();
            assert!(c.is_none_or(|c| at >= c), "the cursor never moves back");
            *c = Some(at);
            Ok(())
        }
        async fn acquire_lease(
            &self,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn release_lease(&self, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn save_last_run(&self, _: &crate::maintenance::RunReport) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn last_run(&self) -> Result<Option<crate::maintenance::RunReport>, StoreError> {
            unreachable!()
        }
    }

    /// Deals without maintenance values never reach the store.
    struct NoStore;

    #[async_trait]
    impl PassportStore for NoStore {
        async fn register(&self, _: &Equipment) -> Result<RegisterOutcome, StoreError> {
            unreachable!()
        }
        async fn for_owner(&self, _: i64) -> Result<Vec<Equipment>, StoreError> {
            unreachable!()
        }
        async fn by_deal(&self, _: i64) -> Result<Vec<Equipment>, StoreError> {
            unreachable!()
        }
        async fn set_state(&self, _: i64, _: &str, _: EquipmentState) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn mark_waiting(&self, _: i64, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn clear_waiting(&self, _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn get(&self, _: i64, _: &str) -> Result<Option<Equipment>, StoreError> {
            unreachable!()
        }
        async fn get_many(&self, _: &[(i64, String)]) -> Result<Vec<Equipment>, StoreError> {
            unreachable!()
        }
        async fn update(&self, _: &Equipment, _: &Equipment) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn pending_push(
            &self,
            _: usize,
            _: Option<String>,
        ) -> Result<Page<Equipment>, StoreError> {
            unreachable!()
        }
        async fn due_by(
            &self,
            _: NaiveDate,
            _: usize,
            _: Option<String>,
        ) -> Result<Page<Equipment>, StoreError> {
            unreachable!()
        }
    }

    fn fields() -> MaintenanceFields {
        MaintenanceFields {
            ids: MaintenanceFieldIds {
                next_maintenance: 1,
                status: 2,
                status_enums: StatusEnums::parse(
                    "ok=1,due=2,scheduled=3,in_progress=4,done=5,overdue=6",
                )
                .unwrap(),
            },
            zone: AccountZone::default(),
            serial_field: 3,
            telegram_id_field: 4,
        }
    }

    async fn pull(crm: &Deals, state: &Cursor, budget: &Budget) -> (StepEnd, PullStats) {
        let fields = fields();
        let puller = Puller {
            crm,
            state,
            applier: Applier {
                store: &NoStore,
                pipelines: &[1],
            },
            fields: &fields,
            overlap_secs: 0,
        };
        let mut stats = PullStats::default();
        let end = puller
            .pull(budget, &mut stats, &mut Vec::new())
            .await
            .unwrap();
        (end, stats)
    }

    fn every_deal() -> Budget {
        Budget::from_fn(|| Duration::from_secs(60))
    }

    #[tokio::test]
    async fn deals_edited_while_we_read_are_never_skipped_and_crowded_seconds_are_paged() {
        edited_while_read(false).await;
    }

    #[tokio::test]
    async fn a_crowded_second_is_read_whole_whether_or_not_to_includes_its_bound() {
        edited_while_read(true).await;
        let deals: Vec<(i64, i64)> = (1..=20).map(|id| (id, 100 + id / 10)).collect();
        let crm = Deals {
            page_size: 3,
            to_inclusive: true,
            deals: Mutex::new(deals),
            requests: Mutex::new(0),
            served: Mutex::new(Vec::new()),
            edits: Vec::new(),
        };
        pull(&crm, &Cursor::default(), &every_deal()).await;
        let ids: BTreeSet<i64> = crm.served.lock().unwrap().iter().map(|d| d.0).collect();
        assert_eq!(ids, (1..=20).collect());
    }

    async fn edited_while_read(to_inclusive: bool) {
        // Ten deals share second 100 (a batch write), then 101 and 102; page size 3.
        let mut deals: Vec<(i64, i64)> = (1..=10).map(|id| (id, 100)).collect();
        deals.extend((11..=15).map(|id| (id, 101)));
        deals.extend((16..=20).map(|id| (id, 102)));
        let crm = Deals {
            page_size: 3,
            to_inclusive,
            deals: Mutex::new(deals),
            requests: Mutex::new(0),
            served: Mutex::new(Vec::new()),
            // After the 2nd request deal 2 (already read) and deal 7 (not yet) change; after
            // the 5th deal 12 does: a page-number reader would skip a deal each time.
            edits: vec![(2, 2, 200), (2, 7, 201), (5, 12, 202)],
        };
        let state = Cursor::default();
        let (end, stats) = pull(&crm, &state, &every_deal()).await;
        assert_eq!(end, StepEnd::Done);
        let served = crm.served.lock().unwrap().clone();
        let ids: BTreeSet<i64> = served.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=20).collect(), "{served:?}");
        for edited in [(2, 200), (7, 201), (12, 202)] {
            assert!(served.contains(&edited), "{edited:?} in its new version");
        }
        assert_eq!(*state.0.lock().unwrap(), Some(202));
        // A crowded second where a deal changed under us was read once more (which ones
        // depends on when the edits land between requests).
        assert!(stats.seconds_reread >= 1, "{stats:?}");
        assert!(stats.requests <= 16, "{stats:?}");
    }

    #[tokio::test]
    async fn crowded_seconds_nobody_touched_are_read_once() {
        let deals: Vec<(i64, i64)> = (1..=20).map(|id| (id, 100 + id / 10)).collect();
        let crm = Deals {
            page_size: 3,
            to_inclusive: false,
            deals: Mutex::new(deals),
            requests: Mutex::new(0),
            served: Mutex::new(Vec::new()),
            edits: Vec::new(),
        };
        let (_, stats) = pull(&crm, &Cursor::default(), &every_deal()).await;
        assert_eq!(stats.seconds_reread, 0);
        // Every deal once, but each crowded second's first page twice: it was read in
        // `updated_at` order, and the second is read through in id order from its start.
        assert_eq!(stats.deals, 20 + 2 * 3, "{stats:?}");
    }

    #[tokio::test]
    async fn a_pull_stopped_for_time_resumes_from_its_cursor() {
        let deals: Vec<(i64, i64)> = (1..=12).map(|id| (id, 100 + id)).collect();
        let crm = Deals {
            page_size: 3,
            to_inclusive: false,
            deals: Mutex::new(deals),
            requests: Mutex::new(0),
            served: Mutex::new(Vec::new()),
            edits: Vec::new(),
        };
        let state = Cursor::default();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = requests.clone();
        let two_requests = Budget::from_fn(move || {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                Duration::from_secs(60)
            } else {
                Duration::ZERO
            }
        });
        let (end, _) = pull(&crm, &state, &two_requests).await;
        assert_eq!(end, StepEnd::OutOfTime);
        let stopped_at = state.0.lock().unwrap().unwrap();
        assert!(stopped_at < 112, "{stopped_at}");
        let (end, _) = pull(&crm, &state, &every_deal()).await;
        assert_eq!(end, StepEnd::Done);
        let ids: BTreeSet<i64> = crm
            .served
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids, (1..=12).collect());
        assert_eq!(*state.0.lock().unwrap(), Some(112));
    }
}
