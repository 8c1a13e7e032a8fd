//! The maintenance sync benchmark: N passports changed on our side pushed to the amoCRM
//! sandbox at its real 7 req/s limit by the real `maintenance-sync` binary, compared with the
//! floor ceil(N/250)/7 s. `seed` builds the starting state, `drive` runs and measures, `cpu`
//! reads the CPU time the function and moto spent (what the wall time went to).

pub mod cpu;
pub mod drive;
pub mod floor;
pub mod seed;

use std::collections::BTreeMap;

/// Batch size of amoCRM's bulk PATCH and its rate limit: the floor of a sync of `n` changes.
pub const BATCH: u64 = 250;
pub const REQUESTS_PER_SECOND: f64 = 7.0;

/// The least wall time a sync of `changed` passports can take: ceil(N/250) requests at 7/s.
pub fn floor_secs(changed: u64) -> f64 {
    changed.div_ceil(BATCH) as f64 / REQUESTS_PER_SECOND
}

/// Requests counted by "METHOD path → status", in that order.
pub fn by_endpoint<'a>(
    requests: impl IntoIterator<Item = (&'a str, &'a str, u16)>,
) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<(String, String, u16), usize> = BTreeMap::new();
    for (method, path, status) in requests {
        *counts
            .entry((path.to_string(), method.to_string(), status))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((path, method, status), n)| (format!("{method} {path} → {status}"), n))
        .collect()
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

    #[test]
    fn requests_are_counted_per_method_path_and_status() {
        let log = [
            ("PATCH", "/api/v4/leads", 200),
            ("GET", "/api/v4/leads", 204),
            ("PATCH", "/api/v4/leads", 200),
            ("PATCH", "/api/v4/leads", 429),
        ];
        assert_eq!(
            by_endpoint(log),
            vec![
                ("GET /api/v4/leads → 204".to_string(), 1),
                ("PATCH /api/v4/leads → 200".to_string(), 2),
                ("PATCH /api/v4/leads → 429".to_string(), 1),
            ]
        );
    }
}
