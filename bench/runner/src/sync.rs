//! The maintenance sync benchmark (N changed passports against the sandbox at its 7 req/s
//! limit, compared with the floor ceil(N/250)/7 s). It is a pluggable section: the
//! maintenance-sync function is not on this branch yet, so the section says so instead of
//! measuring something else under its name.

use std::path::Path;

/// Batch size of amoCRM's bulk PATCH and its rate limit: the floor of a sync of `n` changes.
pub const BATCH: u64 = 250;
pub const REQUESTS_PER_SECOND: f64 = 7.0;

/// The least wall time a sync of `changed` passports can take: ceil(N/250) requests at 7/s.
pub fn floor_secs(changed: u64) -> f64 {
    changed.div_ceil(BATCH) as f64 / REQUESTS_PER_SECOND
}

pub enum SyncSection {
    NotAvailable(String),
}

/// What the sync section can do in the checkout at `repo_root`.
pub fn availability(repo_root: &Path) -> SyncSection {
    if !repo_root.join("functions/maintenance-sync").is_dir() {
        return SyncSection::NotAvailable(
            "not available: functions/maintenance-sync is not in this checkout".into(),
        );
    }
    SyncSection::NotAvailable(
        "not available: functions/maintenance-sync exists but this runner has no driver for it yet"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_whole_batches_at_seven_per_second() {
        assert_eq!(floor_secs(1_000), 4.0 / 7.0);
        assert_eq!(floor_secs(10_000), 40.0 / 7.0);
        assert_eq!(floor_secs(100_000), 400.0 / 7.0);
        assert_eq!(floor_secs(251), 2.0 / 7.0);
    }
}
