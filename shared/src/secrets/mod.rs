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
