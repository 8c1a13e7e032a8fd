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
        [
            MaintenanceStatus::Ok,
            MaintenanceStatus::Due,
            MaintenanceStatus::Scheduled,
            MaintenanceStatus::InProgress,
            MaintenanceStatus::Done,
            MaintenanceStatus::Overdue,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
