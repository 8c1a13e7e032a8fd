//! Maintenance changes made on our side: the customer asks for service in the TMA, an engineer
//! records a completed maintenance, anything that sets the values directly. Each stamps
//! `local_changed_at` (which decides conflicts) and leaves the machine for the next push.

use chrono::{DateTime, NaiveDate, Utc};

use super::modify;
use crate::passport::{Equipment, Maintenance, MaintenancePolicy, MaintenanceStatus};
use crate::ports::{PassportStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LocalChangeError {
    #[error("no equipment {serial} for owner {owner}")]
    NotFound { owner: i64, serial: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn change(
    store: &dyn PassportStore,
    owner: i64,
    serial: &str,
    f: impl FnMut(&mut Equipment) -> bool,
) -> Result<Equipment, LocalChangeError> {
    let not_found = || LocalChangeError::NotFound {
        owner,
        serial: serial.to_string(),
    };
    let machine = store.get(owner, serial).await?.ok_or_else(not_found)?;
    modify(store, machine, f).await?.ok_or_else(not_found)
}

/// Sets the values as given, changed at `at`.
pub async fn set_maintenance(
    store: &dyn PassportStore,
    owner: i64,
    serial: &str,
    values: Maintenance,
    at: DateTime<Utc>,
) -> Result<Equipment, LocalChangeError> {
    change(store, owner, serial, |e| e.change_maintenance(values, at)).await
}

/// Maintenance done on `day`: status «ТО выполнено», the next one due a model's interval later.
pub async fn complete_maintenance(
    store: &dyn PassportStore,
    policy: &MaintenancePolicy,
    owner: i64,
    serial: &str,
    day: NaiveDate,
    at: DateTime<Utc>,
) -> Result<Equipment, LocalChangeError> {
    change(store, owner, serial, |e| {
        let done_at = day.and_hms_opt(12, 0, 0).map(|t| t.and_utc()).unwrap_or(at);
        let values = Maintenance {
            status: MaintenanceStatus::Done,
            next_due: policy.next_due(done_at, e.model.as_deref()),
        };
        e.change_maintenance(values, at)
    })
    .await
}

/// The customer asked for service in the TMA: a machine in order becomes «Скоро ТО» so the
/// manager sees it in the deal; arranged or overdue maintenance keeps its status.
pub async fn service_requested(
    store: &dyn PassportStore,
    owner: i64,
    serial: &str,
    at: DateTime<Utc>,
) -> Result<Equipment, LocalChangeError> {
    change(store, owner, serial, |e| match e.maintenance.status {
        MaintenanceStatus::Ok | MaintenanceStatus::Done => e.change_maintenance(
            Maintenance {
                status: MaintenanceStatus::Due,
                next_due: e.maintenance.next_due,
            },
            at,
        ),
        _ => false,
    })
    .await
}
