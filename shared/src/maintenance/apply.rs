//! Applying amoCRM's maintenance values to the passport: one code path for the pull (a page of
//! deals) and for `leads[update]` webhooks (one deal), so both routes agree.

use std::collections::HashMap;

use tracing::{info, warn};

use super::conflict::{Conflict, Merge, Side, merge};
use super::model::AmoReading;
use super::report::ApplyStats;
use crate::passport::Equipment;
use crate::ports::{PassportStore, StoreError};

/// How often a machine is re-read and merged again when another writer came first.
const WRITE_ATTEMPTS: usize = 5;

pub struct Applier<'a> {
    pub store: &'a dyn PassportStore,
    pub pipelines: &'a [i64],
}

/// Every conflict goes to the log with both values.
fn log_conflict(c: &Conflict) {
    warn!(
        amo_lead_id = c.amo_lead_id,
        serial = %c.serial,
        field = ?c.field,
        ours = %c.ours,
        amo = %c.amo,
        ours_changed_at = ?c.ours_changed_at,
        amo_updated_at = c.amo_updated_at,
        winner = match c.winner { Side::Ours => "ours", Side::Amo => "amocrm" },
        "maintenance conflict: both sides changed the field since the last sync"
    );
}

impl Applier<'_> {
    fn wanted(&self, r: &AmoReading) -> bool {
        r.carries_values() && r.pipeline_id.is_none_or(|p| self.pipelines.contains(&p))
    }

    /// Applies readings (several of one deal: the last counts); conflicts are logged and returned.
    pub async fn apply(
        &self,
        readings: &[AmoReading],
    ) -> Result<(ApplyStats, Vec<Conflict>), StoreError> {
        let mut stats = ApplyStats::default();
        let mut latest: HashMap<i64, &AmoReading> = HashMap::new();
        for r in readings {
            if !self.wanted(r) {
                stats.skipped += 1;
                continue;
            }
            let keep = latest
                .get(&r.lead_id)
                .is_none_or(|seen| seen.updated_at <= r.updated_at);
            if keep {
                latest.insert(r.lead_id, r);
            }
        }
        if latest.is_empty() {
            return Ok((stats, Vec::new()));
        }
        // Deals carry the key of their equipment (Telegram id + serial): one batch read; the
        // deal index finds the rest (a serial edited after registration).
        let keys: Vec<(i64, String)> = latest
            .values()
            .filter_map(|r| r.owner_hint.clone())
            .collect();
        let mut by_deal: HashMap<i64, Vec<Equipment>> = HashMap::new();
        for e in self.store.get_many(&keys).await? {
            by_deal.entry(e.amo_lead_id).or_default().push(e);
        }
        let mut conflicts = Vec::new();
        let mut ids: Vec<i64> = latest.keys().copied().collect();
        ids.sort_unstable();
        for lead_id in ids {
            let reading = latest[&lead_id];
            let machines = match by_deal.remove(&lead_id) {
                Some(found) => found,
                None => self.store.by_deal(lead_id).await?,
            };
            if machines.is_empty() {
                stats.unmatched += 1;
                continue;
            }
            for machine in machines {
                self.apply_to(machine, reading, &mut stats, &mut conflicts)
                    .await?;
            }
        }
        Ok((stats, conflicts))
    }

    /// Merges one reading into one machine and writes it, re-reading when another writer
    /// (the TMA, the webhook path, the push) came first.
    async fn apply_to(
        &self,
        mut machine: Equipment,
        reading: &AmoReading,
        stats: &mut ApplyStats,
        conflicts: &mut Vec<Conflict>,
    ) -> Result<(), StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            match merge(&machine, reading) {
                Merge::Unchanged => {
                    stats.unchanged += 1;
                    return Ok(());
                }
                Merge::Ignored => {
                    stats.ignored += 1;
                    return Ok(());
                }
                Merge::Changed {
                    equipment,
                    conflicts: found,
                } => {
                    if self.store.update(&machine, &equipment).await? {
                        found.iter().for_each(log_conflict);
                        stats.conflicts += found.len() as u64;
                        conflicts.extend(found);
                        stats.applied += 1;
                        info!(
                            amo_lead_id = reading.lead_id,
                            serial = %equipment.serial,
                            status = equipment.maintenance.status.as_str(),
                            next_due = %equipment.maintenance.next_due,
                            "amoCRM maintenance values applied"
                        );
                        return Ok(());
                    }
                    match self
                        .store
                        .get(machine.owner_telegram_id, &machine.serial)
                        .await?
                    {
                        Some(fresh) => machine = fresh,
                        None => return Ok(()),
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "equipment {} kept changing while amoCRM values were applied",
            machine.serial
        )))
    }
}
