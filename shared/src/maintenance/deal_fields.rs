//! Reading the two maintenance fields of a deal — «Дата следующего ТО» (date) and «Статус ТО»
//! (select) — into the values the sync applies.

use tracing::warn;

use super::model::{AccountZone, AmoReading, MaintenanceFieldIds};
use crate::passport::MaintenanceStatus;
use crate::ports::CrmDeal;

/// Reads and writes the maintenance fields of deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceFields {
    pub ids: MaintenanceFieldIds,
    pub zone: AccountZone,
    /// The serial and Telegram id fields (to find the equipment by its key).
    pub serial_field: i64,
    pub telegram_id_field: i64,
}

impl MaintenanceFields {
    fn status_of(&self, lead_id: i64, enum_id: Option<i64>) -> Option<MaintenanceStatus> {
        let id = enum_id?;
        let status = self.ids.status_enums.status(id);
        if status.is_none() {
            warn!(
                amo_lead_id = lead_id,
                enum_id = id,
                "unknown «Статус ТО» option; check AMOCRM_MAINTENANCE_STATUS_ENUMS"
            );
        }
        status
    }

    fn owner_hint(telegram: Option<&str>, serial: Option<&str>) -> Option<(i64, String)> {
        let telegram = crate::passport::register::telegram_id(telegram?)?;
        let serial = serial.map(str::trim).filter(|s| !s.is_empty())?;
        Some((telegram, serial.to_string()))
    }

    /// A deal from `GET /api/v4/leads`, or as a webhook reported it.
    pub fn read_deal(&self, deal: &CrmDeal) -> AmoReading {
        let field = |id: i64| deal.fields.iter().find(|f| f.field_id == id);
        let date = field(self.ids.next_maintenance)
            .and_then(|f| f.unix)
            .and_then(|ts| self.zone.date_of(ts));
        AmoReading {
            lead_id: deal.id,
            pipeline_id: Some(deal.pipeline_id).filter(|p| *p != 0),
            status: self.status_of(deal.id, field(self.ids.status).and_then(|f| f.enum_id)),
            next_due: date,
            updated_at: deal.updated_at,
            owner_hint: Self::owner_hint(
                deal.field_text(self.telegram_id_field),
                deal.field_text(self.serial_field),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::maintenance::model::StatusEnums;

    #[test]
    fn status_enums_need_every_status_once_and_distinct_ids() {
        let e = StatusEnums::parse("ok=1, due=2, scheduled=3, in_progress=4, done=5, overdue=6")
            .unwrap();
        assert_eq!(e.enum_id(MaintenanceStatus::InProgress), 4);
        assert_eq!(e.status(6), Some(MaintenanceStatus::Overdue));
        assert_eq!(e.status(7), None);
        assert_eq!(StatusEnums::parse(&e.to_spec()).unwrap(), e);
        assert!(
            StatusEnums::parse("ok=1,due=2")
                .unwrap_err()
                .contains("scheduled")
        );
        assert!(
            StatusEnums::parse("ok=1,due=1,scheduled=3,in_progress=4,done=5,overdue=6")
                .unwrap_err()
                .contains("share")
        );
        assert!(
            StatusEnums::parse("fine=1")
                .unwrap_err()
                .contains("unknown status")
        );
        assert!(
            StatusEnums::parse("ok=x")
                .unwrap_err()
                .contains("positive integer")
        );
    }

    #[test]
    fn dates_are_midnight_in_the_account_zone_both_ways() {
        let zone = AccountZone::parse("+03:00").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let midnight = zone.midnight(day);
        assert_eq!(midnight.to_rfc3339(), "2026-05-01T00:00:00+03:00");
        // 2026-04-30T21:00:00Z is still 1 May in Moscow.
        assert_eq!(zone.date_of(midnight.timestamp()), Some(day));
        assert_eq!(zone.date_of(1_777_582_800), Some(day));
        assert_eq!(AccountZone::default(), zone);
        assert!(AccountZone::parse("3").is_err());
        assert_eq!(
            AccountZone::parse("UTC").unwrap().date_of(1_777_582_800),
            NaiveDate::from_ymd_opt(2026, 4, 30)
        );
    }
}
