//! Builds each function's dependencies from `Config` once, at cold start. The same code wires
//! the Lambda binaries, the local stack and the end-to-end tests.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::amocrm::call_log::CallLog;
use crate::amocrm::logged::LoggedAmo;
use crate::amocrm::maintenance::AmoMaintenance;
use crate::amocrm::oauth::{ClientSecretSource, RefreshDeps, TokenEndpoint, TokenProvider};
use crate::amocrm::webhook::AmoWebhookReader;
use crate::amocrm::{AccountPacer, AmoClient, RequestPacing};
use crate::api::LeadIngestApi;
use crate::api::cors::Cors;
use crate::api::oauth::OAuthFlow;
use crate::api::passport::PassportApi;
use crate::api::webhook::WebhookReceiver;
use crate::config::Config;
use crate::crm_events::{EventProcessor, MaintenanceHook};
use crate::leads::accept::RepeatPolicy;
use crate::leads::deliver::{LeadDelivery, MailSettings};
use crate::mail::SesNotifier;
use crate::mail::feedback::{FeedbackLog, FeedbackRecorder};
use crate::maintenance::deal_fields::MaintenanceFields;
use crate::maintenance::model::MaintenanceFieldIds;
use crate::maintenance::{MaintenanceSync, SyncSettings, TokenCare};
use crate::ops::health::HealthService;
use crate::passport::MaintenancePolicy;
use crate::passport::register::PassportFields;
use crate::ports::{AppSecrets, SecretError, SecretStore};
use crate::secrets::{AppSecretsSource, SecretsManagerStore, load_app_secrets};
use crate::store::{
    DynamoHealthRecords, DynamoInboxStore, DynamoLeadStore, DynamoMailFeedback,
    DynamoPassportStore, DynamoStateStore, DynamoSyncState, DynamoWorkQueues,
};
use crate::worker::CrmWorker;

mod serve;

pub use serve::{EventFunction, HttpFunction, ScheduledSync, serve_events, serve_http};

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

/// The amoCRM token source of every function: long-lived or OAuth by the secret's `kind`.
/// OAuth refresh needs the state table (its lease); without STATE_TABLE only long-lived
/// tokens are served.
pub fn token_provider(config: &Config, aws: &Aws) -> Result<Arc<TokenProvider>, InitError> {
    let secrets = aws.secret_store();
    let mut provider = TokenProvider::new(secrets.clone(), config.token_secret_id.clone());
    if let Some(table) = &config.state_table {
        provider = provider.with_refresh(RefreshDeps {
            endpoint: token_endpoint(config, aws)?,
            client_secret: ClientSecretSource::new(secrets, config.app_secret_id.clone()),
            state: Arc::new(DynamoStateStore::new(aws.dynamodb.clone(), table)),
            notifier: Arc::new(ses_notifier(config, aws)),
            alert_mailbox: config.oauth.alert_mailbox.clone(),
        });
    }
    Ok(Arc::new(provider))
}

/// The account-wide amoCRM rate limit (`AMOCRM_ACCOUNT_RPS`, slots in the state table) with
/// this process's share (`requests_per_second`) inside it; `None` without the state table
/// or with the limit turned off (each process then paces itself only).
fn account_pacing(
    config: &Config,
    requests_per_second: u32,
    aws: &Aws,
) -> Option<Arc<dyn RequestPacing>> {
    let table = config
        .state_table
        .as_ref()
        .filter(|_| config.account_rps > 0)?;
    let slots = Arc::new(DynamoStateStore::new(aws.dynamodb.clone(), table));
    Some(Arc::new(AccountPacer::new(
        slots,
        config.account_rps,
        requests_per_second,
    )))
}

/// An amoCRM API client for `amo` (the config's, or an operator's slower copy), paced
/// account-wide where the state table is configured.
fn amo_client(
    config: &Config,
    amo: &crate::config::AmoConfig,
    tokens: Arc<TokenProvider>,
    aws: &Aws,
) -> Result<AmoClient, InitError> {
    let client = AmoClient::new(amo, tokens)?;
    Ok(match account_pacing(config, amo.requests_per_second, aws) {
        Some(pacing) => client.with_pacing(pacing),
        None => client,
    })
}

