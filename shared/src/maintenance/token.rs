//! Step 0, token upkeep: the amoCRM token outlives the next run. An OAuth pair that expires
//! within `refresh_ahead` is refreshed now, by the schedule, instead of by a customer's lead
//! minutes before it expires (and a refusal is found and alerted by the schedule too). A
//! long-lived token cannot be refreshed: whoever looks after the integration is told by mail
//! 30, 7 and 1 days before it expires and once when it has expired, each notice once (a
//! marker in the state table), however many runs see it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tracing::{error, info, warn};

use super::report::TokenStats;
use super::step::{Budget, StepEnd, SyncError};
use super::token_notice::expiry_notice_mail;
use crate::ports::{Notifier, StateStore, TokenKind, TokenUpkeep};

/// Days before a long-lived token's expiry when a notice is mailed.
pub const NOTICE_DAYS: [i64; 3] = [30, 7, 1];
/// How long a notice marker is kept after the expiry it announced.
const NOTICE_KEPT_AFTER_EXPIRY: i64 = 90;

#[derive(Clone)]
pub struct TokenCare {
    pub tokens: Arc<dyn TokenUpkeep>,
    /// Where sent notices are remembered (the state table).
    pub notices: Arc<dyn StateStore>,
    pub notifier: Arc<dyn Notifier>,
    /// `ALERT_MAILBOX`.
    pub alert_mailbox: String,
    /// This deployment's `GET /oauth/start` (the notice offers the switch to OAuth).
    pub start_url: String,
    /// An OAuth pair expiring within this is refreshed (`TOKEN_REFRESH_AHEAD_MINS`).
    pub refresh_ahead: Duration,
}

impl TokenCare {
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        budget: &Budget,
        stats: &mut TokenStats,
    ) -> Result<StepEnd, SyncError> {
        if !budget.allows_request() {
            return Ok(StepEnd::OutOfTime);
        }
        let state = self
            .tokens
            .refresh_expiring(now + self.refresh_ahead)
            .await?;
        stats.kind = Some(state.kind);
        stats.expires_at = state.expires_at;
        stats.refreshed = state.refreshed;
        stats.postponed = state.postponed;
        if state.refreshed {
            info!(expires_at = ?state.expires_at, "amoCRM token refreshed ahead of expiry");
        }
        if state.kind == TokenKind::LongLived {
            if let Some(expires_at) = state.expires_at {
                crate::metrics::gauge(
                    crate::metrics::Metric::TokenDaysLeft,
                    days_left(now, expires_at) as f64,
                );
            }
            match state.expires_at {
                Some(expires_at) => self.notify_expiry(now, expires_at, stats).await?,
                None => warn!(
                    secret_id = self.tokens.secret_id(),
                    "the long-lived amoCRM token carries no expiry; no expiry notice can be sent"
                ),
            }
        }
        Ok(StepEnd::Done)
    }

    /// Mails the notice due for `expires_at` unless it went out before; a failed mail
    /// forgets its marker, so the next run sends it again.
    async fn notify_expiry(
        &self,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        stats: &mut TokenStats,
    ) -> Result<(), SyncError> {
        let Some(days) = notice_due(now, expires_at) else {
            return Ok(());
        };
        // The expiry identifies the token: a new token gets its own notices.
        let key = format!("token-expiry/{}/{days}", expires_at.timestamp());
        let keep_until = expires_at.max(now) + Duration::days(NOTICE_KEPT_AFTER_EXPIRY);
        if !self.notices.claim_notice(&key, keep_until).await? {
            return Ok(());
        }
        let mail = expiry_notice_mail(
            &self.alert_mailbox,
            expires_at,
            days_left(now, expires_at),
            self.tokens.secret_id(),
            &self.start_url,
        );
        if let Err(e) = self.notifier.send(&mail).await {
            error!(alert = true, error = %e, days, "the amoCRM token expiry notice could not be mailed");
            if let Err(release) = self.notices.release_notice(&key).await {
                warn!(error = %release, "the expiry notice marker stays; this notice is lost");
            }
            return Err(SyncError::Notify(e));
        }
        warn!(days, %expires_at, "amoCRM long-lived token expiry notice mailed");
        stats.notice_days = Some(days);
        Ok(())
    }
}

