//! Step 4, reminders: machines whose next maintenance is due within N days (`due-index`) become
//! «Скоро ТО», those past their date «ТО просрочено» (both pushed to amoCRM), and each gets one
//! call task for the deal's responsible manager per due date.
//!
//! A task is marked "being created" before the POST (amoCRM's POST is not idempotent and is not
//! repeated by the client); a run that finds that mark looks the task up on the deal before
//! creating one, so a crash between the POST and its record never doubles a task.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use tracing::{info, warn};

use super::model::AccountZone;
use super::modify;
use super::report::ReminderStats;
use super::step::{Budget, StepEnd, SyncError};
use crate::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus};
use crate::ports::{CrmDeals, MaintenanceCrm, NewTask, PassportStore};

/// amoCRM recommends at most 50 entities per batch write.
const TASKS_PER_REQUEST: usize = 50;
/// amoCRM's page cap for reading deals by id.
const DEALS_PER_REQUEST: usize = 250;
const INDEX_PAGE: usize = 500;

/// The status the due date calls for, if it changes: past the date → overdue, within the
/// window → due (an overdue machine given a new date in the window too). Arranged maintenance
/// (scheduled, in progress) is left alone.
pub fn status_for_date(
    m: &Maintenance,
    today: NaiveDate,
    last_day: NaiveDate,
) -> Option<MaintenanceStatus> {
    use MaintenanceStatus::*;
    let within = today <= m.next_due && m.next_due <= last_day;
    match m.status {
        Ok | Due | Done if m.next_due < today => Some(Overdue),
        Ok | Done | Overdue if within => Some(Due),
        _ => None,
    }
}

/// A task is owed: due or overdue, and none created for this due date yet.
pub fn needs_reminder(e: &Equipment) -> bool {
    e.state == EquipmentState::Active
        && matches!(
            e.maintenance.status,
            MaintenanceStatus::Due | MaintenanceStatus::Overdue
        )
        && e.sync.reminded_for != Some(e.maintenance.next_due)
}

/// The text a manager reads in amoCRM.
pub fn reminder_text(e: &Equipment) -> String {
    let what = match e.model.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(model) => format!("оборудования «{model}»"),
        None => "оборудования".to_string(),
    };
    let date = e.maintenance.next_due.format("%d.%m.%Y");
    let head = if e.maintenance.status == MaintenanceStatus::Overdue {
        format!(
            "Просрочено ТО {what}, {}: срок был {date}.",
            serial_marker(e)
        )
    } else {
        format!("Плановое ТО {what}, {}: срок {date}.", serial_marker(e))
    };
    format!("{head} Позвоните клиенту и согласуйте дату обслуживания.")
}

fn serial_marker(e: &Equipment) -> String {
    format!("серийный № {}", e.serial)
}

/// Whether a task on the deal is this machine's reminder for its current due date.
fn is_reminder_for(text: &str, e: &Equipment) -> bool {
    text.contains(&format!("{}:", serial_marker(e)))
        && text.contains(&e.maintenance.next_due.format("%d.%m.%Y").to_string())
}

pub struct Reminders<'a> {
    pub store: &'a dyn PassportStore,
    pub crm: &'a dyn MaintenanceCrm,
    pub deals: &'a dyn CrmDeals,
    pub zone: AccountZone,
    pub days: i64,
    /// When a deal has no responsible user.
    pub default_responsible_user_id: i64,
}

