//! Configuration, read once from the environment at cold start. A missing or malformed
//! required variable fails the start loudly rather than the first request quietly.

use std::env;

use crate::maintenance::model::{AccountZone, MaintenanceFieldIds, StatusEnums};

/// amoCRM account facts (the defaults are the production account's ids).
#[derive(Debug, Clone)]
pub struct AmoConfig {
    pub subdomain: String,
    /// `https://{subdomain}.amocrm.ru` unless overridden (the local sandbox).
    pub base_url: String,
    pub pipeline_id: i64,
    pub status_id: i64,
    pub responsible_user_id: i64,
    pub field_serial: i64,
    pub field_model: i64,
    pub field_telegram_id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    /// Requests per second this process allows itself (amoCRM's limit is 7 per integration).
    pub requests_per_second: u32,
    pub timeout_ms: u64,
    /// `AMOCRM_EGRESS_IP`: the fixed address the functions reach amoCRM from (the template's
    /// `AmoEgressIp` output), named in the hint when amoCRM refuses our address. Empty: the
    /// functions have no fixed address (`AmoEgress=Direct`).
    pub egress_ip: Option<String>,
}

/// The OAuth code flow and the token refresh.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Where `GET /oauth/start` sends the browser (`AMOCRM_AUTHORIZE_URL`).
    pub authorize_url: String,
    /// `AMOCRM_OAUTH_BASE_URL`: the token endpoint's base for the local sandbox. Unset in
    /// production: codes are exchanged at the redirect's `referer`, refreshes at the account.
    pub token_base_url: Option<String>,
    /// Who is told when the token needs re-authorization (`ALERT_MAILBOX`, default the sales mailbox).
    pub alert_mailbox: String,
}

/// The maintenance sync and the maintenance fields of won deals. The two field ids and the
/// option ids come from the operator's `setup` (they do not exist in amoCRM before it runs).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `AMOCRM_FIELD_NEXT_MAINTENANCE`: the date field «Дата следующего ТО».
    pub field_next_maintenance: Option<i64>,
    /// `AMOCRM_FIELD_MAINTENANCE_STATUS`: the select field «Статус ТО».
    pub field_maintenance_status: Option<i64>,
    /// `AMOCRM_MAINTENANCE_STATUS_ENUMS`: `ok=…,due=…,scheduled=…,in_progress=…,done=…,overdue=…`.
    pub status_enums: Option<StatusEnums>,
    /// `AMOCRM_SYNC_PIPELINES`: the pipelines whose deals are synced (default: the main one).
    pub pipelines: Vec<i64>,
    /// `AMOCRM_UTC_OFFSET`: the account's time zone, where date fields hold midnight (+03:00).
    pub zone: AccountZone,
    /// `REMINDER_DAYS`: a task is created this many days before the maintenance is due.
    pub reminder_days: i64,
    /// `SYNC_OVERLAP_SECS`: each pull re-reads this much before its cursor.
    pub overlap_secs: i64,
    /// `REDRIVE_AFTER_SECS`: leads and webhook events pending longer than this are fed again.
    pub redrive_after_secs: i64,
    /// `TOKEN_REFRESH_AHEAD_MINS`: the sync refreshes an OAuth pair with less than this left
    /// (amoCRM's access tokens live 24 h; keep it above the schedule's period).
    pub token_refresh_ahead_mins: i64,
    /// `SYNC_RECORD_TRANSACTION`: machines recorded per TransactWriteItems after a push (1 =
    /// one conditional UpdateItem each; DynamoDB takes up to 100 per transaction).
    pub record_transaction: usize,
}

impl SyncConfig {
    /// All three ids, or `None` when the fields are not configured (nothing is synced then).
    pub fn field_ids(&self) -> Option<MaintenanceFieldIds> {
        Some(MaintenanceFieldIds {
            next_maintenance: self.field_next_maintenance?,
            status: self.field_maintenance_status?,
            status_enums: self.status_enums.clone()?,
        })
    }

