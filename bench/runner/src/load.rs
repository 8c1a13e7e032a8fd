//! Closed-loop load at a fixed concurrency for a fixed time: each worker sends its next request
//! as soon as the previous one is answered. Latencies of every request are kept and sorted
//! (a few ten thousand values; no histogram needed).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Latencies of the successful requests.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    pub fn per_second(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p50(&self) -> Option<Duration> {
        percentile(&self.latencies, 50.0)
    }

    pub fn p99(&self) -> Option<Duration> {
        percentile(&self.latencies, 99.0)
    }
}

/// The nearest-rank percentile `p` (0–100] of `values` (sorted or not).
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Request numbers, unique across all runs of this process (conditional writes and
/// de-duplication must see new keys at every level).
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(0);

/// Runs `request(n)` (n unique across workers and runs) from `concurrency` workers for `duration`.
/// `request` returns whether the answer was the expected one.
pub async fn run<F, Fut>(concurrency: usize, duration: Duration, request: F) -> LoadResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let request = Arc::clone(&request);
            tokio::spawn(async move {
                let mut result = LoadResult::default();
                while Instant::now() < deadline {
                    let n = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    if request(n).await {
                        result.latencies.push(sent.elapsed());
                    } else {
                        result.errors += 1;
                    }
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for worker in workers {
        match worker.await {
            Ok(r) => {
                total.latencies.extend(r.latencies);
                total.errors += r.errors;
            }
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_are_nearest_rank_over_unsorted_values() {
        let values: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&values, 50.0), Some(ms(50)));
        assert_eq!(percentile(&values, 99.0), Some(ms(99)));
        assert_eq!(percentile(&values, 100.0), Some(ms(100)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[tokio::test]
    async fn failures_are_counted_apart_from_latencies() {
        let result = run(4, ms(200), |n| async move {
            tokio::time::sleep(ms(5)).await;
            n % 2 == 0
        })
        .await;
        assert!(result.requests() >= 4, "{result:?}");
        let ok = result.latencies.len() as u64;
        // Every other request fails; the split is exact up to the in-flight ones at the end.
        assert!(
            ok.abs_diff(result.errors) <= 4,
            "{ok} ok, {} errors",
            result.errors
        );
        assert!(result.p50().unwrap() >= ms(5));
    }
}
