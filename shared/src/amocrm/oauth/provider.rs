//! `TokenProvider`: the `TokenSource` every function uses.
//!
//! The token secret's `kind` picks the mode. Long-lived: the token is served as is (expiry from
//! the JWT `exp`) and re-read after a 401. OAuth: the pair is refreshed when the access token has
//! less than `margin` left or amoCRM answered 401. Refresh tokens are single-use, so exactly one
//! refresher runs across all instances: it holds the state table's lease, re-reads the secret
//! (someone may have refreshed already), and stores the new pair before anyone uses it. Others
//! poll the secret until the new pair appears. A refusal from the token endpoint (4xx but 429)
//! is terminal: the health record says `reauthorization_required`, one alert mail goes out, and
//! calls fail fast until a code exchange (or a new pair in the secret) ends the incident.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep};
use tracing::{error, info, warn};
use ulid::Ulid;

use super::{ClientSecretSource, TokenEndpoint, TokenError, TokenPair, fingerprint};
use crate::amocrm::error::{CrmError, CrmErrorKind};
use crate::amocrm::token::TokenSource;
use crate::amocrm::token::{
    DEFAULT_CACHE_TTL, TokenKind, TokenSecret, long_lived_rejected, secret_error,
};
use crate::ports::TokenWorked;
use crate::ports::{CrmFailure, Notifier, SecretStore, StoreError, TokenState, TokenUpkeep};
use crate::store::{StateStore, TokenHealthRecord};

/// The state table lease that admits one refresher at a time.
pub const REFRESH_LEASE: &str = "amocrm-refresh";

/// How eagerly and how patiently the provider refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshTiming {
    /// Refresh when the access token has less than this left.
    pub margin: Duration,
    /// How long a refresher holds the lease at most (a crashed holder frees it by expiry).
    pub lease_ttl: Duration,
    /// How long a caller waits for another instance's refresh before giving up.
    pub wait_for_other: Duration,
    /// Between two looks at the secret while waiting.
    pub poll_every: Duration,
    /// How long a read secret is trusted before it is read again.
    pub cache_ttl: Duration,
    /// While re-authorization is required, how often the store is asked whether it is over.
    pub health_recheck: Duration,
}

impl Default for RefreshTiming {
    fn default() -> Self {
        RefreshTiming {
            margin: Duration::from_secs(5 * 60),
            lease_ttl: Duration::from_secs(30),
            wait_for_other: Duration::from_secs(25),
            poll_every: Duration::from_millis(500),
            cache_ttl: DEFAULT_CACHE_TTL,
            health_recheck: Duration::from_secs(60),
        }
    }
}

/// What refreshing an OAuth pair needs. Without it, an OAuth secret is a configuration error.
pub struct RefreshDeps {
    pub endpoint: TokenEndpoint,
    pub client_secret: ClientSecretSource,
    pub state: Arc<dyn StateStore>,
    pub notifier: Arc<dyn Notifier>,
    /// Who gets the re-authorization alert (`ALERT_MAILBOX`).
    pub alert_mailbox: String,
}

/// The token's state for a `/health` endpoint (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenHealth {
    pub kind: TokenKind,
    pub secret_id: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub reauthorization_required: bool,
    pub hint: Option<String>,
    /// When re-authorization became necessary.
    pub since: Option<DateTime<Utc>>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_authorized_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

struct Cached {
    secret: TokenSecret,
    read_at: Instant,
}

/// Re-authorization is required: calls fail with `error` until the store says otherwise.
struct Blocked {
    error: CrmError,
    checked_at: Instant,
}

#[derive(Default)]
struct Inner {
    cached: Option<Cached>,
    blocked: Option<Blocked>,
}

pub struct TokenProvider {
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    refresh: Option<RefreshDeps>,
    timing: RefreshTiming,
    /// Names this instance in lease owners (logs and the state table).
    instance: String,
    /// Single flight: one caller at a time reads, refreshes or waits; the others then find
    /// the result in the cache.
    inner: Mutex<Inner>,
}

