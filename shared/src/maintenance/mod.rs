//! The maintenance sync: the «ТО» status and next due date of every machine in the
//! Digital Passport kept equal on both sides — the passport (DynamoDB) and the won deal in
//! amoCRM (two custom fields) — plus reminder tasks for managers and the re-drive of work left
//! pending. `maintenance-sync` runs it on a schedule; `leads[update]` webhooks apply amoCRM's
//! values at once through the same code as the pull (`apply`).
//!
//! - `fields`: the two deal fields and how their values translate.
//! - `conflict`: the three-way merge (ours, amoCRM's, the last synced base).
//! - `apply`: amoCRM values → passport (pull and webhook).
//! - `token`, `pull`, `push` (with `batch`), `reminders`, `redrive`: the steps of a run.
//! - `local`: changes made on our side (TMA service request, maintenance completed).
//! - `run`: one run within the Lambda's time, its lease and its report.

pub mod apply;
pub mod batch;
pub mod conflict;
pub mod deal_fields;
pub mod local;
pub mod model;
pub mod pull;
pub mod push;
pub mod redrive;
pub mod reminders;
pub mod report;
pub mod run;
pub mod step;
pub mod token;
pub mod token_notice;

pub use report::{RunOutcome, RunReport, Step, TokenStats};
pub use run::{MaintenanceSync, SyncSettings};
pub use step::{Budget, StepEnd, SyncError};
pub use token::TokenCare;

use crate::passport::Equipment;
use crate::ports::{PassportStore, StoreError};

/// How often a machine is re-read when another writer came first.
const MODIFY_ATTEMPTS: usize = 5;

/// Read-modify-write of one machine with optimistic locking: `change` edits a copy and says
/// whether there is anything to write; on a lost race the machine is re-read and `change`
/// runs again. Returns the machine as stored afterwards (`None` if it vanished).
pub async fn modify(
    store: &dyn PassportStore,
    mut machine: Equipment,
    mut change: impl FnMut(&mut Equipment) -> bool,
) -> Result<Option<Equipment>, StoreError> {
    for _ in 0..MODIFY_ATTEMPTS {
        let mut next = machine.clone();
        if !change(&mut next) {
            return Ok(Some(machine));
        }
        if store.update(&machine, &next).await? {
            next.sync.version += 1;
            return Ok(Some(next));
        }
        match store
            .get(machine.owner_telegram_id, &machine.serial)
            .await?
        {
            Some(fresh) => machine = fresh,
            None => return Ok(None),
        }
    }
    Err(StoreError::Unavailable(format!(
        "equipment {} kept changing under concurrent writes",
        machine.serial
    )))
}
