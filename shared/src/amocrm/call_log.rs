//! The last failed amoCRM call and the last successful one, recorded where `GET /health` can
//! show them: "amoCRM rejected the token at 10:42 and nothing has worked since" is what an
//! operator needs when a long-lived token was revoked (the token itself still looks valid).
//!
//! `CallRecorder`, attached to the amoCRM client (see `LoggedAmo`), writes them. A failure is written at once (the
//! same failure at most once a minute per instance); a success only when this instance saw a
//! failure before, or every ten minutes, so healthy traffic costs almost no writes. A failure
//! is unresolved while no success was recorded after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::warn;

use super::error::{CrmError, CrmErrorKind};
use crate::ports::StoreError;
pub use crate::ports::{AmoCalls, AmoFailure, CallLog};

/// Without a failure in between, a success is recorded at most this often per instance.
const SUCCESS_EVERY: Duration = Duration::from_secs(600);
/// The same failure (operation, kind, status) is recorded at most this often per instance.
const SAME_FAILURE_EVERY: Duration = Duration::from_secs(60);

impl AmoFailure {
    pub fn new(operation: &str, error: &CrmError, at: DateTime<Utc>) -> Self {
        AmoFailure {
            at,
            operation: operation.to_string(),
            kind: error.kind,
            status: error.status,
            message: error.message.clone(),
            hint: error.hint.clone(),
            retry_after_secs: error.retry_after.map(|d| d.as_secs().max(1)),
        }
    }

    /// Until when nobody should call amoCRM after this failure: a 403 (our address refused,
    /// a ban) for the breaker's window, a 429 for as long as amoCRM asked.
    fn holds_calls_until(&self, window: chrono::Duration) -> Option<DateTime<Utc>> {
        match self.kind {
            CrmErrorKind::Blocked => Some(self.at + window),
            CrmErrorKind::RateLimited => self
                .retry_after_secs
                .map(|s| self.at + chrono::Duration::seconds(s as i64)),
            _ => None,
        }
    }

    /// amoCRM refuses us until someone acts: the token (401), payment (402) or a ban/rights (403).
    pub fn blocks_calls(&self) -> bool {
        matches!(
            self.kind,
            CrmErrorKind::Unauthorized | CrmErrorKind::Blocked
        ) || matches!(self.status, Some(401..=403))
    }
}

#[derive(Default)]
struct Memo {
    /// This instance recorded a failure and no success since.
    failure_recorded: bool,
    last_success_write: Option<Instant>,
    last_failure_write: Option<(Instant, String)>,
    /// The circuit breaker: no call until then, because of this failure.
    held: Option<(DateTime<Utc>, AmoFailure)>,
    /// When the shared record was last read for the breaker.
    shared_read: Option<Instant>,
    /// The refusal incident this instance saw announced (its key).
    announced: Option<String>,
}

/// How often an instance reads the shared record to learn of another instance's 403 or 429.
const BREAKER_READ_EVERY: Duration = Duration::from_secs(5);

/// Notes each amoCRM call's outcome in a `CallLog`: a failure at once (the same failure at
/// most once a minute), a success only after a failure or every ten minutes. Attached to the
/// `AmoClient` itself, so every call of every function is recorded in one place. Recording is
/// best effort: a failed write is logged, never fails the call.
pub struct CallRecorder {
    log: Arc<dyn CallLog>,
    memo: Mutex<Memo>,
    /// The circuit breaker's window after a 403 (`None`: no breaker).
    breaker: Option<chrono::Duration>,
}

impl CallRecorder {
    pub fn new(log: Arc<dyn CallLog>) -> Self {
        CallRecorder {
            log,
            memo: Mutex::new(Memo::default()),
            breaker: None,
        }
    }

    /// A circuit breaker shared through the log by every function and instance: after a 403
    /// nobody calls amoCRM for `window` (every call would prolong a ban), after a 429 for as
    /// long as amoCRM asked; a call in that time fails at once with the refusal's own error.
    pub fn with_breaker(mut self, window: chrono::Duration) -> Self {
        self.breaker = Some(window);
        self
    }