impl TokenProvider {
    /// A provider that serves long-lived tokens only (an OAuth secret is refused).
    pub fn new(secrets: Arc<dyn SecretStore>, secret_id: impl Into<String>) -> Self {
        TokenProvider {
            secrets,
            secret_id: secret_id.into(),
            refresh: None,
            timing: RefreshTiming::default(),
            instance: Ulid::generate().to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Lets the provider refresh OAuth pairs.
    pub fn with_refresh(mut self, deps: RefreshDeps) -> Self {
        self.refresh = Some(deps);
        self
    }

    pub fn with_timing(mut self, timing: RefreshTiming) -> Self {
        self.timing = timing;
        self
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The token's health as the secret and the state table tell it, read fresh.
    pub async fn token_health(&self) -> Result<TokenHealth, CrmError> {
        let secret = self.read_secret().await?;
        let expires_at = secret.expires_at();
        let record = match &self.refresh {
            Some(r) => r.state.token_health().await.map_err(store_error)?,
            None => None,
        }
        .unwrap_or_default();
        let mut health = TokenHealth {
            kind: secret.kind,
            secret_id: self.secret_id.clone(),
            expires_at,
            reauthorization_required: false,
            hint: None,
            since: None,
            last_refresh_at: record.last_refresh_at,
            last_authorized_at: record.last_authorized_at,
            last_error: None,
        };
        match secret.kind {
            TokenKind::Oauth if incident_applies(&record, &secret) => {
                health.reauthorization_required = true;
                health.hint = record.hint;
                health.since = record.since;
                health.last_error = record.last_error;
            }
            TokenKind::Oauth => {}
            TokenKind::LongLived => {
                if expires_at.is_some_and(|e| e <= Utc::now()) {
                    let e = long_lived_rejected(&self.secret_id, expires_at);
                    health.reauthorization_required = true;
                    health.hint = Some(e.hint);
                    health.since = expires_at;
                }
            }
        }
        Ok(health)
    }

    async fn read_secret(&self) -> Result<TokenSecret, CrmError> {
        let raw = self
            .secrets
            .read(&self.secret_id)
            .await
            .map_err(|e| secret_error(&self.secret_id, e))?;
        TokenSecret::parse(&self.secret_id, &raw)
    }

    /// The cached secret, read again when older than the cache TTL.
    async fn current(&self, inner: &mut Inner) -> Result<TokenSecret, CrmError> {
        if let Some(c) = inner
            .cached
            .as_ref()
            .filter(|c| c.read_at.elapsed() < self.timing.cache_ttl)
        {
            return Ok(c.secret.clone());
        }
        let secret = self.read_secret().await?;
        remember(inner, &secret);
        Ok(secret)
    }

    fn needs_refresh(&self, secret: &TokenSecret) -> bool {
        secret.kind == TokenKind::Oauth
            && secret
                .expires_at()
                .is_some_and(|e| e - Utc::now() < chrono_duration(self.timing.margin))
    }

    /// A token someone else put in place of `stale` that can be used now.
    fn is_replacement(&self, secret: &TokenSecret, stale: &str) -> bool {
        secret.access_token != stale && !self.needs_refresh(secret)
    }

    /// Fails fast while re-authorization is required; asks the store again now and then.
    async fn check_blocked(&self, inner: &mut Inner) -> Result<(), CrmError> {
        let Some(blocked) = &inner.blocked else {
            return Ok(());
        };
        if blocked.checked_at.elapsed() < self.timing.health_recheck {
            return Err(blocked.error.clone());
        }
        let secret = self.read_secret().await?;
        remember(inner, &secret);
        if let Some(error) = self.incident(&secret).await? {
            inner.blocked = Some(Blocked {
                error: error.clone(),
                checked_at: Instant::now(),
            });
            return Err(error);
        }
        info!(secret_id = %self.secret_id, "amoCRM re-authorization done; token calls resume");
        inner.blocked = None;
        Ok(())
    }

    /// The fail-fast error when the stored health says re-authorization is required for
    /// the refresh token in `secret`.
    async fn incident(&self, secret: &TokenSecret) -> Result<Option<CrmError>, CrmError> {
        let Some(r) = &self.refresh else {
            return Ok(None);
        };
        if secret.kind != TokenKind::Oauth {
            return Ok(None);
        }
        let record = r.state.token_health().await.map_err(store_error)?;
        Ok(record
            .filter(|h| incident_applies(h, secret))
            .map(|h| blocked_error(&h)))
    }

    /// Refreshes (or picks up another instance's refresh of) the pair whose access token is
    /// `stale`. `forced`: amoCRM rejected `stale`, so it must not be served again.
    async fn refresh(
        &self,
        inner: &mut Inner,
        secret: &TokenSecret,
        forced: bool,
    ) -> Result<String, CrmError> {
        let stale = secret.access_token.clone();
        let result = self.refresh_or_wait(inner, secret).await;
        match result {
            Err(e) if e.is_retryable() && !forced && still_valid(secret) => {
                // The old token works for a few more minutes; the next call tries again.
                warn!(
                    secret_id = %self.secret_id, error = %e.message,
                    "amoCRM token refresh postponed; the current token is still valid"
                );
                Ok(stale)
            }
            other => other,
        }
    }

    async fn refresh_or_wait(
        &self,
        inner: &mut Inner,
        secret: &TokenSecret,
    ) -> Result<String, CrmError> {
        let Some(r) = &self.refresh else {
            return Err(no_refresh_configured(&self.secret_id));
        };
        if let Some(error) = self.incident(secret).await? {
            return Err(self.block(inner, error));
        }
        let stale = secret.access_token.as_str();
        let deadline = Instant::now() + self.timing.wait_for_other;
        loop {
            let owner = format!("{}/{}", self.instance, Ulid::generate());
            let now = Utc::now();
            let until = now + chrono_duration(self.timing.lease_ttl);
            let acquired = r
                .state
                .acquire_lease(REFRESH_LEASE, &owner, now, until)
                .await
                .map_err(store_error)?;
            if acquired {
                let result = self.refresh_holding_lease(r, inner, stale).await;
                if let Err(e) = r.state.release_lease(REFRESH_LEASE, &owner).await {
                    // It expires by itself within the lease TTL.
                    warn!(error = %e, "token refresh lease not released");
                }
                return result;
            }
            if Instant::now() >= deadline {
                return Err(CrmError::transient(
                    format!(
                        "another instance has been refreshing the amoCRM token for more than {} s",
                        self.timing.wait_for_other.as_secs()
                    ),
                    "The refresh lease in the state table is held by another function instance. \
                     It frees itself within 30 s if that instance died; retried automatically."
                        .to_string(),
                ));
            }
            sleep(self.timing.poll_every).await;
            let latest = self.read_secret().await?;
            remember(inner, &latest);
            if self.is_replacement(&latest, stale) {
                info!(secret_id = %self.secret_id, "amoCRM token refreshed by another instance");
                return Ok(latest.access_token);
            }
        }
    }

    async fn refresh_holding_lease(
        &self,
        r: &RefreshDeps,
        inner: &mut Inner,
        stale: &str,
    ) -> Result<String, CrmError> {
        // While we waited for the lease, another instance may have refreshed, or failed for good.
        let secret = self.read_secret().await?;
        remember(inner, &secret);
        if secret.kind == TokenKind::LongLived || self.is_replacement(&secret, stale) {
            return Ok(secret.access_token);
        }
        if let Some(error) = self.incident(&secret).await? {
            return Err(self.block(inner, error));
        }
        let refresh_token = secret.refresh_token.clone().ok_or_else(|| {
            CrmError::permanent(
                format!(
                    "amoCRM token secret {} is an OAuth pair without `refresh_token`",
                    self.secret_id
                ),
                format!(
                    "Re-authorize the integration (GET {}, header X-Admin-Key) so a complete \
                     pair is stored, or put a long-lived token into the secret.",
                    super::start_url(&r.endpoint.config().redirect_uri)
                ),
            )
        })?;
        let client_secret = r.client_secret.get().await?;
        let pair = match r.endpoint.refresh(&refresh_token, &client_secret).await {
            Ok(pair) => pair,
            Err(e) if e.no_answer => {
                // The answer may be lost after amoCRM issued a pair; amoCRM keeps the old
                // refresh token usable until the new one is used, so one retry is safe.
                warn!(error = %e.error.message, "amoCRM token refresh got no answer; retrying once with the same refresh token");
                match r.endpoint.refresh(&refresh_token, &client_secret).await {
                    Ok(pair) => pair,
                    Err(e) => return Err(self.refresh_failed(r, inner, e, &refresh_token).await),
                }
            }
            Err(e) => return Err(self.refresh_failed(r, inner, e, &refresh_token).await),
        };
        self.store_pair(&pair).await?;
        let refreshed = TokenSecret::parse(&self.secret_id, &pair.secret_json())?;
        remember(inner, &refreshed);
        info!(secret_id = %self.secret_id, expires_at = %pair.expires_at, "amoCRM token refreshed");
        crate::metrics::count(crate::metrics::Metric::TokenRefreshes);
        let recorded = r
            .state
            .record_token_working(TokenWorked::Refreshed, Utc::now())
            .await;
        if let Err(e) = recorded {
            warn!(error = %e, "token health not recorded after a refresh");
        }
        Ok(pair.access_token)
    }

    /// Writes the new pair to the secret before anything uses it: the old refresh token may
    /// already be spent, so an unsaved pair would be lost with this instance.
    async fn store_pair(&self, pair: &TokenPair) -> Result<(), CrmError> {
        let json = pair.secret_json();
        let mut last = None;
        for attempt in 1..=3u32 {
            match self.secrets.write(&self.secret_id, &json).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    warn!(attempt, error = %e, "new amoCRM token pair not stored yet");
                    last = Some(e);
                    sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        error!(secret_id = %self.secret_id, alert = true, "new amoCRM token pair could not be stored; it is not used");
        Err(CrmError::transient(
            format!(
                "the refreshed amoCRM token pair could not be stored in secret {}: {reason}",
                self.secret_id
            ),
            format!(
                "Check the function's permission secretsmanager:PutSecretValue on {}. The next \
                 call retries the refresh with the stored refresh token; if amoCRM answers \
                 \"Token has been revoked\", re-authorize the integration.",
                self.secret_id
            ),
        ))
    }

    /// Handles a failed refresh: terminal refusals start an incident (one alert mail).
    async fn refresh_failed(
        &self,
        r: &RefreshDeps,
        inner: &mut Inner,
        e: TokenError,
        refresh_token: &str,
    ) -> CrmError {
        crate::metrics::count(crate::metrics::Metric::TokenRefreshFailures);
        if !e.is_terminal() {
            warn!(error = %e.error.message, "amoCRM token refresh failed; will retry later");
            return e.error;
        }
        let start = super::start_url(&r.endpoint.config().redirect_uri);
        let previous = r
            .state
            .token_health()
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let record = TokenHealthRecord {
            reauthorization_required: true,
            hint: Some(format!(
                "{} To re-authorize: request GET {start} with the header X-Admin-Key (the \
                 app secret's admin_key) and open the returned Location in a browser signed in \
                 to amoCRM as an administrator, then allow access.",
                e.error.hint
            )),
            since: Some(Utc::now()),
            last_refresh_at: previous.last_refresh_at,
            last_authorized_at: previous.last_authorized_at,
            last_error: Some(e.error.message.clone()),
            refused_refresh_token: Some(fingerprint(refresh_token)),
        };
        error!(
            secret_id = %self.secret_id, alert = true, error = %e.error.message, hint = %e.error.hint,
            "amoCRM refused the token refresh; re-authorization required"
        );
        let newly = match r.state.mark_reauthorization_required(&record).await {
            Ok(newly) => newly,
            Err(err) => {
                warn!(error = %err, "re-authorization state not recorded");
                true
            }
        };
        if newly {
            self.send_alert(r, &record, &start).await;
        }
        self.block(inner, blocked_error(&record))
    }

    async fn send_alert(&self, r: &RefreshDeps, record: &TokenHealthRecord, start: &str) {
        let mail = super::reauthorization_mail(&r.alert_mailbox, record, start, &self.secret_id);
        for attempt in 1..=2 {
            match r.notifier.send(&mail).await {
                Ok(()) => {
                    info!("re-authorization alert mailed");
                    return;
                }
                Err(e) if e.is_transient() && attempt < 2 => {
                    sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    error!(alert = true, error = %e, "re-authorization alert could not be mailed");
                    return;
                }
            }
        }
    }

    fn block(&self, inner: &mut Inner, error: CrmError) -> CrmError {
        inner.blocked = Some(Blocked {
            error: error.clone(),
            checked_at: Instant::now(),
        });
        error
    }
}

#[async_trait]
impl TokenSource for TokenProvider {
    async fn bearer(&self) -> Result<String, CrmError> {
        let mut inner = self.inner.lock().await;
        self.check_blocked(&mut inner).await?;
        let secret = self.current(&mut inner).await?;
        if !self.needs_refresh(&secret) {
            return Ok(secret.access_token);
        }
        self.refresh(&mut inner, &secret, false).await
    }

    async fn after_unauthorized(&self, rejected: &str) -> Result<String, CrmError> {
        let mut inner = self.inner.lock().await;
        self.check_blocked(&mut inner).await?;
        // Another caller may already have replaced the rejected token.
        if let Some(c) = inner
            .cached
            .as_ref()
            .filter(|c| c.secret.access_token != rejected)
        {
            return Ok(c.secret.access_token.clone());
        }
        let secret = self.read_secret().await?;
        remember(&mut inner, &secret);
        if secret.access_token != rejected {
            info!(secret_id = %self.secret_id, "amoCRM token replaced in the secret; retrying with it");
            return Ok(secret.access_token);
        }
        match secret.kind {
            TokenKind::LongLived => Err(long_lived_rejected(&self.secret_id, secret.expires_at())),
            TokenKind::Oauth => self.refresh(&mut inner, &secret, true).await,
        }
    }
}

#[async_trait]
impl TokenUpkeep for TokenProvider {
    async fn refresh_expiring(&self, by: DateTime<Utc>) -> Result<TokenState, CrmFailure> {
        let mut inner = self.inner.lock().await;
        self.check_blocked(&mut inner).await?;
        // Read fresh: another instance may have refreshed since this one cached the secret.
        let secret = self.read_secret().await?;
        remember(&mut inner, &secret);
        let mut state = TokenState {
            kind: secret.kind,
            expires_at: secret.expires_at(),
            refreshed: false,
            postponed: None,
        };
        let expiring = state.expires_at.is_some_and(|e| e < by);
        if secret.kind == TokenKind::LongLived || !expiring {
            return Ok(state);
        }
        match self.refresh_or_wait(&mut inner, &secret).await {
            Ok(_) => {
                let now = inner.cached.as_ref().map(|c| &c.secret).unwrap_or(&secret);
                state.refreshed = now.access_token != secret.access_token;
                state.expires_at = now.expires_at();
            }
            Err(e) if e.is_retryable() && still_valid(&secret) => {
                warn!(
                    secret_id = %self.secret_id, error = %e.message,
                    "amoCRM token refresh ahead of expiry postponed; the current token is still valid"
                );
                state.postponed = Some(e.message);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(state)
    }

    fn secret_id(&self) -> &str {
        &self.secret_id
    }
}

fn remember(inner: &mut Inner, secret: &TokenSecret) {
    inner.cached = Some(Cached {
        secret: secret.clone(),
        read_at: Instant::now(),
    });
}

fn still_valid(secret: &TokenSecret) -> bool {
    secret.expires_at().is_none_or(|e| e > Utc::now())
}

/// Whether a recorded incident concerns the refresh token now in the secret.
fn incident_applies(record: &TokenHealthRecord, secret: &TokenSecret) -> bool {
    record.reauthorization_required
        && match (&record.refused_refresh_token, &secret.refresh_token) {
            (Some(refused), Some(current)) => *refused == fingerprint(current),
            _ => true,
        }
}

fn blocked_error(record: &TokenHealthRecord) -> CrmError {
    let since = record
        .since
        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    let cause = record
        .last_error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    CrmError::unauthorized(
        format!("amoCRM needs re-authorization of the integration{since}{cause}"),
        record.hint.clone().unwrap_or_else(|| {
            "Re-authorize the integration: GET /oauth/start with the header X-Admin-Key."
                .to_string()
        }),
    )
}

fn no_refresh_configured(secret_id: &str) -> CrmError {
    CrmError::permanent(
        format!(
            "amoCRM token secret {secret_id} holds an OAuth pair, but this function cannot \
             refresh it (no STATE_TABLE configured)"
        ),
        format!(
            "Set STATE_TABLE (the integration state table, needed for the refresh lease) for \
             this function, or put a long-lived token into secret {secret_id} as \
             {{\"kind\":\"long_lived\",\"access_token\":\"<token>\"}}."
        ),
    )
}

fn store_error(e: StoreError) -> CrmError {
    let kind = match e {
        StoreError::Unavailable(_) => CrmErrorKind::Transient,
        _ => CrmErrorKind::Permanent,
    };
    CrmError::new(
        kind,
        format!("integration state table: {e}"),
        "The token refresh coordinates through the state table (STATE_TABLE). Check that it \
         exists with key `pk` (S) and that the function may read and write it.",
    )
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
