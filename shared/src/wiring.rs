//! Builds each function's dependencies from `Config` once, at cold start. The same code wires
//! the Lambda binaries, the local stack and the end-to-end tests.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::amocrm::maintenance::AmoMaintenance;
use crate::amocrm::token::LongLivedToken;
use crate::amocrm::{AmoClient, Pacer};
use crate::api::LeadIngestApi;
use crate::api::http::Cors;
use crate::api::passport::PassportApi;
use crate::api::webhook::WebhookReceiver;
use crate::config::Config;
use crate::leads::accept::RepeatPolicy;
use crate::leads::deliver::MailSettings;
use crate::mail::SesNotifier;
use crate::maintenance::fields::{MaintenanceFieldIds, MaintenanceFields};
use crate::maintenance::{MaintenanceSync, SyncSettings};
use crate::passport::MaintenancePolicy;
use crate::passport::events::{EventProcessor, MaintenanceHook};
use crate::passport::register::PassportFields;
use crate::ports::{AppSecrets, SecretStore};
use crate::secrets::{SecretsManagerStore, load_app_secrets};
use crate::store::{DynamoInboxStore, DynamoLeadStore, DynamoPassportStore, DynamoSyncState};
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

    fn secret_store(&self) -> Arc<dyn SecretStore> {
        Arc::new(SecretsManagerStore::new(self.secrets.clone()))
    }
}

fn amo_client(config: &Config, secrets: Arc<dyn SecretStore>) -> Result<AmoClient, InitError> {
    let tokens = Arc::new(LongLivedToken::new(secrets, config.token_secret_id.clone()));
    Ok(AmoClient::new(&config.amo, tokens)?)
}

fn repeat_policy(config: &Config) -> RepeatPolicy {
    RepeatPolicy {
        body_window: chrono::Duration::seconds(config.dedup_window_secs),
        key_ttl: chrono::Duration::seconds(config.idempotency_ttl_secs),
    }
}

async fn app_secrets(config: &Config, aws: &Aws) -> Result<AppSecrets, InitError> {
    Ok(load_app_secrets(aws.secret_store().as_ref(), &config.app_secret_id).await?)
}

/// lead-ingest: `POST /leads` and `GET /ingest/test-crm`.
pub async fn lead_ingest(config: &Config, aws: &Aws) -> Result<LeadIngestApi, InitError> {
    let secrets = app_secrets(config, aws).await?;
    Ok(LeadIngestApi {
        store: Arc::new(DynamoLeadStore::new(
            aws.dynamodb.clone(),
            &config.leads_table,
        )),
        probe: Arc::new(amo_client(config, aws.secret_store())?),
        admin_key: secrets.admin_key,
        cors: Cors {
            allowed_origins: config.cors_origins.clone(),
        },
        repeat: repeat_policy(config),
    })
}

fn maintenance_policy(config: &Config) -> Result<MaintenancePolicy, crate::config::ConfigError> {
    MaintenancePolicy::parse(
        config.maintenance_default_months,
        &config.maintenance_model_months,
    )
    .map_err(|reason| crate::config::ConfigError {
        var: "MAINTENANCE_MODEL_MONTHS".into(),
        reason,
    })
}

fn maintenance_fields(config: &Config, ids: MaintenanceFieldIds) -> MaintenanceFields {
    MaintenanceFields {
        ids,
        zone: config.sync.zone,
        serial_field: config.amo.field_serial,
        telegram_id_field: config.amo.field_telegram_id,
    }
}

/// crm-worker: delivers leads and applies webhooks from the tables' streams.
pub fn crm_worker(config: &Config, aws: &Aws) -> Result<CrmWorker, InitError> {
    let amo = Arc::new(amo_client(config, aws.secret_store())?);
    crm_worker_with(config, aws, amo)
}

