//! The whole system on one machine: moto (DynamoDB + Streams, SES v2, Secrets Manager), the
//! amoCRM sandbox, the HTTP routes of template.yaml and the stream-driven worker, wired by the
//! same code as the Lambda binaries. `make run` uses it, and so do the end-to-end tests.

pub mod contract;
pub mod front;
pub mod moto;
pub mod page;
pub mod provision;
pub mod pump;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amocrm_sandbox::{History, Made, RunningSandbox, Sandbox, SandboxConfig};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use base64::Engine;
use serde_json::{Value, json};
use shared::amocrm::AmoClient;
use shared::amocrm::maintenance_fields::ensure_maintenance_fields;
use shared::amocrm::token::LongLivedToken;
use shared::config::{AmoConfig, Config};
use shared::maintenance::{Budget, MaintenanceSync, RunReport};
use shared::secrets::SecretsManagerStore;
use shared::wiring::{self, Aws, InitError};
use shared::worker::CrmWorker;

pub use moto::Moto;
pub use provision::LocalResources;
pub use pump::{PumpStats, StreamPump};

/// Ports and local secrets; `None` ports mean "any free port" (tests).
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub api_port: Option<u16>,
    pub sandbox_port: Option<u16>,
    pub moto_port: Option<u16>,
    /// The reference page (`make run`: PAGE_PORT, 8080).
    pub page_port: Option<u16>,
    pub admin_key: String,
    /// What the bot's server sends as `X-Bot-Key` to vouch for a Telegram ID.
    pub bot_api_key: String,
    pub webhook_token: String,
    pub telegram_bot_token: String,
    pub sandbox: SandboxConfig,
    /// Stream retries before a record goes to the on-failure destination.
    pub stream_max_retries: u32,
    /// Function environment overrides (e.g. a wrong field id to provoke amoCRM's validation).
    pub config_overrides: Vec<(String, String)>,
    /// Create the maintenance fields at start and give their ids to the functions, as if the
    /// operator's `setup` had run. Off: the account is as it was before go-live.
    pub provision_fields: bool,
    /// An account with a past (won deals, contacts, the old webhook), seeded at start.
    pub history: Option<History>,
    /// Check every answer of the front against api/openapi.yaml; a violation fails the test
    /// when the stack is dropped (and is logged at once).
    pub check_contract: bool,
}

impl StackOptions {
    /// Local secrets from `LOCAL_ADMIN_KEY`, `LOCAL_WEBHOOK_TOKEN`, `LOCAL_TELEGRAM_BOT_TOKEN`.
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let port = |k: &str, d: u16| var(k, &d.to_string()).parse().ok();
        Self {
            api_port: port("API_PORT", 3000),
            sandbox_port: port("SANDBOX_PORT", 3001),
            moto_port: port("MOTO_PORT", 5000),
            page_port: port("PAGE_PORT", 8080),
            ..Self::for_tests()
        }
    }

    pub fn for_tests() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        Self {
            api_port: None,
            sandbox_port: None,
            moto_port: None,
            page_port: None,
            admin_key: var("LOCAL_ADMIN_KEY", "local-admin-key"),
            bot_api_key: var("LOCAL_BOT_API_KEY", "local-bot-api-key"),
            webhook_token: var("LOCAL_WEBHOOK_TOKEN", "local-webhook-token"),
            telegram_bot_token: var(
                "LOCAL_TELEGRAM_BOT_TOKEN",
                "123456:local-telegram-bot-token",
            ),
            sandbox: SandboxConfig::default(),
            stream_max_retries: 3,
            config_overrides: Vec::new(),
            provision_fields: true,
            history: None,
            check_contract: true,
        }
    }

    /// The account the system meets on day one: a past, no maintenance fields, the old
    /// webhook, and (when `allowlist` is given) an API IP whitelist without our address.
    pub fn real_account(allowlist: &[&str]) -> Self {
        let mut options = Self::for_tests();
        options.provision_fields = false;
        options.history = Some(History::default());
        options.sandbox.ip_allowlist = allowlist
            .iter()
            .map(|a| a.parse().expect("an IP address"))
            .collect();
        options
    }
}