    /// Before a call: the refusal while the breaker holds calls, else `Ok`.
    pub async fn admit(&self) -> Result<(), CrmError> {
        let Some(window) = self.breaker else {
            return Ok(());
        };
        let stale = {
            let memo = self.memo.lock().expect("memo lock");
            memo.shared_read
                .is_none_or(|t| t.elapsed() >= BREAKER_READ_EVERY)
        };
        if stale {
            // Another instance's refusal counts as ours (best effort: unreadable = unknown).
            let shared = self.log.calls().await.ok();
            let mut memo = self.memo.lock().expect("memo lock");
            memo.shared_read = Some(Instant::now());
            if let Some(f) = shared.as_ref().and_then(AmoCalls::unresolved)
                && let Some(until) = f.holds_calls_until(window)
                && memo.held.as_ref().is_none_or(|(u, _)| *u < until)
            {
                memo.held = Some((until, f.clone()));
            }
        }
        let memo = self.memo.lock().expect("memo lock");
        match &memo.held {
            Some((until, f)) if *until > Utc::now() => Err(held_error(f, *until)),
            _ => Ok(()),
        }
    }

    /// `operation` names the call (`POST /api/v4/leads/complex`).
    pub async fn observe<T>(&self, operation: &str, result: &Result<T, CrmError>) {
        match result {
            Ok(_) => {
                // A success after a refusal ends the incident for everyone: it is recorded at
                // once, so the next refusal counts as a new one.
                let ended = self.memo.lock().expect("memo lock").held.take().is_some();
                self.succeeded(ended).await
            }
            Err(e) => {
                if let Some(window) = self.breaker {
                    let failure = AmoFailure::new(operation, e, Utc::now());
                    if let Some(until) = failure.holds_calls_until(window) {
                        self.memo.lock().expect("memo lock").held = Some((until, failure));
                    }
                }
                self.failed(operation, e).await
            }
        }
    }

    async fn succeeded(&self, incident_ended: bool) {
        let due = {
            let memo = self.memo.lock().expect("memo lock");
            incident_ended
                || memo.failure_recorded
                || memo
                    .last_success_write
                    .is_none_or(|t| t.elapsed() >= SUCCESS_EVERY)
        };
        if !due {
            return;
        }
        match self.log.record_success(Utc::now()).await {
            Ok(()) => {
                let mut memo = self.memo.lock().expect("memo lock");
                memo.failure_recorded = false;
                memo.last_success_write = Some(Instant::now());
            }
            Err(e) => warn!(error = %e, "amoCRM call success not recorded"),
        }
    }

    async fn failed(&self, operation: &str, error: &CrmError) {
        if error.kind == CrmErrorKind::Blocked {
            self.announce(operation, error).await;
        }
        let signature = format!("{operation}/{:?}/{:?}", error.kind, error.status);
        let repeat = {
            let memo = self.memo.lock().expect("memo lock");
            memo.last_failure_write
                .as_ref()
                .is_some_and(|(t, s)| *s == signature && t.elapsed() < SAME_FAILURE_EVERY)
        };
        if repeat {
            return;
        }
        let failure = AmoFailure::new(operation, error, Utc::now());
        match self.log.record_failure(&failure).await {
            Ok(()) => {
                let mut memo = self.memo.lock().expect("memo lock");
                memo.failure_recorded = true;
                memo.last_failure_write = Some((Instant::now(), signature));
            }
            Err(e) => warn!(error = %e, "amoCRM call failure not recorded"),
        }
    }
}