/// The token endpoint, whose calls count towards the same account-wide limit.
fn token_endpoint(config: &Config, aws: &Aws) -> Result<TokenEndpoint, InitError> {
    let endpoint = TokenEndpoint::new(&config.amo, &config.oauth)?;
    Ok(
        match account_pacing(config, config.amo.requests_per_second, aws) {
            Some(pacing) => endpoint.with_pacing(pacing),
            None => endpoint,
        },
    )
}

/// The mail sender of every function, through the configuration set where one is configured.
fn ses_notifier(config: &Config, aws: &Aws) -> SesNotifier {
    SesNotifier::new(aws.ses.clone(), &config.mail_from)
        .with_configuration_set(config.ses_configuration_set.clone())
}

/// Where bounces and complaints are kept (on the lead and in the state table).
fn mail_feedback(config: &Config, aws: &Aws) -> Option<Arc<DynamoMailFeedback>> {
    config.state_table.as_ref().map(|state| {
        Arc::new(DynamoMailFeedback::new(
            aws.dynamodb.clone(),
            &config.leads_table,
            state,
        ))
    })
}

/// mail-events: SES's bounces and complaints from the SNS topic.
pub fn mail_events(config: &Config, aws: &Aws) -> Result<FeedbackRecorder, InitError> {
    let log = mail_feedback(config, aws).ok_or("STATE_TABLE is required by mail-events")?;
    Ok(FeedbackRecorder { log })
}

/// The health records in the state table (last amoCRM error and success, last sync run).
fn health_records(config: &Config, aws: &Aws) -> Option<Arc<DynamoHealthRecords>> {
    config
        .state_table
        .as_ref()
        .map(|table| Arc::new(DynamoHealthRecords::new(aws.dynamodb.clone(), table)))
}

/// The amoCRM client of the functions: every call's outcome is noted for `GET /health` where
/// the state table is configured.
fn logged_amo(
    config: &Config,
    tokens: Arc<TokenProvider>,
    aws: &Aws,
) -> Result<Arc<LoggedAmo>, InitError> {
    let client = amo_client(config, &config.amo, tokens, aws)?;
    let log = health_records(config, aws).map(|r| r as Arc<dyn CallLog>);
    Ok(Arc::new(LoggedAmo::new(client, log, breaker(config))))
}

/// The circuit breaker's window (`AMOCRM_BREAKER_SECS`; 0 turns it off).
fn breaker(config: &Config) -> Option<chrono::Duration> {
    (config.breaker_secs > 0).then(|| chrono::Duration::seconds(config.breaker_secs))
}

fn work_queues(config: &Config, aws: &Aws) -> Arc<DynamoWorkQueues> {
    Arc::new(DynamoWorkQueues::new(
        aws.dynamodb.clone(),
        &config.leads_table,
        config.inbox_table.clone(),
    ))
}

fn repeat_policy(config: &Config) -> RepeatPolicy {
    RepeatPolicy {
        body_window: chrono::Duration::seconds(config.dedup_window_secs),
        key_ttl: chrono::Duration::seconds(config.idempotency_ttl_secs),
    }
}

/// The app secret, read now (a missing or malformed one fails the cold start) and again on
/// its TTL or a credential that does not match (rotation).
async fn app_secrets(config: &Config, aws: &Aws) -> Result<Arc<AppSecretsSource>, InitError> {
    Ok(Arc::new(
        AppSecretsSource::load(aws.secret_store(), config.app_secret_id.clone()).await?,
    ))
}

