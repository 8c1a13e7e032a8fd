//! Where the amoCRM bearer token comes from, and the token secret's format.
//!
//! The secret (Secrets Manager, `AMOCRM_TOKEN_SECRET_ID`) holds either a long-lived token
//! (private integration, valid up to 5 years, no refresh token) as
//! `{"kind":"long_lived","access_token":"…"}`, or an OAuth pair as
//! `{"kind":"oauth","access_token":"…","refresh_token":"…","expires_at":<unix seconds>}`.
//! `LongLivedToken` serves only the first; `oauth::TokenProvider` serves both and refreshes
//! the pair.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::CrmError;
use crate::ports::{SecretError, SecretStore};

/// How long a read token is trusted before the secret is read again, so an operator's
/// replacement is picked up without a redeploy.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

const EXPECTED_SHAPE: &str = r#"{"kind":"long_lived","access_token":"<token>"}"#;

pub use crate::ports::TokenKind;

/// Where the amoCRM bearer token comes from (long-lived now, OAuth refresh later).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token to use now.
    async fn bearer(&self) -> Result<String, CrmError>;
    /// amoCRM answered 401 to `rejected`: return a fresh token to retry once, or the error to report.
    async fn after_unauthorized(&self, rejected: &str) -> Result<String, CrmError>;
}

/// The token secret's JSON. `kind` defaults to `long_lived` (a bare `{"access_token"}`).
#[derive(Clone, Deserialize)]
pub struct TokenSecret {
    #[serde(default = "default_kind")]
    pub kind: TokenKind,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds (as written by the OAuth flow) or RFC 3339 text.
    #[serde(default, deserialize_with = "unix_or_rfc3339")]
    pub expires_at: Option<DateTime<Utc>>,
}

fn unix_or_rfc3339<'de, D>(d: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .map(Some)
            .ok_or_else(|| D::Error::custom("`expires_at` is not a valid unix time")),
        Some(serde_json::Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| D::Error::custom("`expires_at` is neither unix seconds nor RFC 3339")),
        Some(_) => Err(D::Error::custom(
            "`expires_at` is neither unix seconds nor RFC 3339",
        )),
    }
}

fn default_kind() -> TokenKind {
    TokenKind::LongLived
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecret")
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenSecret {
    /// Parses the secret's text; the error names the secret and the expected shape, never the value.
    pub fn parse(secret_id: &str, raw: &str) -> Result<Self, CrmError> {
        let malformed = |why: &str| {
            CrmError::permanent(
                format!("amoCRM token secret {secret_id} is malformed: {why}"),
                format!(
                    "Put the amoCRM token into secret {secret_id} as JSON: {EXPECTED_SHAPE} \
                     (generate a long-lived token in amoCRM → Settings → Integrations → this \
                     integration → Keys and scopes)."
                ),
            )
        };
        let parsed: TokenSecret = serde_json::from_str(raw).map_err(|e| {
            // serde's message quotes at most a type and a column, never the input.
            malformed(&format!("not the expected JSON ({})", e.classify_name()))
        })?;
        let token = parsed.access_token.trim();
        if token.is_empty() {
            return Err(malformed("`access_token` is empty"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed("`access_token` contains spaces or line breaks"));
        }
        Ok(TokenSecret {
            access_token: token.to_string(),
            ..parsed
        })
    }

    /// When the access token expires: `expires_at` if stored, else the JWT's `exp`.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at.or_else(|| jwt_expiry(&self.access_token))
    }

    /// The secret text for an OAuth pair, as the OAuth flow and the refresher store it.
    pub fn oauth_json(
        access_token: &str,
        refresh_token: &str,
        expires_at: DateTime<Utc>,
    ) -> String {
        serde_json::json!({
            "kind": "oauth",
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": expires_at.timestamp(),
        })
        .to_string()
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        use serde_json::error::Category;
        match self.classify() {
            Category::Io => "read error",
            Category::Syntax => "invalid JSON",
            Category::Data => {
                "missing or non-string `access_token`, unknown `kind` or bad `expires_at`"
            }
            Category::Eof => "truncated JSON",
        }
    }
}

/// The `exp` claim of a JWT (amoCRM access and long-lived tokens are RS256 JWTs).
/// The signature is not checked: this only tells operators when the token runs out.
pub fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = match claims.get("exp")? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(exp, 0)
}