pub struct LocalStack {
    pub moto: Moto,
    pub sandbox: RunningSandbox,
    pub aws: Aws,
    pub config: Config,
    pub resources: LocalResources,
    pub options: StackOptions,
    pub api_url: String,
    pub worker: CrmWorker,
    /// maintenance-sync, run by `sync_once` (tests) or every 30 s (`make run`).
    pub sync: Arc<MaintenanceSync>,
    /// One per stream-enabled table (leads, inbox), like one event source mapping each.
    pub pumps: Vec<Arc<StreamPump>>,
    /// What template.yaml gives every function, pointed at this stack (overrides applied).
    pub function_env: Vec<(String, String)>,
    /// What `StackOptions::history` seeded.
    pub history: Option<Made>,
    /// `POST /leads` answers 503 (Retry-After: 1) this many more times.
    pub unavailable_leads: Arc<std::sync::atomic::AtomicU32>,
    /// The reference page (another origin than the API's).
    pub page_url: String,
    page_task: tokio::task::JoinHandle<()>,
    /// The contract check of the front's answers (`StackOptions::check_contract`).
    pub contract: Option<Arc<contract::ContractLog>>,
    front: tokio::task::JoinHandle<()>,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.front.abort();
        self.page_task.abort();
        if let Some(log) = &self.contract {
            log.tally();
            let violations = log
                .violations
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if !violations.is_empty() && !std::thread::panicking() {
                panic!(
                    "{} answer(s) break api/openapi.yaml:\n{}",
                    violations.len(),
                    violations.join("\n")
                );
            }
        }
    }
}

/// A deal won in amoCRM as a sales manager closes one: the configured pipeline and manager,
/// status 142, the passport fields filled (serial, model 16К20, the customer's Telegram ID).
/// `request_id` pairs it with its place in amoCRM's batch answer.
pub fn won_deal(amo: &AmoConfig, request_id: usize, telegram_id: i64, serial: &str) -> Value {
    json!({
        "name": format!("Продажа станка {serial}"),
        "pipeline_id": amo.pipeline_id,
        "status_id": 142,
        "responsible_user_id": amo.responsible_user_id,
        "custom_fields_values": [
            {"field_id": amo.field_serial, "values": [{"value": serial}]},
            {"field_id": amo.field_model, "values": [{"value": "16К20"}]},
            {"field_id": amo.field_telegram_id, "values": [{"value": telegram_id.to_string()}]},
        ],
        "request_id": request_id.to_string(),
    })
}

/// A JWT-shaped long-lived token like amoCRM issues (the sandbox accepts it as registered).
pub fn long_lived_token(account_id: i64, valid_for: Duration) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    format!(
        "{}.{}.{}",
        b64(json!({"typ": "JWT", "alg": "RS256"})),
        b64(json!({
            "iat": now, "nbf": now, "exp": now + valid_for.as_secs() as i64,
            "account_id": account_id, "base_domain": "amocrm.ru", "jti": ulid::Ulid::generate().to_string(),
            "scopes": ["crm"], "version": 2,
        })),
        b64(json!("local-signature")),
    )
}

/// The AWS SDK configuration pointing at moto.
pub async fn moto_sdk_config(moto_url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto_url)
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "local-stack"))
        .load()
        .await
}

/// An `HttpFunction` calling `handle` on a shared API value.
macro_rules! lambda {
    ($api:ident) => {
        front::function({
            let api = Arc::clone(&$api);
            move |req| {
                let api = Arc::clone(&api);
                async move { api.handle(req).await }
            }
        })
    };
}

