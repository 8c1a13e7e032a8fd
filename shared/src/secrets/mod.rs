//! Secrets Manager adapter for the `SecretStore` port, and the app secrets loader.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use crate::ports::{AppSecrets, SecretError, SecretStore};

/// Secrets Manager through the AWS SDK (endpoint override honoured for moto).
#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn read(&self, secret_id: &str) -> Result<String, SecretError> {
        // Explicit AWSCURRENT: after a rotation, moto (and clients caching staging labels)
        // could otherwise serve the previous version.
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                id: secret_id.to_string(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        out.secret_string.ok_or_else(|| SecretError::Invalid {
            id: secret_id.to_string(),
            reason: "no SecretString".into(),
        })
    }

    async fn write(&self, secret_id: &str, value: &str) -> Result<(), SecretError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SecretError::Unavailable {
                id: secret_id.to_string(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })
    }
}

/// Reads the app secret JSON (`admin_key`, `webhook_token`, `telegram_bot_token`,
/// `amocrm_client_secret`). The error names the secret and the expected shape, never a value.
pub async fn load_app_secrets(
    store: &dyn SecretStore,
    secret_id: &str,
) -> Result<AppSecrets, SecretError> {
    let raw = store.read(secret_id).await?;
    serde_json::from_str(&raw).map_err(|_| SecretError::Invalid {
        id: secret_id.to_string(),
        reason: "expected JSON like {\"admin_key\":\"…\",\"webhook_token\":\"…\",\
                 \"telegram_bot_token\":\"…\",\"amocrm_client_secret\":\"…\"}"
            .into(),
    })
}