/// What health reporting may show about the token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub secret_id: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    /// Days left until expiry (negative when expired), if the expiry is known.
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.expires_at.map(|e| (e - now).num_days())
    }
}

struct Cached {
    secret: TokenSecret,
    read_at: Instant,
}

/// A long-lived token read from a secret, cached for `DEFAULT_CACHE_TTL`.
pub struct LongLivedToken {
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    cache_ttl: Duration,
    cache: Mutex<Option<Cached>>,
}

impl LongLivedToken {
    pub fn new(secrets: Arc<dyn SecretStore>, secret_id: String) -> Self {
        LongLivedToken {
            secrets,
            secret_id,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache: Mutex::new(None),
        }
    }

    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// Kind and expiry of the current token, for health reporting.
    pub async fn info(&self) -> Result<TokenInfo, CrmError> {
        let secret = self.current().await?;
        Ok(TokenInfo {
            kind: secret.kind,
            secret_id: self.secret_id.clone(),
            expires_at: secret.expires_at(),
        })
    }

    /// The cached secret, re-read when older than the TTL.
    async fn current(&self) -> Result<TokenSecret, CrmError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache
            .as_ref()
            .filter(|c| c.read_at.elapsed() < self.cache_ttl)
        {
            return Ok(c.secret.clone());
        }
        let secret = self.read_secret().await?;
        *cache = Some(Cached {
            secret: secret.clone(),
            read_at: Instant::now(),
        });
        Ok(secret)
    }

    async fn read_secret(&self) -> Result<TokenSecret, CrmError> {
        let raw = self
            .secrets
            .read(&self.secret_id)
            .await
            .map_err(|e| secret_error(&self.secret_id, e))?;
        let secret = TokenSecret::parse(&self.secret_id, &raw)?;
        if secret.kind != TokenKind::LongLived {
            return Err(CrmError::permanent(
                format!(
                    "amoCRM token secret {} holds an OAuth token pair, which this deployment does \
                     not refresh",
                    self.secret_id
                ),
                format!(
                    "Store a long-lived token instead: {EXPECTED_SHAPE} in secret {}.",
                    self.secret_id
                ),
            ));
        }
        Ok(secret)
    }
}

/// amoCRM answered 401 to the long-lived token in `secret_id`, and the secret holds no other.
pub(crate) fn long_lived_rejected(secret_id: &str, expires_at: Option<DateTime<Utc>>) -> CrmError {
    CrmError::unauthorized(
        format!("amoCRM rejected the long-lived token (401) and secret {secret_id} holds no other"),
        long_lived_rejected_hint(secret_id, expires_at),
    )
    .with_status(401)
}

/// What to do when amoCRM rejects the long-lived token in `secret_id` (expiring at `expires_at`).
fn long_lived_rejected_hint(secret_id: &str, expires_at: Option<DateTime<Utc>>) -> String {
    let expiry = match expires_at {
        Some(e) if e <= Utc::now() => {
            format!("It expired on {}. ", e.format("%Y-%m-%d %H:%M UTC"))
        }
        Some(e) => format!(
            "It is not expired (valid until {}), so it was revoked or the integration was \
             disabled. ",
            e.format("%Y-%m-%d")
        ),
        None => String::new(),
    };
    format!(
        "amoCRM rejected the long-lived token from secret {id} with 401. {expiry}Generate a \
         new long-lived token in amoCRM → Settings → Integrations → this integration → Keys \
         and scopes → \"Generate long-lived token\" and put it into secret {id} as \
         {EXPECTED_SHAPE}; it is picked up within 5 minutes or on the next 401. \
         Alternatively re-authorize OAuth at the redirect URI \
         https://api.td-rss.ru/webhook/amocrm.",
        id = secret_id
    )
}