/// The notice due at `now` for a token expiring at `expires_at`: the nearest of
/// `NOTICE_DAYS` already reached, 0 once expired, none while more than 30 days are left.
pub fn notice_due(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Option<i64> {
    if expires_at <= now {
        return Some(0);
    }
    let left = expires_at - now;
    NOTICE_DAYS
        .iter()
        .rev()
        .copied()
        .find(|days| left <= Duration::days(*days))
}

/// Whole days left, rounded up (0 once expired): what the notice tells its reader.
fn days_left(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> i64 {
    let secs = (expires_at - now).num_seconds().max(0) as u64;
    secs.div_ceil(86_400) as i64
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ports::CrmFailure;
    use crate::ports::{MailMessage, NotifyError, TokenState};
    use crate::store::MemoryStateStore;

    struct LongLived(DateTime<Utc>);

    #[async_trait]
    impl TokenUpkeep for LongLived {
        async fn refresh_expiring(&self, _by: DateTime<Utc>) -> Result<TokenState, CrmFailure> {
            Ok(TokenState {
                kind: TokenKind::LongLived,
                expires_at: Some(self.0),
                refreshed: false,
                postponed: None,
            })
        }

        fn secret_id(&self) -> &str {
            "rss/amocrm-token"
        }
    }

    /// SES that refuses the first `failures` mails, then records them.
    #[derive(Default)]
    struct FlakyMail {
        failures: AtomicUsize,
        sent: Mutex<Vec<MailMessage>>,
    }

    #[async_trait]
    impl Notifier for FlakyMail {
        async fn send(&self, mail: &MailMessage) -> Result<(), NotifyError> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(NotifyError::Unavailable("Throttling".into()));
            }
            self.sent.lock().unwrap().push(mail.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_notice_whose_mail_failed_goes_out_on_the_next_run() {
        let now = at(0.0);
        let mail = Arc::new(FlakyMail {
            failures: AtomicUsize::new(1),
            ..FlakyMail::default()
        });
        let care = TokenCare {
            tokens: Arc::new(LongLived(at(5.0))),
            notices: Arc::new(MemoryStateStore::default()),
            notifier: mail.clone(),
            alert_mailbox: "ops@td-rss.ru".into(),
            start_url: "https://api.td-rss.ru/oauth/start".into(),
            refresh_ahead: Duration::hours(2),
        };
        let budget = Budget::from_fn(|| std::time::Duration::from_secs(60));
        let mut stats = TokenStats::default();
        let first = care.run(now, &budget, &mut stats).await;
        assert!(matches!(first, Err(SyncError::Notify(_))), "{first:?}");
        assert_eq!(stats.notice_days, None);

        let mut stats = TokenStats::default();
        care.run(now, &budget, &mut stats).await.unwrap();
        assert_eq!(stats.notice_days, Some(7));
        let mut stats = TokenStats::default();
        care.run(now, &budget, &mut stats).await.unwrap();
        assert_eq!(stats.notice_days, None, "sent once");

        let sent = mail.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, ["ops@td-rss.ru"]);
        assert!(
            sent[0].subject.contains("через 5 дней"),
            "{}",
            sent[0].subject
        );
    }

    fn at(days: f64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds((days * 86_400.0) as i64)
    }

    #[test]
    fn the_nearest_threshold_reached_is_due() {
        let expiry = at(100.0);
        let due = |now: f64| notice_due(at(now), expiry);
        assert_eq!(due(0.0), None, "100 days left");
        assert_eq!(due(69.9), None, "30.1 days left");
        assert_eq!(due(70.0), Some(30));
        assert_eq!(due(80.0), Some(30), "20 days left");
        assert_eq!(due(93.0), Some(7));
        assert_eq!(due(98.5), Some(7), "a day and a half left");
        assert_eq!(due(99.0), Some(1));
        assert_eq!(due(100.0), Some(0));
        assert_eq!(due(130.0), Some(0));
    }
}