/// lead-ingest: `POST /leads`, `GET /ingest/test-crm` and `GET /health`.
pub async fn lead_ingest(config: &Config, aws: &Aws) -> Result<LeadIngestApi, InitError> {
    let secrets = app_secrets(config, aws).await?;
    let tokens = token_provider(config, aws)?;
    let records = health_records(config, aws);
    Ok(LeadIngestApi {
        store: Arc::new(DynamoLeadStore::new(
            aws.dynamodb.clone(),
            &config.leads_table,
        )),
        probe: logged_amo(config, tokens.clone(), aws)?,
        secrets,
        cors: Cors::new(&config.site_origins),
        repeat: repeat_policy(config),
        health: Some(Arc::new(HealthService {
            tokens,
            work: work_queues(config, aws),
            calls: records.clone().map(|r| r as Arc<dyn CallLog>),
            sync: records.map(|r| r as Arc<dyn crate::ops::health::LastSyncSource>),
            mail: mail_feedback(config, aws).map(|m| m as Arc<dyn FeedbackLog>),
        })),
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

fn passport_fields(config: &Config) -> PassportFields {
    PassportFields {
        serial: config.amo.field_serial,
        model: config.amo.field_model,
        telegram_id: config.amo.field_telegram_id,
    }
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
    let amo = logged_amo(config, token_provider(config, aws)?, aws)?;
    crm_worker_with(config, aws, amo)
}

/// The worker around a given amoCRM client (maintenance-sync shares its client and pacer).
fn crm_worker_with(
    config: &Config,
    aws: &Aws,
    amo: Arc<LoggedAmo>,
) -> Result<CrmWorker, InitError> {
    let events = match (&config.inbox_table, &config.passport_table) {
        (Some(inbox), Some(passport)) => Some(Arc::new(EventProcessor {
            inbox: Arc::new(DynamoInboxStore::new(aws.dynamodb.clone(), inbox)),
            webhooks: Arc::new(AmoWebhookReader),
            crm: amo.clone(),
            passport: Arc::new(DynamoPassportStore::new(aws.dynamodb.clone(), passport)),
            policy: maintenance_policy(config)?,
            fields: passport_fields(config),
            maintenance: config.sync.field_ids().map(|ids| MaintenanceHook {
                fields: maintenance_fields(config, ids),
                pipelines: config.sync.pipelines.clone(),
            }),
        })),
        _ => None,
    };
    Ok(CrmWorker {
        delivery: LeadDelivery {
            store: Arc::new(DynamoLeadStore::new(
                aws.dynamodb.clone(),
                &config.leads_table,
            )),
            crm: amo,
            notifier: Arc::new(ses_notifier(config, aws)),
            mail: MailSettings {
                sales_mailbox: config.sales_mailbox.clone(),
                amo_base_url: config.amo.base_url.clone(),
            },
            hold: chrono::Duration::seconds(config.delivery_hold_secs),
        },
        events,
    })
}

/// maintenance-sync: the scheduled two-way maintenance sync, reminders and re-drive. One amoCRM
/// client (one pacer) serves every step, the re-drive included. It starts on a default deploy:
/// the maintenance field ids are an override; without them the run finds the fields by name.
pub fn maintenance_sync(config: &Config, aws: &Aws) -> Result<MaintenanceSync, InitError> {
    let passport = Config::require(&config.passport_table, "PASSPORT_TABLE")?;
    let state = Config::require(&config.state_table, "STATE_TABLE")?;
    let tokens = token_provider(config, aws)?;
    // Failures of the sync's calls show in GET /health like the worker's.
    let log = health_records(config, aws).map(|r| r as Arc<dyn CallLog>);
    let logged = Arc::new(LoggedAmo::new(
        amo_client(config, &config.amo, tokens.clone(), aws)?,
        log,
        breaker(config),
    ));
    let worker = crm_worker_with(config, aws, logged.clone())?;
    Ok(MaintenanceSync {
        // The sync's own calls (pull, push, tasks) are recorded too: the client carries the log.
        crm: Arc::new(AmoMaintenance {
            client: logged.client().clone(),
            zone: config.sync.zone,
        }),
        deals: logged.clone(),
        queues: work_queues(config, aws),
        reach: logged,
        passport: Arc::new(
            DynamoPassportStore::new(aws.dynamodb.clone(), passport)
                .with_record_transaction(config.sync.record_transaction),
        ),
        state: Arc::new(DynamoSyncState::new(aws.dynamodb.clone(), state)),
        delivery: worker.delivery.clone(),
        events: worker.events.clone(),
        token: TokenCare {
            tokens,
            notices: Arc::new(DynamoStateStore::new(aws.dynamodb.clone(), state)),
            notifier: Arc::new(ses_notifier(config, aws)),
            alert_mailbox: config.oauth.alert_mailbox.clone(),
            start_url: crate::amocrm::oauth::start_url(&config.amo.redirect_uri),
            refresh_ahead: chrono::Duration::minutes(config.sync.token_refresh_ahead_mins),
        },
        settings: SyncSettings {
            configured_fields: config.sync.field_ids(),
            zone: config.sync.zone,
            serial_field: config.amo.field_serial,
            telegram_id_field: config.amo.field_telegram_id,
            pipelines: config.sync.pipelines.clone(),
            reminder_days: config.sync.reminder_days,
            overlap_secs: config.sync.overlap_secs,
            redrive_after_secs: config.sync.redrive_after_secs,
            default_responsible_user_id: config.amo.responsible_user_id,
            policy: maintenance_policy(config)?,
        },
    })
}

/// The maintenance-sync function: the sync, stopping in time before each invocation's deadline.
pub async fn scheduled_sync(config: &Config, aws: &Aws) -> Result<ScheduledSync, InitError> {
    Ok(ScheduledSync {
        sync: maintenance_sync(config, aws)?,
        per_request: std::time::Duration::from_millis(config.amo.timeout_ms)
            + std::time::Duration::from_secs(5),
    })
}

/// amocrm-webhook: `POST /webhook/amocrm`; with STATE_TABLE also the OAuth flow
/// (`GET /oauth/start`, `GET /webhook/amocrm?code=…`).
pub async fn webhook_receiver(config: &Config, aws: &Aws) -> Result<WebhookReceiver, InitError> {
    let inbox = Config::require(&config.inbox_table, "INBOX_TABLE")?;
    let secrets = app_secrets(config, aws).await?;
    let oauth = match &config.state_table {
        Some(table) => Some(Arc::new(OAuthFlow {
            state: Arc::new(DynamoStateStore::new(aws.dynamodb.clone(), table)),
            secrets: aws.secret_store(),
            token_secret_id: config.token_secret_id.clone(),
            client_secret: ClientSecretSource::new(
                aws.secret_store(),
                config.app_secret_id.clone(),
            ),
            endpoint: token_endpoint(config, aws)?,
            authorize_url: config.oauth.authorize_url.clone(),
            app_secrets: Arc::clone(&secrets),
        })),
        None => None,
    };
    Ok(WebhookReceiver {
        inbox: Arc::new(DynamoInboxStore::new(aws.dynamodb.clone(), inbox)),
        secrets,
        subdomain: config.amo.subdomain.clone(),
        account_id: config.account_id,
        oauth,
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
        secrets,
        repeat: repeat_policy(config),
        cors: Cors::new(&config.tma_origins),
    })
}

/// What the `rss-ops` CLI works with: the functions' configuration, token and tables.
pub struct OperatorTools {
    pub amo: AmoClient,
    pub tokens: Arc<TokenProvider>,
    pub work: Arc<DynamoWorkQueues>,
    /// Read, not required: doctor reports a missing or malformed app secret.
    pub app_secrets: Result<AppSecrets, SecretError>,
    /// The passport and the state table, for `backfill` and for remembering the maintenance
    /// fields `setup` made (`None` without PASSPORT_TABLE / STATE_TABLE).
    pub passport: Option<Arc<DynamoPassportStore>>,
    pub sync_state: Option<Arc<DynamoSyncState>>,
    pub policy: MaintenancePolicy,
    pub passport_fields: PassportFields,
    pub pipelines: Vec<i64>,
}

/// Operators' amoCRM calls are paced to this, leaving the integration's 7 requests per second
/// to crm-worker.
pub const OPERATOR_RPS: u32 = 2;

pub async fn operator_tools(config: &Config, aws: &Aws) -> Result<OperatorTools, InitError> {
    let tokens = token_provider(config, aws)?;
    let mut amo = config.amo.clone();
    amo.requests_per_second = amo.requests_per_second.min(OPERATOR_RPS);
    Ok(OperatorTools {
        amo: amo_client(config, &amo, tokens.clone(), aws)?,
        tokens,
        work: work_queues(config, aws),
        app_secrets: load_app_secrets(aws.secret_store().as_ref(), &config.app_secret_id).await,
        passport: config
            .passport_table
            .as_ref()
            .map(|t| Arc::new(DynamoPassportStore::new(aws.dynamodb.clone(), t))),
        sync_state: config
            .state_table
            .as_ref()
            .map(|t| Arc::new(DynamoSyncState::new(aws.dynamodb.clone(), t))),
        policy: maintenance_policy(config)?,
        passport_fields: passport_fields(config),
        pipelines: config.sync.pipelines.clone(),
    })
}
