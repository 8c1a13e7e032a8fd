//! amoCRM OAuth2: the token endpoint (code exchange and refresh), the authorize URL, the
//! redirect's `referer` check, and the token provider every function uses (`provider`).
//!
//! The client secret only ever goes to an amoCRM account domain (or the configured local
//! sandbox), never follows redirects, and never appears in an error or log.

mod alert;
mod provider;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::account_pacing::RequestPacing;
use super::error::{CrmError, NetworkFailure, Problem, oauth_error};
use super::token::TokenSecret;
use crate::config::{AmoConfig, OAuthConfig};
use crate::ports::{SecretError, SecretStore};

pub use alert::reauthorization_mail;
pub use provider::{REFRESH_LEASE, RefreshDeps, RefreshTiming, TokenHealth, TokenProvider};

/// The account domains amoCRM redirects from (`referer`): amoCRM Russia and Kommo.
pub const ACCOUNT_DOMAIN_SUFFIXES: [&str; 3] = [".amocrm.ru", ".kommo.com", ".amocrm.com"];

/// An access + refresh pair as amoCRM issued it. `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenPair {
    /// The token secret's JSON for this pair.
    pub fn secret_json(&self) -> String {
        TokenSecret::oauth_json(&self.access_token, &self.refresh_token, self.expires_at)
    }
}

/// Why amoCRM refused a token request, from its `hint` (or `title`/status when it gave none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The code's redirect URI differs from the integration's.
    CannotDecryptCode,
    CodeRevoked,
    CodeExpired,
    WrongClientId,
    /// Wrong client secret, or "Incorrect client" (401 without hint).
    WrongClientSecret,
    RedirectUriMismatch,
    InvalidAccount,
    RefreshTokenRevoked,
    RefreshTokenExpired,
    InvalidRefreshToken,
    Other,
}

impl Refusal {
    fn classify(status: u16, problem: Option<&Problem>) -> Refusal {
        let hint = problem
            .and_then(|p| p.hint.as_deref())
            .unwrap_or("")
            .to_ascii_lowercase();
        let title = problem.and_then(|p| p.title.as_deref()).unwrap_or("");
        let has = |s: &str| hint.contains(s);
        if has("cannot decrypt the authorization code") {
            Refusal::CannotDecryptCode
        } else if has("authorization code has been revoked") {
            Refusal::CodeRevoked
        } else if has("authorization code has expired") {
            Refusal::CodeExpired
        } else if has("client_id") {
            Refusal::WrongClientId
        } else if has("client_secret") {
            Refusal::WrongClientSecret
        } else if has("redirect uri is not associated") {
            Refusal::RedirectUriMismatch
        } else if has("invalid account") {
            Refusal::InvalidAccount
        } else if has("token has been revoked") {
            Refusal::RefreshTokenRevoked
        } else if has("token has expired") {
            Refusal::RefreshTokenExpired
        } else if has("invalid refresh token") {
            Refusal::InvalidRefreshToken
        } else if title.contains("Некорректный клиент") || (status == 401 && hint.is_empty())
        {
            Refusal::WrongClientSecret
        } else {
            Refusal::Other
        }
    }
}

/// A failed token request.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub error: CrmError,
    /// No answer arrived (timeout, broken connection): amoCRM may have spent the grant or not.
    pub no_answer: bool,
    /// Set for every 4xx except 403 and 429: terminal, someone must re-authorize.
    pub refusal: Option<Refusal>,
}

impl TokenError {
    pub fn is_terminal(&self) -> bool {
        self.refusal.is_some()
    }
}

impl From<TokenError> for CrmError {
    fn from(e: TokenError) -> Self {
        e.error
    }
}