impl CallRecorder {
    /// The one alert of a refusal incident. An incident is the refusals since the last
    /// recorded success: its key is that success's time, so every instance names it alike.
    async fn announce(&self, operation: &str, error: &CrmError) {
        let key = match self.log.calls().await {
            Ok(calls) => calls
                .last_success_at
                .map(|t| format!("after-{}", t.timestamp_millis()))
                .unwrap_or_else(|| "first".to_string()),
            Err(e) => {
                warn!(error = %e, "amoCRM refusal incident not checked");
                return;
            }
        };
        if self.memo.lock().expect("memo lock").announced.as_deref() == Some(&key) {
            return;
        }
        match self.log.open_incident(&key).await {
            Ok(first) => {
                self.memo.lock().expect("memo lock").announced = Some(key.clone());
                if first {
                    crate::metrics::count(crate::metrics::Metric::AmoCrmRefused);
                    tracing::error!(
                        alert = true,
                        incident = %key,
                        operation,
                        status = error.status,
                        hint = %error.hint,
                        "amoCRM refuses our calls: every function holds them, leads wait pending"
                    );
                }
            }
            Err(e) => warn!(error = %e, "amoCRM refusal incident not recorded"),
        }
    }
}

/// The error a call gets while the breaker holds calls: the refusal's own kind and hint.
fn held_error(f: &AmoFailure, until: DateTime<Utc>) -> CrmError {
    let mut e = CrmError::new(
        f.kind,
        format!(
            "not sent: amoCRM answered {} to {} at {}; no call to amoCRM until {} (circuit breaker)",
            f.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "an error".into()),
            f.operation,
            f.at.format("%H:%M:%S UTC"),
            until.format("%H:%M:%S UTC"),
        ),
        f.hint.clone(),
    );
    e.status = f.status;
    if f.kind == CrmErrorKind::RateLimited {
        e.retry_after = (until - Utc::now()).to_std().ok();
    }
    e
}

/// `CallLog` in memory, for tests.
#[derive(Default)]
pub struct MemoryCallLog {
    inner: Mutex<(AmoCalls, usize)>,
    incidents: Mutex<Vec<String>>,
}

impl MemoryCallLog {
    /// How many records were written.
    pub fn writes(&self) -> usize {
        self.inner.lock().expect("lock").1
    }

    /// The refusal incidents announced, in order.
    pub fn incidents(&self) -> Vec<String> {
        self.incidents.lock().expect("lock").clone()
    }
}

