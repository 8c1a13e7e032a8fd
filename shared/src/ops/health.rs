//! The integration's health, as `GET /health` reports it: the amoCRM token (kind, expiry, last
//! refresh, whether someone must re-authorize), the last amoCRM error with its hint, work that
//! waits (leads and webhook events parked, or pending too long) and the last maintenance sync.
//! Healthy means nobody needs to act; otherwise every reason comes with what to do.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::parked::{WorkKind, WorkQueues};
use crate::amocrm::call_log::{AmoCalls, AmoFailure, CallLog};
use crate::amocrm::token::TokenKind;
use crate::amocrm::{CrmError, CrmErrorKind, TokenHealth, TokenProvider};
use crate::mail::feedback::{FeedbackKind, FeedbackLog, MailFeedback};
use crate::ports::StoreError;
pub use crate::ports::{LastSync, LastSyncSource};

/// A bounce or complaint this recent is a reason: somebody should look at the mailbox.
pub fn mail_feedback_window() -> Duration {
    Duration::hours(24)
}

/// Pending work not touched for this long is stuck (a delivery takes seconds; the stream
/// retries within minutes).
pub fn stale_pending_after() -> Duration {
    Duration::minutes(15)
}

/// A long-lived token this close to its expiry needs replacing now.
pub fn token_warning() -> Duration {
    Duration::days(1)
}