/// `POST /oauth2/access_token` of an amoCRM account.
#[derive(Clone)]
pub struct TokenEndpoint {
    http: reqwest::Client,
    amo: Arc<AmoConfig>,
    /// `AMOCRM_OAUTH_BASE_URL` (local sandbox) instead of the account's domain.
    base_override: Option<String>,
    /// The token endpoint counts towards the integration's rate limit like the API.
    pacing: Option<Arc<dyn RequestPacing>>,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("base_override", &self.base_override)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    pub fn new(amo: &AmoConfig, oauth: &OAuthConfig) -> Result<Self, CrmError> {
        // A 307/308 would re-send the client secret to wherever it points.
        let http = super::client::http_client(amo.timeout_ms, reqwest::redirect::Policy::none())?;
        Ok(TokenEndpoint {
            http,
            amo: Arc::new(amo.clone()),
            base_override: oauth.token_base_url.clone(),
            pacing: None,
        })
    }

    /// Every token request waits for its turn at `pacing` (the account-wide limit).
    pub fn with_pacing(mut self, pacing: Arc<dyn RequestPacing>) -> Self {
        self.pacing = Some(pacing);
        self
    }

    pub fn config(&self) -> &AmoConfig {
        &self.amo
    }

    /// Exchanges an authorization code at the account that issued it (`account_host`, a
    /// checked `referer`).
    pub async fn exchange_code(
        &self,
        account_host: &str,
        code: &str,
        client_secret: &str,
    ) -> Result<TokenPair, TokenError> {
        let base = self.exchange_base(account_host);
        let body = json!({
            "client_id": self.amo.client_id,
            "client_secret": client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.amo.redirect_uri,
        });
        self.post(&base, &body, &[code, client_secret]).await
    }

    /// Where a code from `account_host` is exchanged: that account, or the local sandbox.
    pub fn exchange_base(&self, account_host: &str) -> String {
        match &self.base_override {
            Some(b) => b.clone(),
            None => format!("https://{account_host}"),
        }
    }

    /// Spends `refresh_token` for a new pair at the configured account.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client_secret: &str,
    ) -> Result<TokenPair, TokenError> {
        let base = self
            .base_override
            .clone()
            .unwrap_or_else(|| self.amo.base_url.clone());
        let body = json!({
            "client_id": self.amo.client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "redirect_uri": self.amo.redirect_uri,
        });
        self.post(&base, &body, &[refresh_token, client_secret])
            .await
    }

    async fn post(
        &self,
        base: &str,
        body: &Value,
        secrets: &[&str],
    ) -> Result<TokenPair, TokenError> {
        const ENDPOINT: &str = "POST /oauth2/access_token";
        let url = format!("{}/oauth2/access_token", base.trim_end_matches('/'));
        if let Some(pacing) = &self.pacing {
            pacing.wait_turn().await;
        }
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.network(&e, ENDPOINT)),
        };
        let status = resp.status().as_u16();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Err(self.network(&e, ENDPOINT)),
        };
        if !(200..300).contains(&status) {
            let problem = Problem::parse(&text);
            let mut error = oauth_error(status, &text, &self.amo);
            redact(&mut error, secrets);
            // 403 is amoCRM refusing our address (whitelist, ban), not the grant: the refresh
            // token is still good once the address is allowed.
            let terminal = (400..500).contains(&status) && !matches!(status, 403 | 429);
            return Err(TokenError {
                error,
                no_answer: false,
                refusal: terminal.then(|| Refusal::classify(status, problem.as_ref())),
            });
        }
        parse_pair(&text).ok_or_else(|| TokenError {
            error: CrmError::unexpected_response(
                ENDPOINT,
                "no access_token, refresh_token and expires_in",
            )
            .with_status(status),
            no_answer: false,
            refusal: None,
        })
    }

    fn network(&self, e: &reqwest::Error, endpoint: &str) -> TokenError {
        let failure = if e.is_timeout() {
            NetworkFailure::Timeout
        } else if e.is_connect() {
            NetworkFailure::Connect
        } else {
            NetworkFailure::Other
        };
        TokenError {
            error: CrmError::network(failure, endpoint, &self.amo),
            no_answer: true,
            refusal: None,
        }
    }
}