#[async_trait]
impl CallLog for MemoryCallLog {
    async fn record_failure(&self, failure: &AmoFailure) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("lock");
        inner.0.last_failure = Some(failure.clone());
        inner.1 += 1;
        Ok(())
    }

    async fn record_success(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("lock");
        inner.0.last_success_at = Some(at);
        inner.1 += 1;
        Ok(())
    }

    async fn calls(&self) -> Result<AmoCalls, StoreError> {
        Ok(self.inner.lock().expect("lock").0.clone())
    }

    async fn open_incident(&self, key: &str) -> Result<bool, StoreError> {
        let mut incidents = self.incidents.lock().expect("lock");
        if incidents.iter().any(|k| k == key) {
            return Ok(false);
        }
        incidents.push(key.to_string());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::logged::LoggedAmo;
    use crate::amocrm::testkit::{Canned, CannedServer, client_for};
    use crate::ports::CrmProbe;

    #[tokio::test]
    async fn a_failure_stays_unresolved_until_a_later_success_and_healthy_traffic_writes_once() {
        let server = CannedServer::start(vec![
            Canned::json(200, r#"{"_embedded":{"leads":[{"id":7}]}}"#),
            Canned::json(200, r#"{"_embedded":{"leads":[{"id":8}]}}"#),
            Canned::json(403, r#"{"title":"Forbidden","status":403}"#),
            Canned::json(403, r#"{"title":"Forbidden","status":403}"#),
            Canned::json(200, r#"{"_embedded":{"leads":[{"id":9}]}}"#),
        ])
        .await;
        let (client, _) = client_for(&server, "tok");
        let log = Arc::new(MemoryCallLog::default());
        let amo = LoggedAmo::new(client, Some(log.clone()), None);

        assert_eq!(amo.create_test_lead().await.unwrap(), 7);
        assert_eq!(amo.create_test_lead().await.unwrap(), 8);
        assert_eq!(log.writes(), 1, "the second success is not written again");
        assert!(log.calls().await.unwrap().unresolved().is_none());

        let err = amo.create_test_lead().await.unwrap_err();
        assert_eq!(
            err.kind,
            crate::ports::CrmErrorKind::Blocked,
            "the 403: {err}"
        );
        amo.create_test_lead().await.unwrap_err();
        assert_eq!(
            log.writes(),
            2,
            "the same failure within a minute is written once"
        );
        let calls = log.calls().await.unwrap();
        let failure = calls.unresolved().expect("unresolved failure");
        assert_eq!(
            (failure.operation.as_str(), failure.status),
            ("POST /api/v4/leads", Some(403))
        );
        assert!(failure.blocks_calls());
        assert_eq!(failure.hint, err.hint);

        assert_eq!(amo.create_test_lead().await.unwrap(), 9);
        assert_eq!(
            log.writes(),
            3,
            "a success after a failure is written at once"
        );
        let calls = log.calls().await.unwrap();
        assert!(calls.unresolved().is_none());
        assert!(calls.last_failure.is_some(), "the failure stays visible");
    }

    #[tokio::test]
    async fn every_call_of_the_client_and_its_clones_is_recorded_whoever_makes_it() {
        let server = CannedServer::start(vec![Canned::json(
            503,
            r#"{"title":"Service Unavailable","status":503}"#,
        )])
        .await;
        let (client, _) = client_for(&server, "tok");
        let log = Arc::new(MemoryCallLog::default());
        let amo = LoggedAmo::new(
            client.with_retry_policy(crate::amocrm::RetryPolicy {
                max_attempts: 1,
                ..crate::amocrm::RetryPolicy::fast()
            }),
            Some(log.clone()),
            None,
        );
        // A clone used outside the domain ports (as the maintenance sync's adapter does).
        let bare = amo.client().clone();
        bare.request(reqwest::Method::GET, "/api/v4/leads", &[], None)
            .await
            .unwrap_err();
        let calls = log.calls().await.unwrap();
        let failure = calls.unresolved().expect("the sync-side call is recorded");
        assert_eq!(
            (failure.operation.as_str(), failure.status),
            ("GET /api/v4/leads", Some(503))
        );
    }

    #[tokio::test]
    async fn a_refusal_incident_raises_one_alert_across_instances_and_a_success_ends_it() {
        let forbidden = || Canned::json(403, r#"{"title":"Forbidden","status":403}"#);
        let ok = || Canned::json(200, r#"{"_embedded":{"leads":[{"id":7}]}}"#);
        let a = CannedServer::start(vec![forbidden(), forbidden(), ok()]).await;
        let b = CannedServer::start(vec![forbidden(), forbidden()]).await;
        let log = Arc::new(MemoryCallLog::default());
        // Two instances of two functions, one shared record.
        let first = LoggedAmo::new(client_for(&a, "tok").0, Some(log.clone()), None);
        let second = LoggedAmo::new(client_for(&b, "tok").0, Some(log.clone()), None);

        first.create_test_lead().await.unwrap_err();
        first.create_test_lead().await.unwrap_err();
        second.create_test_lead().await.unwrap_err();
        assert_eq!(log.incidents(), ["first"], "three refusals, one incident");

        // amoCRM answers again; the next refusal is a new incident, announced once more.
        assert_eq!(first.create_test_lead().await.unwrap(), 7);
        second.create_test_lead().await.unwrap_err();
        let incidents = log.incidents();
        assert_eq!(incidents.len(), 2, "{incidents:?}");
        assert!(incidents[1].starts_with("after-"));
    }

    #[test]
    fn only_refusals_block_calls() {
        let at = Utc::now();
        let e401 = CrmError::unauthorized("no", "re-issue").with_status(401);
        assert!(AmoFailure::new("x", &e401, at).blocks_calls());
        let e503 = CrmError::transient("down", "wait").with_status(503);
        assert!(!AmoFailure::new("x", &e503, at).blocks_calls());
        let e400 = CrmError::permanent("bad", "fix").with_status(400);
        assert!(!AmoFailure::new("x", &e400, at).blocks_calls());
    }
}