pub(crate) fn secret_error(secret_id: &str, e: SecretError) -> CrmError {
    match e {
        SecretError::Unavailable { reason, .. } => CrmError::transient(
            format!("amoCRM token secret {secret_id} could not be read: {reason}"),
            "Secrets Manager did not answer; retried automatically. If it persists, check the \
             function's IAM permission secretsmanager:GetSecretValue and its network."
                .to_string(),
        ),
        SecretError::Invalid { reason, .. } => CrmError::permanent(
            format!("amoCRM token secret {secret_id} is missing or malformed: {reason}"),
            format!(
                "Create secret {secret_id} (AMOCRM_TOKEN_SECRET_ID) with the JSON \
                 {EXPECTED_SHAPE}."
            ),
        ),
    }
}

#[async_trait]
impl TokenSource for LongLivedToken {
    async fn bearer(&self) -> Result<String, CrmError> {
        Ok(self.current().await?.access_token)
    }

    async fn after_unauthorized(&self, rejected: &str) -> Result<String, CrmError> {
        let mut cache = self.cache.lock().await;
        // Another request may already have picked up the replacement.
        if let Some(c) = cache.as_ref().filter(|c| c.secret.access_token != rejected) {
            return Ok(c.secret.access_token.clone());
        }
        let fresh = self.read_secret().await?;
        *cache = Some(Cached {
            secret: fresh.clone(),
            read_at: Instant::now(),
        });
        if fresh.access_token != rejected {
            tracing::info!(secret_id = %self.secret_id, "amoCRM token replaced in the secret; retrying with it");
            return Ok(fresh.access_token);
        }
        Err(long_lived_rejected(&self.secret_id, fresh.expires_at()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::amocrm::CrmErrorKind;
    use crate::amocrm::testkit::{MemorySecrets, fake_jwt};

    #[test]
    fn jwt_expiry_reads_exp_without_checking_the_signature() {
        let token = fake_jwt(1_928_361_600); // 2031-02-09 00:00:00 UTC
        assert_eq!(
            jwt_expiry(&token),
            Some(Utc.with_ymd_and_hms(2031, 2, 9, 0, 0, 0).unwrap())
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
        let no_exp = format!("h.{}.s", URL_SAFE_NO_PAD.encode(br#"{"sub":"1"}"#));
        assert_eq!(jwt_expiry(&no_exp), None);
        // Padded base64url is tolerated too.
        let padded = format!("h.{}=.s", URL_SAFE_NO_PAD.encode(br#"{"exp":60}"#));
        assert_eq!(jwt_expiry(&padded), DateTime::from_timestamp(60, 0));
    }

    #[test]
    fn secret_shapes() {
        let s =
            TokenSecret::parse("tok", r#"{"kind":"long_lived","access_token":" abc "}"#).unwrap();
        assert_eq!(
            (s.kind, s.access_token.as_str()),
            (TokenKind::LongLived, "abc")
        );
        let bare = TokenSecret::parse("tok", r#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(bare.kind, TokenKind::LongLived);
        let oauth = TokenSecret::parse(
            "tok",
            r#"{"kind":"oauth","access_token":"a","refresh_token":"r","expires_at":"2026-02-10T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(oauth.kind, TokenKind::Oauth);
        assert_eq!(
            oauth.expires_at(),
            Some(Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap())
        );
        // The OAuth flow writes unix seconds; both spellings mean the same instant.
        let expires = Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap();
        let written = TokenSecret::oauth_json("a", "r", expires);
        let v: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind":"oauth","access_token":"a","refresh_token":"r","expires_at":1_770_681_600})
        );
        let reread = TokenSecret::parse("tok", &written).unwrap();
        assert_eq!(reread.expires_at(), Some(expires));
        assert_eq!(reread.refresh_token.as_deref(), Some("r"));
        let bad = TokenSecret::parse(
            "tok",
            r#"{"kind":"oauth","access_token":"a","expires_at":"tomorrow"}"#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn malformed_secret_names_the_secret_and_shape_but_never_the_value() {
        for raw in [
            "supersecretvalue",
            r#"{"token":"supersecretvalue"}"#,
            r#"{"access_token":""}"#,
            r#"{"kind":"weird","access_token":"supersecretvalue"}"#,
            "{\"access_token\":\"supersecret\\nvalue\"}",
        ] {
            let e = TokenSecret::parse("prod/amocrm-token", raw).unwrap_err();
            assert_eq!(e.kind, CrmErrorKind::Permanent, "{raw}");
            assert!(e.message.contains("prod/amocrm-token"));
            assert!(e.hint.contains(r#""kind":"long_lived","access_token""#));
            assert!(
                !e.message.contains("supersecret") && !e.hint.contains("supersecret"),
                "{e:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_cached_and_reread_after_five_minutes() {
        let secrets = MemorySecrets::with("tok", r#"{"kind":"long_lived","access_token":"one"}"#);
        let source = LongLivedToken::new(secrets.clone(), "tok".into());
        assert_eq!(source.bearer().await.unwrap(), "one");
        secrets.put("tok", r#"{"access_token":"two"}"#);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(source.bearer().await.unwrap(), "one");
        assert_eq!(secrets.reads(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(source.bearer().await.unwrap(), "two");
        assert_eq!(secrets.reads(), 2);
    }

    #[tokio::test]
    async fn after_401_a_replaced_token_is_picked_up_at_once() {
        let secrets = MemorySecrets::with("tok", r#"{"access_token":"old"}"#);
        let source = LongLivedToken::new(secrets.clone(), "tok".into());
        assert_eq!(source.bearer().await.unwrap(), "old");
        secrets.put("tok", r#"{"access_token":"new"}"#);
        assert_eq!(source.after_unauthorized("old").await.unwrap(), "new");
        assert_eq!(source.bearer().await.unwrap(), "new");
        // A second request rejected with the old token does not re-read the secret.
        let reads = secrets.reads();
        assert_eq!(source.after_unauthorized("old").await.unwrap(), "new");
        assert_eq!(secrets.reads(), reads);
    }

    #[tokio::test]
    async fn after_401_with_the_same_token_the_operator_is_told_what_to_do() {
        let token = fake_jwt(1_600_000_000); // 2020: expired
        let secrets = MemorySecrets::with(
            "prod/amocrm-token",
            &format!(r#"{{"access_token":"{token}"}}"#),
        );
        let source = LongLivedToken::new(secrets.clone(), "prod/amocrm-token".into());
        let t = source.bearer().await.unwrap();
        let e = source.after_unauthorized(&t).await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Unauthorized);
        assert_eq!(secrets.reads(), 2, "the secret is re-read once");
        assert!(e.hint.contains("expired on 2020-09-13"), "{}", e.hint);
        assert!(e.hint.contains("Keys and scopes"));
        assert!(e.hint.contains("prod/amocrm-token"));
        assert!(!e.hint.contains(&token) && !e.message.contains(&token));
    }

    #[tokio::test]
    async fn missing_secret_is_permanent_and_unreachable_store_is_transient() {
        let secrets = std::sync::Arc::new(MemorySecrets::default());
        let source = LongLivedToken::new(secrets.clone(), "absent".into());
        let e = source.bearer().await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
        assert!(e.hint.contains("absent") && e.hint.contains("access_token"));

        secrets.fail_with_unavailable(true);
        let e = source.bearer().await.unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Transient);
    }

    #[tokio::test]
    async fn info_reports_kind_and_expiry_without_the_token() {
        let token = fake_jwt(1_928_361_600);
        let secrets = MemorySecrets::with(
            "tok",
            &format!(r#"{{"kind":"long_lived","access_token":"{token}"}}"#),
        );
        let info = LongLivedToken::new(secrets, "tok".into())
            .info()
            .await
            .unwrap();
        assert_eq!(info.kind, TokenKind::LongLived);
        assert_eq!(
            info.expires_at,
            Some(Utc.with_ymd_and_hms(2031, 2, 9, 0, 0, 0).unwrap())
        );
        let now = Utc.with_ymd_and_hms(2031, 2, 1, 0, 0, 0).unwrap();
        assert_eq!(info.days_left(now), Some(8));
        assert!(!serde_json::to_string(&info).unwrap().contains(&token));
    }

    #[tokio::test]
    async fn an_oauth_secret_is_refused_with_a_clear_error() {
        let secrets = MemorySecrets::with(
            "tok",
            r#"{"kind":"oauth","access_token":"a","refresh_token":"r"}"#,
        );
        let e = LongLivedToken::new(secrets, "tok".into())
            .bearer()
            .await
            .unwrap_err();
        assert_eq!(e.kind, CrmErrorKind::Permanent);
        assert!(e.message.contains("OAuth"));
    }
}