/// An in-memory `SecretStore` for unit tests and tools.
#[derive(Default)]
pub struct MemorySecrets {
    values: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl MemorySecrets {
    pub fn with(pairs: &[(&str, &str)]) -> Self {
        let s = Self::default();
        for (k, v) in pairs {
            s.values
                .lock()
                .unwrap()
                .insert(k.to_string(), v.to_string());
        }
        s
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn read(&self, secret_id: &str) -> Result<String, SecretError> {
        self.values
            .lock()
            .unwrap()
            .get(secret_id)
            .cloned()
            .ok_or_else(|| SecretError::Unavailable {
                id: secret_id.to_string(),
                reason: "not found".into(),
            })
    }

    async fn write(&self, secret_id: &str, value: &str) -> Result<(), SecretError> {
        self.values
            .lock()
            .unwrap()
            .insert(secret_id.to_string(), value.to_string());
        Ok(())
    }
}

/// Constant-time check of a presented secret against the expected one (an empty expected
/// secret matches nothing).
pub fn secret_matches(expected: Option<&str>, presented: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    match (expected, presented) {
        (Some(e), Some(p)) if !e.is_empty() => e.as_bytes().ct_eq(p.as_bytes()).into(),
        _ => false,
    }
}

/// How long a function trusts the app secret it read before reading it again.
pub const APP_SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// A credential that does not match is checked against a fresh read at most this often, so
/// a flood of wrong keys cannot turn into a flood of Secrets Manager reads.
pub const RECHECK_AFTER_MISS: std::time::Duration = std::time::Duration::from_secs(30);

/// The app secret as the functions use it: read at cold start, read again when older than
/// `APP_SECRET_TTL`, and once more when a presented credential does not match (at most every
/// `RECHECK_AFTER_MISS`). A rotated webhook token, bot token or admin key takes effect within
/// minutes on warm functions, at once when the new one is presented; a failed re-read keeps
/// the last good value.
pub struct AppSecretsSource {
    store: std::sync::Arc<dyn SecretStore>,
    secret_id: String,
    ttl: std::time::Duration,
    recheck: std::time::Duration,
    cached: tokio::sync::Mutex<Cached>,
}

struct Cached {
    value: std::sync::Arc<AppSecrets>,
    read_at: tokio::time::Instant,
    last_recheck: Option<tokio::time::Instant>,
}

impl AppSecretsSource {
    /// Reads the secret once: a missing or malformed app secret fails the cold start.
    pub async fn load(
        store: std::sync::Arc<dyn SecretStore>,
        secret_id: impl Into<String>,
    ) -> Result<Self, SecretError> {
        let secret_id = secret_id.into();
        let value = load_app_secrets(store.as_ref(), &secret_id).await?;
        Ok(Self::with_value(store, secret_id, value))
    }

    fn with_value(
        store: std::sync::Arc<dyn SecretStore>,
        secret_id: String,
        value: AppSecrets,
    ) -> Self {
        Self {
            store,
            secret_id,
            ttl: APP_SECRET_TTL,
            recheck: RECHECK_AFTER_MISS,
            cached: tokio::sync::Mutex::new(Cached {
                value: std::sync::Arc::new(value),
                read_at: tokio::time::Instant::now(),
                last_recheck: None,
            }),
        }
    }

    /// Fixed values that are never read again (tests, tools).
    pub fn fixed(value: AppSecrets) -> Self {
        let mut source = Self::with_value(
            std::sync::Arc::new(MemorySecrets::default()),
            String::new(),
            value,
        )
        .with_timing(std::time::Duration::MAX, std::time::Duration::MAX);
        source.cached.get_mut().last_recheck = Some(tokio::time::Instant::now());
        source
    }

    /// Other re-read intervals (tests).
    pub fn with_timing(mut self, ttl: std::time::Duration, recheck: std::time::Duration) -> Self {
        self.ttl = ttl;
        self.recheck = recheck;
        self
    }

    /// The secret, read again when it is older than the TTL.
    pub async fn current(&self) -> std::sync::Arc<AppSecrets> {
        let mut cached = self.cached.lock().await;
        if cached.read_at.elapsed() >= self.ttl {
            self.reread(&mut cached).await;
        }
        std::sync::Arc::clone(&cached.value)
    }

    /// Whether `presented` equals the credential `pick` takes from the secret; on a miss the
    /// secret is read again once (rate-limited) in case it was rotated.
    pub async fn accepts(
        &self,
        pick: impl Fn(&AppSecrets) -> Option<&str>,
        presented: Option<&str>,
    ) -> bool {
        let matches = |s: &AppSecrets| secret_matches(pick(s), presented);
        if matches(self.current().await.as_ref()) {
            return true;
        }
        if presented.is_none() {
            return false;
        }
        match self.after_miss().await {
            Some(fresh) => matches(fresh.as_ref()),
            None => false,
        }
    }

    /// After a credential did not match: the secret read again, unless it was re-read within
    /// `RECHECK_AFTER_MISS` (then `None`: nothing new to try).
    pub async fn after_miss(&self) -> Option<std::sync::Arc<AppSecrets>> {
        let mut cached = self.cached.lock().await;
        if cached
            .last_recheck
            .is_some_and(|at| at.elapsed() < self.recheck)
        {
            return None;
        }
        cached.last_recheck = Some(tokio::time::Instant::now());
        self.reread(&mut cached).await;
        Some(std::sync::Arc::clone(&cached.value))
    }

    async fn reread(&self, cached: &mut Cached) {
        match load_app_secrets(self.store.as_ref(), &self.secret_id).await {
            Ok(value) => {
                cached.value = std::sync::Arc::new(value);
                cached.read_at = tokio::time::Instant::now();
            }
            Err(e) => {
                // Keep serving the last good value; try again at the next use.
                tracing::warn!(error = %e, "app secret not re-read; the last value stays in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn app(token: &str) -> String {
        format!(r#"{{"admin_key":"adm","webhook_token":"{token}"}}"#)
    }

    async fn source(
        store: &Arc<MemorySecrets>,
        ttl: Duration,
        recheck: Duration,
    ) -> AppSecretsSource {
        AppSecretsSource::load(store.clone(), "app")
            .await
            .unwrap()
            .with_timing(ttl, recheck)
    }

    fn token(s: &AppSecrets) -> Option<&str> {
        s.webhook_token.as_deref()
    }

    #[tokio::test]
    async fn a_rotated_credential_is_accepted_at_once_and_the_old_one_refused_after_it() {
        let store = Arc::new(MemorySecrets::with(&[("app", &app("old"))]));
        let s = source(&store, Duration::from_secs(300), Duration::from_secs(30)).await;
        assert!(s.accepts(token, Some("old")).await);
        store.write("app", &app("new")).await.unwrap();
        // Within the TTL the old one still works until someone presents the new one...
        assert!(s.accepts(token, Some("old")).await);
        // ...whose miss reads the secret again.
        assert!(s.accepts(token, Some("new")).await);
        assert!(!s.accepts(token, Some("old")).await);
        assert!(!s.accepts(token, None).await);
    }

    #[tokio::test]
    async fn the_ttl_rereads_by_itself_and_misses_cannot_hammer_secrets_manager() {
        let store = Arc::new(MemorySecrets::with(&[("app", &app("old"))]));
        let s = source(&store, Duration::from_millis(50), Duration::from_secs(30)).await;
        store.write("app", &app("new")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            !s.accepts(token, Some("old")).await,
            "the TTL re-read the rotation"
        );
        // A wrong key forced one re-read; a second rotation is not seen by misses until the
        // recheck interval (or the TTL) passes.
        store.write("app", &app("newer")).await.unwrap();
        assert!(!s.accepts(token, Some("newer")).await);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            s.accepts(token, Some("newer")).await,
            "the next TTL re-read"
        );
    }

    #[tokio::test]
    async fn a_failed_reread_keeps_the_last_good_value() {
        let store = Arc::new(MemorySecrets::with(&[("app", &app("old"))]));
        let s = source(&store, Duration::from_millis(1), Duration::ZERO).await;
        store.write("app", "not json").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.accepts(token, Some("old")).await);
    }
}