impl LocalStack {
    pub async fn start(mut options: StackOptions) -> Result<Self, InitError> {
        let moto = Moto::start(options.moto_port).await?;
        let page = page::PageListener::bind(options.page_port).await?;
        let page_origin = page.origin.clone();
        let token = long_lived_token(
            options.sandbox.account_id,
            Duration::from_secs(5 * 365 * 86_400),
        );
        options.sandbox.long_lived_tokens.push(token.clone());
        let sandbox_addr = SocketAddr::from(([127, 0, 0, 1], options.sandbox_port.unwrap_or(0)));
        let sandbox = Sandbox::start(options.sandbox.clone(), sandbox_addr).await?;
        let history = options
            .history
            .as_ref()
            .map(|spec| sandbox.state.seed_history(spec));

        let resources = LocalResources {
            leads_table: "leads".into(),
            inbox_table: "inbox".into(),
            passport_table: "passport".into(),
            state_table: "state".into(),
            app_secret_id: "local/app".into(),
            token_secret_id: "local/amocrm-token".into(),
            mail_from: "noreply@td-rss.ru".into(),
            configuration_set: "local-mail".into(),
            app_secret_json: json!({
                "admin_key": options.admin_key,
                "bot_api_key": options.bot_api_key,
                "webhook_token": options.webhook_token,
                "telegram_bot_token": options.telegram_bot_token,
                "amocrm_client_secret": options.sandbox.client_secret,
            })
            .to_string(),
            token_secret_json: json!({"kind": "long_lived", "access_token": token}).to_string(),
        };
        let aws = Aws::new(&moto_sdk_config(&moto.url).await);
        provision::all(&aws, &resources).await?;

        let mut env = vec![
            ("LEADS_TABLE", resources.leads_table.clone()),
            ("INBOX_TABLE", resources.inbox_table.clone()),
            ("PASSPORT_TABLE", resources.passport_table.clone()),
            ("STATE_TABLE", resources.state_table.clone()),
            ("AMOCRM_ACCOUNT_ID", options.sandbox.account_id.to_string()),
            ("APP_SECRET_ID", resources.app_secret_id.clone()),
            ("AMOCRM_TOKEN_SECRET_ID", resources.token_secret_id.clone()),
            ("AMOCRM_BASE_URL", sandbox.url.clone()),
            ("AMOCRM_OAUTH_BASE_URL", sandbox.url.clone()),
            ("MAIL_FROM", resources.mail_from.clone()),
            ("SES_CONFIGURATION_SET", resources.configuration_set.clone()),
            // A killed worker's lead is taken over within seconds, not minutes.
            ("DELIVERY_HOLD_SECS", "2".into()),
            // After a 403 the functions hold their calls for a second, not ten minutes.
            ("AMOCRM_BREAKER_SECS", "1".into()),
            // Production's origins (the sample events carry them) and the reference page's.
            (
                "SITE_ORIGINS",
                format!("{page_origin},{}", shared::config::DEFAULT_SITE_ORIGINS),
            ),
            (
                "TMA_ORIGINS",
                format!("{page_origin},{}", shared::config::DEFAULT_TMA_ORIGINS),
            ),
        ];
        // The environment with the options' overrides in place, and the config read from it.
        let with_overrides = |env: &[(&str, String)]| -> Vec<(String, String)> {
            let overridden = |k: &str| options.config_overrides.iter().any(|(name, _)| name == k);
            let mut merged: Vec<(String, String)> = env
                .iter()
                .filter(|(k, _)| !overridden(k))
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            merged.extend(options.config_overrides.iter().cloned());
            merged
        };
        let read_config = |env: &[(String, String)]| {
            Config::from_lookup(|k| {
                env.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            })
        };
        // As the operator's `setup` does at amoCRM: the maintenance fields exist, their ids
        // go into the functions' environment.
        if options.provision_fields {
            let fields = {
                let config = read_config(&with_overrides(&env))?;
                let tokens = Arc::new(LongLivedToken::new(
                    Arc::new(SecretsManagerStore::new(aws.secrets.clone())),
                    resources.token_secret_id.clone(),
                ));
                ensure_maintenance_fields(&AmoClient::new(&config.amo, tokens)?).await?
            };
            env.extend([
                (
                    "AMOCRM_FIELD_NEXT_MAINTENANCE",
                    fields.next_maintenance.to_string(),
                ),
                ("AMOCRM_FIELD_MAINTENANCE_STATUS", fields.status.to_string()),
                (
                    "AMOCRM_MAINTENANCE_STATUS_ENUMS",
                    fields.status_enums.to_spec(),
                ),
            ]);
        }
        let function_env = with_overrides(&env);
        let config = read_config(&function_env)?;

        let worker = wiring::crm_worker(&config, &aws)?;
        let sync = Arc::new(wiring::maintenance_sync(&config, &aws)?);
        let ingest = Arc::new(wiring::lead_ingest(&config, &aws).await?);
        let webhook = Arc::new(wiring::webhook_receiver(&config, &aws).await?);
        let passport = Arc::new(wiring::passport_api(&config, &aws).await?);
        // The routes of template.yaml, each to its function.
        let routes = front::Routes::default()
            .add("POST", "/leads", lambda!(ingest))
            .add("OPTIONS", "/leads", lambda!(ingest))
            .add("GET", "/ingest/test-crm", lambda!(ingest))
            .add("GET", "/health", lambda!(ingest))
            .add("POST", "/webhook/amocrm", lambda!(webhook))
            .add("GET", "/webhook/amocrm", lambda!(webhook))
            .add("GET", "/oauth/start", lambda!(webhook))
            .add("GET", "/passport", lambda!(passport))
            .add("OPTIONS", "/passport", lambda!(passport))
            .add("OPTIONS", "/passport/service-requests", lambda!(passport))
            .add("POST", "/passport/service-requests", lambda!(passport))
            .default_route(lambda!(ingest))
            .leads_cors(shared::api::cors::Cors::new(&config.site_origins));
        let contract = options
            .check_contract
            .then(|| Arc::new(contract::ContractLog::default()));
        let unavailable_leads = routes.unavailable_leads.clone();
        let routes = match &contract {
            Some(log) => routes.checked_by(log.clone()),
            None => routes,
        };
        let api_addr = SocketAddr::from(([127, 0, 0, 1], options.api_port.unwrap_or(0)));
        let (bound, front) = front::serve(api_addr, routes).await?;
        let page_task = page.serve(&format!("http://{bound}"), &options.telegram_bot_token);
        let pumps = vec![
            Arc::new(
                StreamPump::new(
                    &moto.url,
                    &aws,
                    &resources.leads_table,
                    options.stream_max_retries,
                )
                .await?,
            ),
            Arc::new(
                StreamPump::new(
                    &moto.url,
                    &aws,
                    &resources.inbox_table,
                    options.stream_max_retries,
                )
                .await?,
            ),
        ];
        Ok(Self {
            api_url: format!("http://{bound}"),
            moto,
            sandbox,
            aws,
            config,
            resources,
            options,
            worker,
            sync,
            pumps,
            function_env,
            history,
            contract,
            page_url: page_origin.clone(),
            unavailable_leads,
            page_task,
            front,
        })
    }