/// `{token_type, expires_in, access_token, refresh_token[, server_time]}`.
fn parse_pair(text: &str) -> Option<TokenPair> {
    let v: Value = serde_json::from_str(text).ok()?;
    let token = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
            .map(str::to_string)
    };
    let expires_in = v.get("expires_in").and_then(|n| {
        n.as_i64()
            .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
    })?;
    Some(TokenPair {
        access_token: token("access_token")?,
        refresh_token: token("refresh_token")?,
        expires_at: Utc::now() + chrono::Duration::seconds(expires_in.max(0)),
    })
}

/// Defence in depth: amoCRM's error text never gets to carry what we sent it.
fn redact(err: &mut CrmError, secrets: &[&str]) {
    for s in secrets.iter().filter(|s| s.len() >= 6) {
        err.message = err.message.replace(s, "<redacted>");
        err.hint = err.hint.replace(s, "<redacted>");
    }
}

/// The client secret, read from the app secret when needed so a corrected value is used
/// without a redeploy.
#[derive(Clone)]
pub struct ClientSecretSource {
    secrets: Arc<dyn SecretStore>,
    app_secret_id: String,
}

impl ClientSecretSource {
    pub fn new(secrets: Arc<dyn SecretStore>, app_secret_id: impl Into<String>) -> Self {
        Self {
            secrets,
            app_secret_id: app_secret_id.into(),
        }
    }

    pub async fn get(&self) -> Result<String, CrmError> {
        let id = &self.app_secret_id;
        let shape = "Put the integration's secret key (amoCRM → Settings → Integrations → this \
                     integration → Keys and scopes) into the app secret as \
                     `amocrm_client_secret`";
        let app = crate::secrets::load_app_secrets(self.secrets.as_ref(), id)
            .await
            .map_err(|e| match e {
                SecretError::Unavailable { reason, .. } => CrmError::transient(
                    format!("app secret {id} could not be read: {reason}"),
                    "Secrets Manager did not answer; retry later. If it persists, check the \
                     function's permission secretsmanager:GetSecretValue."
                        .to_string(),
                ),
                SecretError::Invalid { reason, .. } => CrmError::permanent(
                    format!("app secret {id} is missing or malformed: {reason}"),
                    format!("{shape} ({id}, APP_SECRET_ID)."),
                ),
            })?;
        app.amocrm_client_secret
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CrmError::permanent(
                    format!("app secret {id} has no `amocrm_client_secret`"),
                    format!("{shape} ({id}, APP_SECRET_ID)."),
                )
            })
    }
}

/// The account host of a redirect's `referer` (`<sub>.amocrm.ru`, `<sub>.kommo.com`,
/// `<sub>.amocrm.com`), lower-cased; `None` for anything else (ports, paths, other hosts).
pub fn account_host(referer: &str) -> Option<String> {
    let host = referer.trim().to_ascii_lowercase();
    let suffix = ACCOUNT_DOMAIN_SUFFIXES
        .iter()
        .find(|s| host.ends_with(*s))?;
    let sub = &host[..host.len() - suffix.len()];
    let valid = !sub.is_empty()
        && sub.len() <= 63
        && sub
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !sub.starts_with('-')
        && !sub.ends_with('-')
        && sub != "www";
    valid.then_some(host)
}

/// The subdomain part of a checked account host.
pub fn account_subdomain(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// amoCRM's consent page for this integration with `state`.
pub fn authorize_url(authorize_base: &str, client_id: &str, state: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("state", state)
        .append_pair("mode", "post_message")
        .finish();
    let sep = if authorize_base.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{authorize_base}{sep}{query}")
}

/// `GET /oauth/start` on the same host as the redirect URI (where operators re-authorize).
pub fn start_url(redirect_uri: &str) -> String {
    match reqwest::Url::parse(redirect_uri) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/oauth/start",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        _ => "https://api.td-rss.ru/oauth/start".to_string(),
    }
}

/// A short, one-way fingerprint of a token: tells two refresh tokens apart without storing one.
pub fn fingerprint(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}
