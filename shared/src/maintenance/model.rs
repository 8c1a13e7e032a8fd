//! The maintenance sync's own vocabulary: the six statuses in the select's order, the ids of
//! the two deal fields and their options, the account's time zone, and one deal's maintenance
//! values as read. Plain data: no port, no adapter.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

use crate::passport::MaintenanceStatus;

/// The select's option id of each status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEnums {
    pairs: Vec<(MaintenanceStatus, i64)>,
}

impl StatusEnums {
    /// Every status exactly once, every option id different.
    pub fn new(pairs: Vec<(MaintenanceStatus, i64)>) -> Result<Self, String> {
        for status in MaintenanceStatus::ALL {
            match pairs.iter().filter(|(s, _)| *s == status).count() {
                1 => {}
                0 => return Err(format!("no option id for status {}", status.as_str())),
                _ => return Err(format!("status {} is given twice", status.as_str())),
            }
        }
        let mut ids: Vec<i64> = pairs.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != pairs.len() {
            return Err("two statuses share one option id".into());
        }
        Ok(Self { pairs })
    }

    /// `ok=1601,due=1602,scheduled=1603,in_progress=1604,done=1605,overdue=1606`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for part in spec
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, id) = part
                .split_once('=')
                .ok_or_else(|| format!("expected STATUS=OPTION_ID, got {part:?}"))?;
            let status = MaintenanceStatus::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown status {:?} (expected ok, due, scheduled, in_progress, done, overdue)",
                    name.trim()
                )
            })?;
            let id = id
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("option id of {} is not a positive integer", name.trim()))?;
            pairs.push((status, id));
        }
        Self::new(pairs)
    }

    /// The form `parse` reads (what the operator puts in `AMOCRM_MAINTENANCE_STATUS_ENUMS`).
    pub fn to_spec(&self) -> String {
        self.pairs
            .iter()
            .map(|(s, id)| format!("{}={id}", s.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn enum_id(&self, status: MaintenanceStatus) -> i64 {
        self.pairs
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, id)| *id)
            .expect("StatusEnums::new checked that every status has an id")
    }

    pub fn status(&self, enum_id: i64) -> Option<MaintenanceStatus> {
        self.pairs
            .iter()
            .find(|(_, id)| *id == enum_id)
            .map(|(s, _)| *s)
    }
}

/// The ids of the two fields and of the select's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceFieldIds {
    pub next_maintenance: i64,
    pub status: i64,
    pub status_enums: StatusEnums,
}

/// The account's time zone: amoCRM stores a date field as midnight there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountZone(pub FixedOffset);

impl Default for AccountZone {
    /// Moscow (UTC+3, no daylight saving time since 2014).
    fn default() -> Self {
        AccountZone(FixedOffset::east_opt(3 * 3600).expect("valid offset"))
    }
}

impl AccountZone {
    /// `+03:00`, `-05:30`, `UTC`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(AccountZone(FixedOffset::east_opt(0).expect("zero offset")));
        }
        let bad = || format!("expected an offset like +03:00, got {t:?}");
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        FixedOffset::east_opt(sign * (h * 3600 + m * 60))
            .map(AccountZone)
            .ok_or_else(bad)
    }

    /// The calendar day a date field's timestamp stands for.
    pub fn date_of(&self, unix: i64) -> Option<NaiveDate> {
        DateTime::from_timestamp(unix, 0).map(|t| t.with_timezone(&self.0).date_naive())
    }

    /// Midnight of `day` in the account's zone, as amoCRM wants a date field written.
    pub fn midnight(&self, day: NaiveDate) -> DateTime<FixedOffset> {
        self.0
            .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .single()
            .expect("a fixed offset has no gaps")
    }

    /// Today in the account's zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.0).date_naive()
    }
}

/// Maintenance values read from one amoCRM deal (a list page or a webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmoReading {
    pub lead_id: i64,
    pub pipeline_id: Option<i64>,
    pub status: Option<MaintenanceStatus>,
    pub next_due: Option<NaiveDate>,
    /// The deal's `updated_at` (unix seconds): when amoCRM last changed it.
    pub updated_at: i64,
    /// Telegram id and serial as the deal carries them: the key of its equipment, usually.
    pub owner_hint: Option<(i64, String)>,
}

impl AmoReading {
    /// An empty field is not a value: such a deal carries nothing to apply.
    pub fn carries_values(&self) -> bool {
        self.status.is_some() || self.next_due.is_some()
    }
}