    /// The environment of a function or tool process run against this stack: `function_env`
    /// plus the AWS SDK's variables pointing at moto with dummy credentials.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let aws = [
            ("AWS_ENDPOINT_URL", self.moto.url.as_str()),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let mut env = self.function_env.clone();
        env.extend(aws.map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// What an operator's shell needs to run `rss-ops` against this stack (`make ops`): the
    /// process environment and the local webhook destination.
    pub fn ops_env(&self) -> Vec<(String, String)> {
        let mut env = self.process_env();
        env.push((
            "WEBHOOK_DESTINATION".into(),
            format!("{}/webhook/amocrm", self.api_url),
        ));
        env
    }

    /// `ops_env` as a file `bash` can `source` (`KEY='value'` lines, owner-readable only).
    pub fn write_ops_env(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        writeln!(
            file,
            "# rss-ops against the running `make run` stack (written at its start)"
        )?;
        for (k, v) in self.ops_env() {
            writeln!(file, "export {k}='{}'", v.replace('\'', "'\\''"))?;
        }
        Ok(())
    }

    /// One maintenance-sync run now, with the time a Lambda gets (15 minutes).
    pub async fn sync_once(&self) -> RunReport {
        self.sync_at(
            chrono::Utc::now(),
            &Budget::until(
                tokio::time::Instant::now() + Duration::from_secs(15 * 60),
                Duration::from_millis(self.config.amo.timeout_ms),
            ),
        )
        .await
    }

    /// One run as if it were `now` (reminders and re-drive depend on the date), within `budget`.
    pub async fn sync_at(&self, now: chrono::DateTime<chrono::Utc>, budget: &Budget) -> RunReport {
        self.sync.run(now, budget).await
    }

    /// Runs the sync every `every`, as the EventBridge schedule does (`make run`).
    pub fn spawn_sync_schedule(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let sync = Arc::clone(&self.sync);
        let timeout = Duration::from_millis(self.config.amo.timeout_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let budget = Budget::until(tokio::time::Instant::now() + every, timeout);
                let report = sync.run(chrono::Utc::now(), &budget).await;
                tracing::info!(
                    outcome = report.outcome.as_str(),
                    "scheduled maintenance sync"
                );
            }
        })
    }

    /// Runs the stream pump until a pass reads and delivers nothing more (tests call this
    /// instead of waiting on a timer).
    pub async fn deliver_pending(&self) -> Result<PumpStats, InitError> {
        self.deliver_pending_with(&self.worker).await
    }

    /// Same, with a differently wired worker (fault tests wrap the store or CRM).
    pub async fn deliver_pending_with(&self, worker: &CrmWorker) -> Result<PumpStats, InitError> {
        let mut total = PumpStats::default();
        for _ in 0..50 {
            let mut pass = PumpStats::default();
            for pump in &self.pumps {
                pass.add(pump.pump_once(worker).await?);
            }
            total.add(pass);
            if pass == PumpStats::default() {
                break;
            }
        }
        Ok(total)
    }

    /// Polls the stream in the background, as the event source mapping does (`make run`).
    pub fn spawn_stream_worker(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let pumps = self.pumps.clone();
        let worker = self.worker.clone();
        tokio::spawn(async move {
            loop {
                for pump in &pumps {
                    if let Err(e) = pump.pump_once(&worker).await {
                        tracing::error!(error = %e, "stream pump pass failed");
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Registers the local webhook route at the sandbox, as `setup` does at amoCRM, so a lead
    /// moved to «won» there reaches the passport by itself.
    pub async fn register_webhook(&self) -> Result<(), InitError> {
        let destination = format!(
            "{}/webhook/amocrm?token={}",
            self.api_url, self.options.webhook_token
        );
        let token = serde_json::from_str::<serde_json::Value>(&self.resources.token_secret_json)?
            ["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v4/webhooks", self.sandbox.url))
            .bearer_auth(token)
            .json(&json!({
                "destination": destination,
                "settings": ["add_lead", "update_lead", "status_lead"],
            }))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("webhook registration at the sandbox: {}", resp.status()).into());
        }
        Ok(())
    }
}
