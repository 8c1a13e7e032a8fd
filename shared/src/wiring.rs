//! Builds each function's dependencies from `Config` once, at cold start. The same code wires
//! the Lambda binaries, the local stack and the end-to-end tests.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::amocrm::AmoClient;
use crate::amocrm::token::LongLivedToken;
use crate::api::LeadIngestApi;
use crate::api::http::Cors;
use crate::config::Config;
use crate::leads::accept::RepeatPolicy;
use crate::leads::deliver::MailSettings;
use crate::mail::SesNotifier;
use crate::ports::SecretStore;
use crate::secrets::{SecretsManagerStore, load_app_secrets};
use crate::store::DynamoLeadStore;
use crate::worker::CrmWorker;

pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// The AWS SDK configuration from the environment (endpoint overrides such as
/// `AWS_ENDPOINT_URL` are honoured, which is how local runs reach moto).
pub async fn aws_from_env() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The SDK clients a function needs, built once.
#[derive(Clone)]
pub struct Aws {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

fn amo_client(config: &Config, secrets: Arc<dyn SecretStore>) -> Result<AmoClient, InitError> {
    let tokens = Arc::new(LongLivedToken::new(secrets, config.token_secret_id.clone()));
    Ok(AmoClient::new(&config.amo, tokens)?)
}

/// lead-ingest: `POST /leads` and `GET /ingest/test-crm`.
pub async fn lead_ingest(config: &Config, aws: &Aws) -> Result<LeadIngestApi, InitError> {
    let secrets: Arc<dyn SecretStore> = Arc::new(SecretsManagerStore::new(aws.secrets.clone()));
    let app_secrets = load_app_secrets(secrets.as_ref(), &config.app_secret_id).await?;
    Ok(LeadIngestApi {
        store: Arc::new(DynamoLeadStore::new(aws.dynamodb.clone(), &config.leads_table)),
        probe: Arc::new(amo_client(config, secrets)?),
        admin_key: app_secrets.admin_key,
        cors: Cors {
            allowed_origins: config.cors_origins.clone(),
        },
        repeat: RepeatPolicy {
            body_window: chrono::Duration::seconds(config.dedup_window_secs),
            key_ttl: chrono::Duration::seconds(config.idempotency_ttl_secs),
        },
    })
}

/// crm-worker: delivers leads from the leads table's stream.
pub fn crm_worker(config: &Config, aws: &Aws) -> Result<CrmWorker, InitError> {
    let secrets: Arc<dyn SecretStore> = Arc::new(SecretsManagerStore::new(aws.secrets.clone()));
    Ok(CrmWorker {
        store: Arc::new(DynamoLeadStore::new(aws.dynamodb.clone(), &config.leads_table)),
        crm: Arc::new(amo_client(config, secrets)?),
        notifier: Arc::new(SesNotifier::new(aws.ses.clone(), &config.mail_from)),
        mail: MailSettings {
            sales_mailbox: config.sales_mailbox.clone(),
            amo_base_url: config.amo.base_url.clone(),
        },
    })
}