/// The worker around a given amoCRM client (maintenance-sync shares its client and pacer).
fn crm_worker_with(
    config: &Config,
    aws: &Aws,
    amo: Arc<AmoClient>,
) -> Result<CrmWorker, InitError> {
    let events = match (&config.inbox_table, &config.passport_table) {
        (Some(inbox), Some(passport)) => Some(Arc::new(EventProcessor {
            inbox: Arc::new(DynamoInboxStore::new(aws.dynamodb.clone(), inbox)),
            crm: amo.clone(),
            passport: Arc::new(DynamoPassportStore::new(aws.dynamodb.clone(), passport)),
            policy: maintenance_policy(config)?,
            fields: PassportFields {
                serial: config.amo.field_serial,
                model: config.amo.field_model,
                telegram_id: config.amo.field_telegram_id,
            },
            maintenance: config.sync.field_ids().map(|ids| MaintenanceHook {
                fields: maintenance_fields(config, ids),
                pipelines: config.sync.pipelines.clone(),
            }),
        })),
        _ => None,
    };
    Ok(CrmWorker {
        store: Arc::new(DynamoLeadStore::new(
            aws.dynamodb.clone(),
            &config.leads_table,
        )),
        crm: amo,
        notifier: Arc::new(SesNotifier::new(aws.ses.clone(), &config.mail_from)),
        mail: MailSettings {
            sales_mailbox: config.sales_mailbox.clone(),
            amo_base_url: config.amo.base_url.clone(),
        },
        events,
    })
}

/// Extra spacing between the sync's requests: it sends hundreds in a row at the limit, and
/// amoCRM counts arrivals, which jitter (7 per second becomes about 6.3).
const SYNC_PACING_MARGIN: std::time::Duration = std::time::Duration::from_millis(15);

/// maintenance-sync: the scheduled two-way maintenance sync, reminders and re-drive. One amoCRM
/// client (one pacer) serves every step, the re-drive included.
pub fn maintenance_sync(config: &Config, aws: &Aws) -> Result<MaintenanceSync, InitError> {
    let ids = config.sync.require_field_ids()?;
    let passport = Config::require(&config.passport_table, "PASSPORT_TABLE")?;
    let state = Config::require(&config.state_table, "STATE_TABLE")?;
    let pacer = Pacer::with_margin(config.amo.requests_per_second, SYNC_PACING_MARGIN);
    let amo = Arc::new(amo_client(config, aws.secret_store())?.with_pacer(Arc::new(pacer)));
    let worker = crm_worker_with(config, aws, amo.clone())?;
    Ok(MaintenanceSync {
        crm: Arc::new(AmoMaintenance {
            client: amo.as_ref().clone(),
            fields: ids.clone(),
            zone: config.sync.zone,
        }),
        deals: amo,
        passport: Arc::new(DynamoPassportStore::new(aws.dynamodb.clone(), passport)),
        state: Arc::new(DynamoSyncState::new(aws.dynamodb.clone(), state)),
        worker,
        settings: SyncSettings {
            fields: maintenance_fields(config, ids),
            pipelines: config.sync.pipelines.clone(),
            reminder_days: config.sync.reminder_days,
            overlap_secs: config.sync.overlap_secs,
            redrive_after_secs: config.sync.redrive_after_secs,
            default_responsible_user_id: config.amo.responsible_user_id,
            policy: maintenance_policy(config)?,
        },
    })
}

/// amocrm-webhook: `POST /webhook/amocrm`.
pub async fn webhook_receiver(config: &Config, aws: &Aws) -> Result<WebhookReceiver, InitError> {
    let inbox = Config::require(&config.inbox_table, "INBOX_TABLE")?;
    let secrets = app_secrets(config, aws).await?;
    Ok(WebhookReceiver {
        inbox: Arc::new(DynamoInboxStore::new(aws.dynamodb.clone(), inbox)),
        token: secrets.webhook_token,
        subdomain: config.amo.subdomain.clone(),
        account_id: config.account_id,
    })
}

/// passport-api: `GET /passport`, `POST /passport/service-requests`.
pub async fn passport_api(config: &Config, aws: &Aws) -> Result<PassportApi, InitError> {
    let passport = Config::require(&config.passport_table, "PASSPORT_TABLE")?;
    let secrets = app_secrets(config, aws).await?;
    Ok(PassportApi {
        passport: Arc::new(DynamoPassportStore::new(aws.dynamodb.clone(), passport)),
        leads: Arc::new(DynamoLeadStore::new(
            aws.dynamodb.clone(),
            &config.leads_table,
        )),
        bot_token: secrets.telegram_bot_token,
        repeat: repeat_policy(config),
    })
}