    /// The ids, or an error naming the first missing variable (maintenance-sync needs them).
    pub fn require_field_ids(&self) -> Result<MaintenanceFieldIds, ConfigError> {
        let missing = |var: &str| ConfigError {
            var: var.to_string(),
            reason: "required by the maintenance sync; `setup` prints the value".into(),
        };
        if self.field_next_maintenance.is_none() {
            return Err(missing("AMOCRM_FIELD_NEXT_MAINTENANCE"));
        }
        if self.field_maintenance_status.is_none() {
            return Err(missing("AMOCRM_FIELD_MAINTENANCE_STATUS"));
        }
        self.field_ids()
            .ok_or_else(|| missing("AMOCRM_MAINTENANCE_STATUS_ENUMS"))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub amo: AmoConfig,
    pub oauth: OAuthConfig,
    /// Accepted leads (+ idempotency claims); its stream drives crm-worker.
    pub leads_table: String,
    /// Received amoCRM webhooks; its stream drives crm-worker too.
    pub inbox_table: Option<String>,
    /// The Digital Passport: equipment per Telegram user.
    pub passport_table: Option<String>,
    /// Integration state: OAuth state nonces, the token refresh lease, health records.
    pub state_table: Option<String>,
    /// amoCRM account id; webhooks naming another account are refused.
    pub account_id: Option<i64>,
    pub maintenance_default_months: u32,
    /// `MODEL=MONTHS;…` overrides of the maintenance interval.
    pub maintenance_model_months: String,
    /// Secret with admin key, webhook token, Telegram bot token, amoCRM client secret.
    pub app_secret_id: String,
    /// Secret with the amoCRM token (long-lived or OAuth pair).
    pub token_secret_id: String,
    pub sales_mailbox: String,
    pub mail_from: String,
    /// `SES_CONFIGURATION_SET`: every message goes through it, so SES reports bounces and
    /// complaints (unset: none are reported).
    pub ses_configuration_set: Option<String>,
    /// `SITE_ORIGINS`: the pages that post `POST /leads` from a browser (the site, the cart).
    pub site_origins: Vec<String>,
    /// `TMA_ORIGINS`: the Mini App's page, calling `/passport*` from Telegram's web view.
    pub tma_origins: Vec<String>,
    /// How long the same body from the same source counts as a repeat.
    pub dedup_window_secs: i64,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: i64,
    /// `DELIVERY_HOLD_SECS`: a delivery's hold on its lead past its last save (one runner at a
    /// time; a dead runner's lead is taken over after this).
    pub delivery_hold_secs: i64,
    /// `AMOCRM_BREAKER_SECS`: after a 403 no function calls amoCRM for this long (0 = off).
    pub breaker_secs: i64,
    /// `AMOCRM_ACCOUNT_RPS`: the integration's limit, held across every function and instance
    /// through the state table (0 = each process paces itself only, by `AMOCRM_RPS`).
    pub account_rps: u32,
    pub sync: SyncConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

impl Config {
    /// A table this function cannot run without: fails the cold start naming the variable.
    pub fn require<'a>(value: &'a Option<String>, var: &str) -> Result<&'a str, ConfigError> {
        value.as_deref().ok_or_else(|| ConfigError {
            var: var.to_string(),
            reason: "required by this function".into(),
        })
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env::var(k).ok())
    }

    /// Reads configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str, default: &str| lookup(k).unwrap_or_else(|| default.to_string());
        let required = |k: &str| {
            lookup(k)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError {
                    var: k.to_string(),
                    reason: "required".into(),
                })
        };
        let int = |k: &str, default: i64| -> Result<i64, ConfigError> {
            match lookup(k) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError {
                    var: k.to_string(),
                    reason: format!("not an integer: {v:?}"),
                }),
            }
        };
        let subdomain = get("AMOCRM_SUBDOMAIN", "new599bd9d13818a");
        let base_url = lookup("AMOCRM_BASE_URL")
            .unwrap_or_else(|| format!("https://{subdomain}.amocrm.ru"))
            .trim_end_matches('/')
            .to_string();
        let amo = AmoConfig {
            base_url,
            subdomain,
            pipeline_id: int("AMOCRM_PIPELINE_ID", 10226282)?,
            status_id: int("AMOCRM_STATUS_ID", 80953554)?,
            responsible_user_id: int("AMOCRM_RESPONSIBLE_USER_ID", 12380450)?,
            field_serial: int("AMOCRM_FIELD_SERIAL", 712629)?,
            field_model: int("AMOCRM_FIELD_MODEL", 712631)?,
            field_telegram_id: int("AMOCRM_FIELD_TELEGRAM_ID", 712633)?,
            client_id: get("AMOCRM_CLIENT_ID", "2df855f6-d54d-4c3c-bb8a-1d8ea8b3c1cd"),
            redirect_uri: get(
                "AMOCRM_REDIRECT_URI",
                "https://api.td-rss.ru/webhook/amocrm",
            ),
            requests_per_second: int("AMOCRM_RPS", 7)?.clamp(1, 7) as u32,
            timeout_ms: int("AMOCRM_TIMEOUT_MS", 10_000)?.max(100) as u64,
            egress_ip: lookup("AMOCRM_EGRESS_IP")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
        };
        let sales_mailbox = get("SALES_MAILBOX", "zakaz@tdrusstankosbyt.ru");
        let oauth = OAuthConfig {
            authorize_url: get("AMOCRM_AUTHORIZE_URL", "https://www.amocrm.ru/oauth")
                .trim()
                .to_string(),
            token_base_url: lookup("AMOCRM_OAUTH_BASE_URL")
                .map(|v| v.trim().trim_end_matches('/').to_string())
                .filter(|v| !v.is_empty()),
            alert_mailbox: lookup("ALERT_MAILBOX")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| sales_mailbox.clone()),
        };
        let amo_pipeline = amo.pipeline_id;
        Ok(Config {
            amo,
            oauth,
            leads_table: required("LEADS_TABLE")?,
            inbox_table: lookup("INBOX_TABLE").filter(|v| !v.trim().is_empty()),
            passport_table: lookup("PASSPORT_TABLE").filter(|v| !v.trim().is_empty()),
            state_table: lookup("STATE_TABLE").filter(|v| !v.trim().is_empty()),
            account_id: match lookup("AMOCRM_ACCOUNT_ID").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(_) => Some(int("AMOCRM_ACCOUNT_ID", 0)?),
            },
            maintenance_default_months: int("MAINTENANCE_DEFAULT_MONTHS", 12)?.clamp(1, 120) as u32,
            maintenance_model_months: get("MAINTENANCE_MODEL_MONTHS", ""),
            app_secret_id: required("APP_SECRET_ID")?,
            token_secret_id: required("AMOCRM_TOKEN_SECRET_ID")?,
            sales_mailbox,
            mail_from: get("MAIL_FROM", "noreply@td-rss.ru"),
            ses_configuration_set: lookup("SES_CONFIGURATION_SET")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
            site_origins: origins(&get("SITE_ORIGINS", DEFAULT_SITE_ORIGINS)),
            tma_origins: origins(&get("TMA_ORIGINS", DEFAULT_TMA_ORIGINS)),
            dedup_window_secs: int("DEDUP_WINDOW_SECS", 600)?,
            idempotency_ttl_secs: int("IDEMPOTENCY_TTL_SECS", 86_400)?,
            delivery_hold_secs: int("DELIVERY_HOLD_SECS", 90)?.clamp(1, 900),
            breaker_secs: int("AMOCRM_BREAKER_SECS", 600)?.clamp(0, 86_400),
            account_rps: int("AMOCRM_ACCOUNT_RPS", 7)?.clamp(0, 7) as u32,
            sync: sync_config(&lookup, amo_pipeline)?,
        })
    }
}