impl Reminders<'_> {
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut ReminderStats,
    ) -> Result<StepEnd, SyncError> {
        let today = self.zone.today(now);
        let last_day = today
            .checked_add_days(Days::new(self.days.max(0) as u64))
            .unwrap_or(today);
        let mut machines = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.due_by(last_day, INDEX_PAGE, after).await?;
            machines.extend(page.items);
            after = page.next;
            if after.is_none() {
                break;
            }
        }
        stats.checked += machines.len() as u64;

        let mut owed = Vec::new();
        for machine in machines {
            let before = machine.maintenance.status;
            let updated = modify(self.store, machine, |e| {
                let Some(status) = status_for_date(&e.maintenance, today, last_day) else {
                    return false;
                };
                let values = Maintenance {
                    status,
                    next_due: e.maintenance.next_due,
                };
                e.change_maintenance(values, now)
            })
            .await?;
            let Some(machine) = updated else { continue };
            if machine.maintenance.status != before {
                match machine.maintenance.status {
                    MaintenanceStatus::Overdue => stats.marked_overdue += 1,
                    MaintenanceStatus::Due => stats.marked_due += 1,
                    _ => {}
                }
            }
            if needs_reminder(&machine) {
                owed.push(machine);
            }
        }
        if owed.is_empty() {
            return Ok(StepEnd::Done);
        }
        if !budget.allows_request() {
            return Ok(StepEnd::OutOfTime);
        }
        self.create_tasks(owed, now, budget, stats).await
    }

    async fn create_tasks(
        &self,
        owed: Vec<Equipment>,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut ReminderStats,
    ) -> Result<StepEnd, SyncError> {
        let mut responsible = HashMap::new();
        let ids: Vec<i64> = owed.iter().map(|e| e.amo_lead_id).collect();
        for chunk in ids.chunks(DEALS_PER_REQUEST) {
            for deal in self.deals.deals(chunk).await? {
                responsible.insert(deal.id, deal.responsible_user_id);
            }
        }
        // An interrupted run may have created some of these tasks already.
        let started: Vec<i64> = owed
            .iter()
            .filter(|e| e.sync.reminder_started_for == Some(e.maintenance.next_due))
            .map(|e| e.amo_lead_id)
            .collect();
        let existing = if started.is_empty() {
            Vec::new()
        } else {
            self.crm.tasks_on(&started).await?
        };

        let mut to_create = Vec::new();
        for machine in owed {
            if !responsible.contains_key(&machine.amo_lead_id) {
                stats.deals_missing += 1;
                warn!(amo_lead_id = machine.amo_lead_id, serial = %machine.serial, "deal not found in amoCRM; no reminder task");
                continue;
            }
            let found = existing
                .iter()
                .any(|t| t.lead_id == machine.amo_lead_id && is_reminder_for(&t.text, &machine));
            if found {
                stats.tasks_found += 1;
                self.mark_reminded(machine).await?;
                continue;
            }
            let due = machine.maintenance.next_due;
            let marked = modify(self.store, machine, |e| {
                if e.maintenance.next_due != due || !needs_reminder(e) {
                    return false;
                }
                e.sync.reminder_started_for = Some(due);
                true
            })
            .await?;
            if let Some(m) = marked.filter(|m| m.sync.reminder_started_for == Some(due)) {
                to_create.push(m);
            }
        }

        for chunk in to_create.chunks(TASKS_PER_REQUEST) {
            if !budget.allows_request() {
                return Ok(StepEnd::OutOfTime);
            }
            let tasks: Vec<NewTask> = chunk
                .iter()
                .map(|e| NewTask {
                    lead_id: e.amo_lead_id,
                    responsible_user_id: responsible
                        .get(&e.amo_lead_id)
                        .copied()
                        .filter(|u| *u != 0)
                        .unwrap_or(self.default_responsible_user_id),
                    text: reminder_text(e),
                    complete_till: (now + chrono::Duration::days(1)).timestamp(),
                })
                .collect();
            self.crm.create_tasks(&tasks).await?;
            for machine in chunk {
                stats.tasks_created += 1;
                info!(amo_lead_id = machine.amo_lead_id, serial = %machine.serial, next_due = %machine.maintenance.next_due, "maintenance reminder task created");
                self.mark_reminded(machine.clone()).await?;
            }
        }
        Ok(StepEnd::Done)
    }

    async fn mark_reminded(&self, machine: Equipment) -> Result<(), SyncError> {
        let due = machine.maintenance.next_due;
        modify(self.store, machine, |e| {
            if e.sync.reminded_for == Some(due) {
                return false;
            }
            e.sync.reminded_for = Some(due);
            e.sync.reminder_started_for = None;
            true
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MaintenanceStatus::*;

    fn m(status: MaintenanceStatus, day: u32) -> Maintenance {
        Maintenance {
            status,
            next_due: NaiveDate::from_ymd_opt(2026, 6, day).unwrap(),
        }
    }

    #[test]
    fn the_date_moves_statuses_in_order_and_leaves_arranged_work_alone() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap();
        let last = NaiveDate::from_ymd_opt(2026, 6, 24).unwrap();
        assert_eq!(status_for_date(&m(Ok, 30), today, last), None);
        assert_eq!(status_for_date(&m(Ok, 24), today, last), Some(Due));
        assert_eq!(status_for_date(&m(Ok, 10), today, last), Some(Due));
        assert_eq!(status_for_date(&m(Done, 12), today, last), Some(Due));
        assert_eq!(status_for_date(&m(Due, 12), today, last), None);
        assert_eq!(status_for_date(&m(Due, 9), today, last), Some(Overdue));
        assert_eq!(status_for_date(&m(Ok, 1), today, last), Some(Overdue));
        assert_eq!(status_for_date(&m(Scheduled, 1), today, last), None);
        assert_eq!(status_for_date(&m(InProgress, 1), today, last), None);
        assert_eq!(status_for_date(&m(Overdue, 1), today, last), None);
        // The manager gave an overdue machine a new date.
        assert_eq!(status_for_date(&m(Overdue, 20), today, last), Some(Due));
    }
}