/// Why the integration is not healthy, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkCounts {
    /// Pending and untouched for longer than `stale_pending_after`.
    pub pending_stale: u64,
    pub parked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenReport {
    #[serde(flatten)]
    pub health: TokenHealth,
    /// Whole days until the token expires (negative: expired).
    pub days_left: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastAmoError {
    #[serde(flatten)]
    pub failure: AmoFailure,
    /// A call succeeded after it.
    pub resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `ok` or `unhealthy`.
    pub status: &'static str,
    pub checked_at: DateTime<Utc>,
    pub reasons: Vec<Reason>,
    pub reauthorization_required: bool,
    pub token: Option<TokenReport>,
    pub last_amocrm_error: Option<LastAmoError>,
    pub last_amocrm_success_at: Option<DateTime<Utc>>,
    pub leads: Option<WorkCounts>,
    pub events: Option<WorkCounts>,
    pub last_sync: Option<LastSync>,
    /// The latest bounce and complaint SES reported (recipients masked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mail_feedback: Vec<MailFeedback>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// What the report is made of, each read on its own (one failing read is one reason).
pub struct HealthInputs {
    pub token: Result<TokenHealth, CrmError>,
    /// `None` where no call log is kept (no STATE_TABLE).
    pub calls: Option<Result<AmoCalls, StoreError>>,
    pub leads: Result<WorkCounts, StoreError>,
    /// `None` where no inbox is configured.
    pub events: Option<Result<WorkCounts, StoreError>>,
    /// `None` where the sync's record is not read.
    pub last_sync: Option<Result<Option<LastSync>, StoreError>>,
    /// `None` where bounces and complaints are not recorded.
    pub mail_feedback: Option<Result<Vec<MailFeedback>, StoreError>>,
}

/// Turns the inputs into the report and its reasons.
pub fn assess(inputs: HealthInputs, now: DateTime<Utc>) -> HealthReport {
    let mut reasons = Vec::new();
    let mut reauthorization_required = false;

    let token = match inputs.token {
        Ok(health) => {
            token_reasons(&health, now, &mut reasons);
            reauthorization_required |= health.reauthorization_required;
            Some(TokenReport {
                days_left: health.expires_at.map(|e| (e - now).num_days()),
                health,
            })
        }
        Err(e) => {
            reasons.push(Reason {
                code: "token_unreadable",
                message: e.message,
                hint: e.hint,
            });
            None
        }
    };

    let (last_amocrm_error, last_amocrm_success_at) = match inputs.calls {
        None => (None, None),
        Some(Err(e)) => {
            reasons.push(store_reason("amoCRM call log (STATE_TABLE)", &e));
            (None, None)
        }
        Some(Ok(calls)) => {
            let refusal = calls.unresolved().filter(|f| f.blocks_calls()).filter(|f| {
                // A token incident the provider reports already is one reason, not two.
                !(reauthorization_required && f.kind == CrmErrorKind::Unauthorized)
            });
            if let Some(f) = refusal {
                let unauthorized = f.kind == CrmErrorKind::Unauthorized || f.status == Some(401);
                reauthorization_required |= unauthorized;
                let blocked = f.kind == CrmErrorKind::Blocked;
                reasons.push(Reason {
                    code: if unauthorized {
                        "amocrm_token_rejected"
                    } else if blocked {
                        "amocrm_refuses_our_address"
                    } else {
                        "amocrm_refusing"
                    },
                    message: if blocked {
                        format!(
                            "amoCRM refuses our address since {} (403 to {}): whitelist the \
                             AmoEgressIp output in amoCRM; leads wait and go out by themselves \
                             once it answers",
                            f.at.format("%Y-%m-%d %H:%M UTC"),
                            f.operation
                        )
                    } else {
                        format!(
                            "amoCRM refused {} at {}{} and no call has succeeded since: {}",
                            f.operation,
                            f.at.format("%Y-%m-%d %H:%M UTC"),
                            f.status.map(|s| format!(" ({s})")).unwrap_or_default(),
                            f.message
                        )
                    },
                    hint: format!(
                        "{} This clears with the next successful amoCRM call (e.g. GET \
                         /ingest/test-crm with X-Admin-Key).",
                        f.hint
                    ),
                });
            }
            let resolved = calls.unresolved().is_none();
            (
                calls
                    .last_failure
                    .map(|failure| LastAmoError { failure, resolved }),
                calls.last_success_at,
            )
        }
    };

    let leads = work_reasons(WorkKind::Lead, inputs.leads, &mut reasons);
    let events = inputs
        .events
        .and_then(|counts| work_reasons(WorkKind::Event, counts, &mut reasons));

    let last_sync = match inputs.last_sync {
        None => None,
        Some(Err(e)) => {
            reasons.push(store_reason("maintenance sync record (STATE_TABLE)", &e));
            None
        }
        Some(Ok(sync)) => {
            if let Some(s) = sync.as_ref().filter(|s| s.failed()) {
                reasons.push(Reason {
                    code: "last_sync_failed",
                    message: format!(
                        "the last maintenance sync{} failed: {}",
                        s.finished_at
                            .map(|t| format!(" ({})", t.format("%Y-%m-%d %H:%M UTC")))
                            .unwrap_or_default(),
                        s.error.as_deref().unwrap_or("no error recorded")
                    ),
                    hint: s.hint.clone().unwrap_or_else(|| {
                        "Read the maintenance-sync function's log for the run; the next \
                         scheduled run retries."
                            .to_string()
                    }),
                });
            }
            if let Some(s) = sync.as_ref().filter(|s| s.fields_missing) {
                reasons.push(Reason {
                    code: "maintenance_fields_missing",
                    message: format!(
                        "maintenance fields missing: run rss-ops setup (the last sync{} found no \
                         «Дата следующего ТО» and «Статус ТО» in amoCRM, so maintenance dates \
                         and statuses are not synced)",
                        s.finished_at
                            .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M UTC")))
                            .unwrap_or_default()
                    ),
                    hint:
                        "Run `rss-ops setup` with the functions' environment: it creates the two \
                           deal fields and remembers their ids in the state table; the next \
                           scheduled run syncs without a redeploy."
                            .to_string(),
                });
            }
            sync
        }
    };

    let mail_feedback = match inputs.mail_feedback {
        None => Vec::new(),
        Some(Err(e)) => {
            reasons.push(store_reason("mail feedback record (STATE_TABLE)", &e));
            Vec::new()
        }
        Some(Ok(found)) => {
            for f in found.iter().filter(|f| now - f.at < mail_feedback_window()) {
                reasons.push(feedback_reason(f));
            }
            found
        }
    };

    HealthReport {
        status: if reasons.is_empty() {
            "ok"
        } else {
            "unhealthy"
        },
        checked_at: now,
        reasons,
        reauthorization_required,
        token,
        last_amocrm_error,
        last_amocrm_success_at,
        leads,
        events,
        last_sync,
        mail_feedback,
    }
}

fn feedback_reason(f: &MailFeedback) -> Reason {
    let lead = f
        .lead_id
        .as_deref()
        .map(|id| format!(" (the sales copy of lead {id})"))
        .unwrap_or_default();
    let (code, what, hint) = match f.kind {
        FeedbackKind::Bounce => (
            "mail_bounced",
            "bounced",
            "The lead itself is in amoCRM; only its mail did not arrive. Check that SALES_MAILBOX \
             (or ALERT_MAILBOX) exists and accepts mail from MAIL_FROM; SES keeps a permanently \
             bouncing address on the account's suppression list until it is removed there.",
        ),
        FeedbackKind::Complaint => (
            "mail_complaint",
            "was marked as spam",
            "A recipient marked our mail as spam: ask the mailbox's owner to allow MAIL_FROM. \
             Repeated complaints can pause the SES account's sending.",
        ),
    };
    Reason {
        code,
        message: format!(
            "mail to {} {what} at {}{lead}: {}",
            f.recipients.join(", "),
            f.at.format("%Y-%m-%d %H:%M UTC"),
            f.detail
        ),
        hint: hint.to_string(),
    }
}

fn token_reasons(health: &TokenHealth, now: DateTime<Utc>, reasons: &mut Vec<Reason>) {
    if health.reauthorization_required {
        reasons.push(Reason {
            code: "reauthorization_required",
            message: format!(
                "the amoCRM token in secret {} no longer works{}{}",
                health.secret_id,
                health
                    .since
                    .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default(),
                health
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            hint: health.hint.clone().unwrap_or_else(|| {
                "Re-authorize the integration: GET /oauth/start with the header X-Admin-Key."
                    .to_string()
            }),
        });
        return;
    }
    // An OAuth access token lives a day and is refreshed by itself: only long-lived ones age.
    if health.kind != TokenKind::LongLived {
        return;
    }
    if let Some(expires) = health.expires_at.filter(|e| *e - now < token_warning()) {
        reasons.push(Reason {
            code: "token_expiring",
            message: format!(
                "the long-lived amoCRM token in secret {} expires {}",
                health.secret_id,
                expires.format("%Y-%m-%d %H:%M UTC")
            ),
            hint: format!(
                "Generate a new long-lived token in amoCRM → Settings → Integrations → this \
                 integration → Keys and scopes and put it into secret {} as \
                 {{\"kind\":\"long_lived\",\"access_token\":\"<token>\"}}; the functions pick \
                 it up within 5 minutes.",
                health.secret_id
            ),
        });
    }
}

fn work_reasons(
    kind: WorkKind,
    counts: Result<WorkCounts, StoreError>,
    reasons: &mut Vec<Reason>,
) -> Option<WorkCounts> {
    let (what, table) = match kind {
        WorkKind::Lead => ("lead", "leads table (LEADS_TABLE)"),
        WorkKind::Event => ("amoCRM webhook event", "inbox table (INBOX_TABLE)"),
    };
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            reasons.push(store_reason(table, &e));
            return None;
        }
    };
    if counts.parked > 0 {
        reasons.push(Reason {
            code: match kind {
                WorkKind::Lead => "parked_leads",
                WorkKind::Event => "parked_events",
            },
            message: format!("{} {what}(s) parked", counts.parked),
            hint: "See them with `rss-ops parked list`: each carries its error and hint. Fix \
                   the cause, then `rss-ops parked redrive --all`."
                .to_string(),
        });
    }
    if counts.pending_stale > 0 {
        reasons.push(Reason {
            code: match kind {
                WorkKind::Lead => "stale_pending_leads",
                WorkKind::Event => "stale_pending_events",
            },
            message: format!(
                "{} {what}(s) pending for more than {} minutes",
                counts.pending_stale,
                stale_pending_after().num_minutes()
            ),
            hint: "crm-worker is not getting through: check its log and throttles, the \
                   stream-failures queue and amoCRM's availability (the last amoCRM error \
                   above). The maintenance sync feeds work pending too long to the worker again."
                .to_string(),
        });
    }
    Some(counts)
}

fn store_reason(what: &str, e: &StoreError) -> Reason {
    Reason {
        code: "store_unavailable",
        message: format!("{what} could not be read: {e}"),
        hint: "Check that the table exists and that the function may read it (dynamodb:Query, \
               dynamodb:GetItem); DynamoDB errors are usually transient."
            .to_string(),
    }
}

/// Gathers the inputs from the token provider and the stores.
pub struct HealthService {
    pub tokens: Arc<TokenProvider>,
    pub work: Arc<dyn WorkQueues>,
    pub calls: Option<Arc<dyn CallLog>>,
    pub sync: Option<Arc<dyn LastSyncSource>>,
    pub mail: Option<Arc<dyn FeedbackLog>>,
}

impl HealthService {
    pub async fn report(&self, now: DateTime<Utc>) -> HealthReport {
        let stale_before = now - stale_pending_after();
        let counts = |kind| async move {
            let (pending_stale, parked) = tokio::join!(
                self.work.count(kind, "pending", Some(stale_before)),
                self.work.count(kind, "parked", None)
            );
            Ok::<_, StoreError>(WorkCounts {
                pending_stale: pending_stale?,
                parked: parked?,
            })
        };
        let events = async {
            match self.work.has_events() {
                true => Some(counts(WorkKind::Event).await),
                false => None,
            }
        };
        let calls = async {
            match &self.calls {
                Some(log) => Some(log.calls().await),
                None => None,
            }
        };
        let last_sync = async {
            match &self.sync {
                Some(s) => Some(s.last_sync().await),
                None => None,
            }
        };
        let mail_feedback = async {
            match &self.mail {
                Some(m) => Some(m.latest().await),
                None => None,
            }
        };
        let (token, leads, events, calls, last_sync, mail_feedback) = tokio::join!(
            self.tokens.token_health(),
            counts(WorkKind::Lead),
            events,
            calls,
            last_sync,
            mail_feedback
        );
        assess(
            HealthInputs {
                token,
                calls,
                leads,
                events,
                last_sync,
                mail_feedback,
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::RunOutcome;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn token(kind: TokenKind, expires_in: Duration) -> TokenHealth {
        TokenHealth {
            kind,
            secret_id: "prod/amocrm-token".into(),
            expires_at: Some(now() + expires_in),
            reauthorization_required: false,
            hint: None,
            since: None,
            last_refresh_at: None,
            last_authorized_at: None,
            last_error: None,
        }
    }

    fn healthy_inputs() -> HealthInputs {
        HealthInputs {
            token: Ok(token(TokenKind::LongLived, Duration::days(400))),
            calls: Some(Ok(AmoCalls::default())),
            leads: Ok(WorkCounts::default()),
            events: Some(Ok(WorkCounts::default())),
            last_sync: Some(Ok(None)),
            mail_feedback: Some(Ok(Vec::new())),
        }
    }

    #[test]
    fn a_recent_bounce_is_a_reason_an_old_one_only_shown() {
        let bounce = |hours_ago: i64| MailFeedback {
            kind: FeedbackKind::Bounce,
            at: now() - Duration::hours(hours_ago),
            message_id: "m".into(),
            lead_id: Some("01JLEAD".into()),
            recipients: vec!["z***@tdrusstankosbyt.ru".into()],
            permanent: true,
            detail: "Permanent/General: smtp; 550 5.1.1 user unknown".into(),
        };
        let mut inputs = healthy_inputs();
        inputs.mail_feedback = Some(Ok(vec![bounce(2)]));
        let r = assess(inputs, now());
        assert_eq!(codes(&r), ["mail_bounced"]);
        assert!(
            r.reasons[0].message.contains("lead 01JLEAD"),
            "{:?}",
            r.reasons
        );
        assert!(r.reasons[0].message.contains("550 5.1.1"));
        let mut inputs = healthy_inputs();
        inputs.mail_feedback = Some(Ok(vec![bounce(30)]));
        let r = assess(inputs, now());
        assert!(r.healthy(), "{:?}", r.reasons);
        assert_eq!(r.mail_feedback.len(), 1, "still shown");
    }

    fn codes(r: &HealthReport) -> Vec<&'static str> {
        r.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn nothing_to_do_is_healthy() {
        let r = assess(healthy_inputs(), now());
        assert!(r.healthy(), "{:?}", r.reasons);
        assert_eq!(r.status, "ok");
        assert_eq!(r.token.unwrap().days_left, Some(400));
    }

    #[test]
    fn a_long_lived_token_expiring_within_a_day_is_a_reason_but_an_oauth_access_token_is_not() {
        let mut i = healthy_inputs();
        i.token = Ok(token(TokenKind::LongLived, Duration::hours(20)));
        let r = assess(i, now());
        assert_eq!(codes(&r), vec!["token_expiring"]);
        assert!(r.reasons[0].hint.contains("prod/amocrm-token"));

        let mut i = healthy_inputs();
        i.token = Ok(token(TokenKind::Oauth, Duration::hours(2)));
        assert!(assess(i, now()).healthy());
    }

    #[test]
    fn reauthorization_carries_the_providers_hint() {
        let mut t = token(TokenKind::Oauth, Duration::hours(2));
        t.reauthorization_required = true;
        t.hint = Some("Re-authorize at /oauth/start".into());
        let mut i = healthy_inputs();
        i.token = Ok(t);
        let r = assess(i, now());
        assert!(r.reauthorization_required);
        assert_eq!(codes(&r), vec!["reauthorization_required"]);
        assert_eq!(r.reasons[0].hint, "Re-authorize at /oauth/start");
    }

    #[test]
    fn an_unresolved_401_means_the_token_was_rejected_until_a_call_succeeds() {
        let error =
            CrmError::unauthorized("amoCRM rejected the long-lived token", "Generate a new one")
                .with_status(401);
        let failure = AmoFailure::new("create_lead", &error, now() - Duration::minutes(3));
        let mut i = healthy_inputs();
        i.calls = Some(Ok(AmoCalls {
            last_failure: Some(failure.clone()),
            last_success_at: Some(now() - Duration::hours(1)),
        }));
        let r = assess(i, now());
        assert_eq!(codes(&r), vec!["amocrm_token_rejected"]);
        assert!(r.reauthorization_required);
        assert!(r.reasons[0].hint.starts_with("Generate a new one"));
        assert!(r.reasons[0].message.contains("create_lead"));
        assert!(!r.last_amocrm_error.unwrap().resolved);

        let mut i = healthy_inputs();
        i.calls = Some(Ok(AmoCalls {
            last_failure: Some(failure),
            last_success_at: Some(now() - Duration::minutes(1)),
        }));
        let r = assess(i, now());
        assert!(r.healthy());
        assert!(
            r.last_amocrm_error.unwrap().resolved,
            "still shown, as resolved"
        );
    }

    #[test]
    fn a_403_is_our_address_refused_in_one_line_never_a_reauthorization() {
        let error = CrmError::new(
            crate::amocrm::CrmErrorKind::Blocked,
            "amoCRM answered 403 to POST /api/v4/leads/complex: Forbidden",
            "Whitelist the AmoEgressIp output",
        )
        .with_status(403);
        let mut i = healthy_inputs();
        i.calls = Some(Ok(AmoCalls {
            last_failure: Some(AmoFailure::new("create_lead", &error, now())),
            last_success_at: None,
        }));
        let r = assess(i, now());
        assert_eq!(codes(&r), vec!["amocrm_refuses_our_address"]);
        assert!(!r.reauthorization_required);
        assert!(!r.reasons[0].message.contains('\n'));
        assert!(
            r.reasons[0]
                .message
                .starts_with("amoCRM refuses our address since"),
            "{}",
            r.reasons[0].message
        );
        assert!(r.reasons[0].message.contains("AmoEgressIp"));
    }

    #[test]
    fn a_sync_without_maintenance_fields_asks_for_setup() {
        let mut i = healthy_inputs();
        i.last_sync = Some(Ok(Some(LastSync {
            finished_at: Some(now()),
            outcome: Some(RunOutcome::Complete),
            error: None,
            hint: None,
            fields_missing: true,
        })));
        let r = assess(i, now());
        assert_eq!(codes(&r), vec!["maintenance_fields_missing"]);
        assert!(
            r.reasons[0]
                .message
                .starts_with("maintenance fields missing: run rss-ops setup")
        );
    }

    #[test]
    fn a_token_incident_the_provider_reports_is_one_reason() {
        let mut t = token(TokenKind::Oauth, Duration::hours(-1));
        t.reauthorization_required = true;
        t.hint = Some("Re-authorize at /oauth/start".into());
        let error = CrmError::unauthorized("amoCRM needs re-authorization", "Re-authorize")
            .with_status(401);
        let mut i = healthy_inputs();
        i.token = Ok(t);
        i.calls = Some(Ok(AmoCalls {
            last_failure: Some(AmoFailure::new("create_lead", &error, now())),
            last_success_at: None,
        }));
        let r = assess(i, now());
        assert_eq!(codes(&r), vec!["reauthorization_required"]);
        assert!(!r.last_amocrm_error.unwrap().resolved);
    }

    #[test]
    fn a_transient_amocrm_error_alone_is_not_a_reason() {
        let error = CrmError::transient("amoCRM answered 503", "retried").with_status(503);
        let mut i = healthy_inputs();
        i.calls = Some(Ok(AmoCalls {
            last_failure: Some(AmoFailure::new("create_lead", &error, now())),
            last_success_at: None,
        }));
        let r = assess(i, now());
        assert!(r.healthy());
        assert_eq!(r.last_amocrm_error.unwrap().failure.status, Some(503));
    }

    #[test]
    fn parked_and_stale_work_failed_sync_and_unreadable_stores_are_reasons() {
        let mut i = healthy_inputs();
        i.leads = Ok(WorkCounts {
            pending_stale: 2,
            parked: 1,
        });
        i.events = Some(Err(StoreError::Unavailable("timeout".into())));
        i.last_sync = Some(Ok(Some(LastSync {
            finished_at: Some(now()),
            outcome: Some(RunOutcome::Failed),
            error: Some("amoCRM answered 400".into()),
            hint: Some("Fix AMOCRM_FIELD_MAINTENANCE_STATUS".into()),
            fields_missing: false,
        })));
        let r = assess(i, now());
        assert_eq!(
            codes(&r),
            vec![
                "parked_leads",
                "stale_pending_leads",
                "store_unavailable",
                "last_sync_failed"
            ]
        );
        assert_eq!(r.status, "unhealthy");
        assert!(
            r.reasons[1]
                .message
                .starts_with("2 lead(s) pending for more than 15")
        );
        assert_eq!(r.reasons[3].hint, "Fix AMOCRM_FIELD_MAINTENANCE_STATUS");
        assert!(r.events.is_none());
    }

    #[test]
    fn a_complete_sync_is_fine() {
        let mut i = healthy_inputs();
        i.last_sync = Some(Ok(Some(LastSync {
            finished_at: Some(now()),
            outcome: Some(RunOutcome::Complete),
            error: None,
            hint: None,
            fields_missing: false,
        })));
        assert!(assess(i, now()).healthy());
    }
}