fn sync_config(
    lookup: &impl Fn(&str) -> Option<String>,
    main_pipeline: i64,
) -> Result<SyncConfig, ConfigError> {
    let set = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let error = |var: &str, reason: String| ConfigError {
        var: var.to_string(),
        reason,
    };
    let id = |k: &str| -> Result<Option<i64>, ConfigError> {
        set(k)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| error(k, format!("not a field id: {v:?}")))
            })
            .transpose()
    };
    let int = |k: &str, default: i64, range: std::ops::RangeInclusive<i64>| match set(k) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| error(k, format!("expected an integer in {range:?}, got {v:?}"))),
    };
    let pipelines = match set("AMOCRM_SYNC_PIPELINES") {
        None => vec![main_pipeline],
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<i64>().map_err(|_| {
                    error("AMOCRM_SYNC_PIPELINES", format!("not a pipeline id: {p:?}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if pipelines.is_empty() {
        return Err(error("AMOCRM_SYNC_PIPELINES", "names no pipeline".into()));
    }
    Ok(SyncConfig {
        field_next_maintenance: id("AMOCRM_FIELD_NEXT_MAINTENANCE")?,
        field_maintenance_status: id("AMOCRM_FIELD_MAINTENANCE_STATUS")?,
        status_enums: set("AMOCRM_MAINTENANCE_STATUS_ENUMS")
            .map(|v| StatusEnums::parse(&v))
            .transpose()
            .map_err(|reason| error("AMOCRM_MAINTENANCE_STATUS_ENUMS", reason))?,
        pipelines,
        zone: set("AMOCRM_UTC_OFFSET")
            .map(|v| AccountZone::parse(&v))
            .transpose()
            .map_err(|reason| error("AMOCRM_UTC_OFFSET", reason))?
            .unwrap_or_default(),
        reminder_days: int("REMINDER_DAYS", 14, 0..=365)?,
        overlap_secs: int("SYNC_OVERLAP_SECS", 300, 0..=86_400)?,
        redrive_after_secs: int("REDRIVE_AFTER_SECS", 900, 0..=7 * 86_400)?,
        token_refresh_ahead_mins: int("TOKEN_REFRESH_AHEAD_MINS", 120, 10..=23 * 60)?,
        record_transaction: int("SYNC_RECORD_TRANSACTION", 100, 1..=100)? as usize,
    })
}

/// Who may post leads from a browser: the site, td-rss.ru with and without `www`, and the
/// Mini App's page, whose own lead form posts `source=tma` leads to `POST /leads`.
pub const DEFAULT_SITE_ORIGINS: &str =
    "https://td-rss.ru,https://www.td-rss.ru,https://tma.td-rss.ru";
/// The Mini App's page (the bot's `web_app` URL).
pub const DEFAULT_TMA_ORIGINS: &str = "https://tma.td-rss.ru";

/// A comma-separated origin list, each without a trailing `/`.
fn origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const MINIMAL: [(&str, &str); 3] = [
        ("LEADS_TABLE", "leads"),
        ("APP_SECRET_ID", "app"),
        ("AMOCRM_TOKEN_SECRET_ID", "tok"),
    ];

    #[test]
    fn defaults_are_the_production_ids_of_the_brief() {
        let c = Config::from_lookup(lookup(&MINIMAL)).unwrap();
        assert_eq!(c.amo.base_url, "https://new599bd9d13818a.amocrm.ru");
        assert_eq!(
            (
                c.amo.pipeline_id,
                c.amo.status_id,
                c.amo.responsible_user_id
            ),
            (10226282, 80953554, 12380450)
        );
        assert_eq!(
            (
                c.amo.field_serial,
                c.amo.field_model,
                c.amo.field_telegram_id
            ),
            (712629, 712631, 712633)
        );
        assert_eq!(c.sales_mailbox, "zakaz@tdrusstankosbyt.ru");
        assert_eq!(c.amo.redirect_uri, "https://api.td-rss.ru/webhook/amocrm");
        assert_eq!(c.oauth.authorize_url, "https://www.amocrm.ru/oauth");
        assert_eq!(c.oauth.token_base_url, None);
        assert_eq!(c.oauth.alert_mailbox, "zakaz@tdrusstankosbyt.ru");
    }

    #[test]
    fn oauth_overrides_for_the_sandbox_and_a_separate_alert_mailbox() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("AMOCRM_OAUTH_BASE_URL", "http://127.0.0.1:8081/"));
        pairs.push(("ALERT_MAILBOX", "ops@td-rss.ru"));
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(
            c.oauth.token_base_url.as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(c.oauth.alert_mailbox, "ops@td-rss.ru");
        assert_eq!(c.sales_mailbox, "zakaz@tdrusstankosbyt.ru");
    }

    #[test]
    fn sync_settings_default_to_the_main_pipeline_and_name_bad_variables() {
        let c = Config::from_lookup(lookup(&MINIMAL)).unwrap();
        assert_eq!(c.sync.pipelines, vec![10226282]);
        assert_eq!(
            (
                c.sync.reminder_days,
                c.sync.overlap_secs,
                c.sync.redrive_after_secs
            ),
            (14, 300, 900)
        );
        assert!(c.sync.field_ids().is_none());
        assert_eq!(
            c.sync.require_field_ids().unwrap_err().var,
            "AMOCRM_FIELD_NEXT_MAINTENANCE"
        );
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("AMOCRM_FIELD_NEXT_MAINTENANCE", "713001"),
            ("AMOCRM_FIELD_MAINTENANCE_STATUS", "713002"),
            (
                "AMOCRM_MAINTENANCE_STATUS_ENUMS",
                "ok=1,due=2,scheduled=3,in_progress=4,done=5,overdue=6",
            ),
            ("AMOCRM_SYNC_PIPELINES", "10226282, 10226286"),
        ]);
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        let ids = c.sync.require_field_ids().unwrap();
        assert_eq!((ids.next_maintenance, ids.status), (713001, 713002));
        assert_eq!(c.sync.pipelines, vec![10226282, 10226286]);
        pairs.retain(|(k, _)| *k != "AMOCRM_MAINTENANCE_STATUS_ENUMS");
        pairs.push(("AMOCRM_MAINTENANCE_STATUS_ENUMS", "ok=1"));
        let c = Config::from_lookup(lookup(&pairs));
        assert_eq!(c.unwrap_err().var, "AMOCRM_MAINTENANCE_STATUS_ENUMS");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("REMINDER_DAYS", "-1"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs)).unwrap_err().var,
            "REMINDER_DAYS"
        );
    }

    #[test]
    fn missing_table_fails_loudly_and_bad_numbers_name_the_variable() {
        let err = Config::from_lookup(lookup(&MINIMAL[1..])).unwrap_err();
        assert_eq!(err.var, "LEADS_TABLE");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("AMOCRM_PIPELINE_ID", "abc"));
        let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(err.var, "AMOCRM_PIPELINE_ID");
    }
}
