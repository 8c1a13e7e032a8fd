//! Passport types, free of AWS and HTTP.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Maintenance status, the same six values on both sides (amoCRM select enums map onto them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceStatus {
    Ok,
    Due,
    Scheduled,
    InProgress,
    Done,
    Overdue,
}

impl MaintenanceStatus {
    /// Every status once, in the order of the «Статус ТО» select's options in amoCRM.
    pub const ALL: [MaintenanceStatus; 6] = [
        MaintenanceStatus::Ok,
        MaintenanceStatus::Due,
        MaintenanceStatus::Scheduled,
        MaintenanceStatus::InProgress,
        MaintenanceStatus::Done,
        MaintenanceStatus::Overdue,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceStatus::Ok => "ok",
            MaintenanceStatus::Due => "due",
            MaintenanceStatus::Scheduled => "scheduled",
            MaintenanceStatus::InProgress => "in_progress",
            MaintenanceStatus::Done => "done",
            MaintenanceStatus::Overdue => "overdue",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// How the TMA shows it.
    pub fn title_ru(self) -> &'static str {
        match self {
            MaintenanceStatus::Ok => "В норме",
            MaintenanceStatus::Due => "Скоро ТО",
            MaintenanceStatus::Scheduled => "ТО запланировано",
            MaintenanceStatus::InProgress => "Идёт ТО",
            MaintenanceStatus::Done => "ТО выполнено",
            MaintenanceStatus::Overdue => "ТО просрочено",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EquipmentState {
    Active,
    /// The deal was reopened in amoCRM (moved out of «won»): kept, not deleted.
    Revoked,
}

impl EquipmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            EquipmentState::Active => "active",
            EquipmentState::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub status: MaintenanceStatus,
    pub next_due: NaiveDate,
}

/// One machine in a customer's passport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equipment {
    pub owner_telegram_id: i64,
    pub amo_contact_id: Option<i64>,
    pub serial: String,
    pub model: Option<String>,
    pub purchased_at: DateTime<Utc>,
    pub amo_lead_id: i64,
    pub maintenance: Maintenance,
    pub state: EquipmentState,
    pub updated_at: DateTime<Utc>,
    /// What the maintenance sync needs (absent on items written before it existed).
    #[serde(default)]
    pub sync: SyncMarks,
}

/// The maintenance values amoCRM holds for a machine, as far as the sync knows: read from the
/// deal, or written to it by us. The base of the three-way merge (see `maintenance::conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AmoValues {
    pub status: Option<MaintenanceStatus>,
    pub next_due: Option<NaiveDate>,
}

impl AmoValues {
    pub fn of(m: &Maintenance) -> Self {
        Self {
            status: Some(m.status),
            next_due: Some(m.next_due),
        }
    }
}

/// The maintenance sync's bookkeeping for one machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncMarks {
    /// Bumped by every write; writes are conditional on it (optimistic locking).
    pub version: u64,
    /// When our side last changed `maintenance` (registration, TMA, operator, the sync's rules).
    pub local_changed_at: Option<DateTime<Utc>>,
    /// What amoCRM holds as far as we know.
    pub amo: AmoValues,
    /// amoCRM's `updated_at` of the deal when `amo` was last confirmed: older payloads are stale.
    pub amo_updated_at: Option<i64>,
    /// The due date a reminder task exists for.
    pub reminded_for: Option<NaiveDate>,
    /// The due date a reminder task was being created for (a crash after the POST is detected).
    pub reminder_started_for: Option<NaiveDate>,
    /// Values amoCRM refused (e.g. the deal was deleted): not pushed again until they change.
    pub push_refused_for: Option<Maintenance>,
}

impl Equipment {
    /// Our maintenance values differ from what amoCRM holds and amoCRM has not refused them.
    pub fn needs_push(&self) -> bool {
        self.state == EquipmentState::Active
            && self.sync.amo != AmoValues::of(&self.maintenance)
            && self.sync.push_refused_for.as_ref() != Some(&self.maintenance)
    }

    /// Whether time alone can still make the sync act on this machine (status due/overdue,
    /// a reminder task): the due-date index holds exactly these.
    pub fn watches_due_date(&self) -> bool {
        if self.state != EquipmentState::Active {
            return false;
        }
        match self.maintenance.status {
            MaintenanceStatus::Scheduled | MaintenanceStatus::InProgress => false,
            MaintenanceStatus::Overdue => self.sync.reminded_for != Some(self.maintenance.next_due),
            MaintenanceStatus::Ok | MaintenanceStatus::Due | MaintenanceStatus::Done => true,
        }
    }

    /// A change made on our side at `at`; false when nothing changed.
    pub fn change_maintenance(&mut self, new: Maintenance, at: DateTime<Utc>) -> bool {
        if self.maintenance == new {
            return false;
        }
        self.maintenance = new;
        self.sync.local_changed_at = Some(at);
        self.updated_at = at;
        true
    }
}
