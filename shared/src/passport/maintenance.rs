//! How often each model needs maintenance: a default interval plus per-model overrides.

use std::collections::HashMap;

use chrono::{DateTime, Months, NaiveDate, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenancePolicy {
    pub default_months: u32,
    /// Keyed by the model name, compared case-insensitively without surrounding spaces.
    pub per_model: HashMap<String, u32>,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        Self {
            default_months: 12,
            per_model: HashMap::new(),
        }
    }
}

fn model_key(model: &str) -> String {
    model.trim().to_lowercase()
}

impl MaintenancePolicy {
    /// Parses `MAINTENANCE_MODEL_MONTHS`, e.g. `16К20=6;1К62=12`.
    pub fn parse(default_months: u32, overrides: &str) -> Result<Self, String> {
        let mut per_model = HashMap::new();
        for part in overrides
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (model, months) = part
                .rsplit_once('=')
                .ok_or_else(|| format!("expected MODEL=MONTHS, got {part:?}"))?;
            let months: u32 = months
                .trim()
                .parse()
                .ok()
                .filter(|m| (1..=120).contains(m))
                .ok_or_else(|| format!("months for {model:?} must be 1..=120"))?;
            per_model.insert(model_key(model), months);
        }
        Ok(Self {
            default_months,
            per_model,
        })
    }

    pub fn interval_months(&self, model: Option<&str>) -> u32 {
        model
            .and_then(|m| self.per_model.get(&model_key(m)))
            .copied()
            .unwrap_or(self.default_months)
    }

    /// Purchase date plus the model's interval (end-of-month safe: 31 Jan + 1 month = 28/29 Feb).
    pub fn next_due(&self, purchased_at: DateTime<Utc>, model: Option<&str>) -> NaiveDate {
        let date = purchased_at.date_naive();
        date.checked_add_months(Months::new(self.interval_months(model)))
            .unwrap_or(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn per_model_override_beats_the_default_and_month_ends_are_clamped() {
        let p = MaintenancePolicy::parse(12, "16К20=6; 1к62 = 3").unwrap();
        let jan31 = Utc.with_ymd_and_hms(2026, 1, 31, 10, 0, 0).unwrap();
        assert_eq!(
            p.next_due(jan31, Some("16к20")),
            NaiveDate::from_ymd_opt(2026, 7, 31).unwrap()
        );
        assert_eq!(
            p.next_due(jan31, Some("1К62")),
            NaiveDate::from_ymd_opt(2026, 4, 30).unwrap()
        );
        assert_eq!(
            p.next_due(jan31, Some("unknown")),
            NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
        );
        assert_eq!(
            p.next_due(jan31, None),
            NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
        );
    }

    #[test]
    fn malformed_overrides_are_refused_with_the_reason() {
        assert!(
            MaintenancePolicy::parse(12, "16К20")
                .unwrap_err()
                .contains("MODEL=MONTHS")
        );
        assert!(
            MaintenancePolicy::parse(12, "16К20=0")
                .unwrap_err()
                .contains("1..=120")
        );
    }
}
