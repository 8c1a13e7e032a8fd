//! `doctor`: checks the configuration against the amoCRM account it names, and says how to
//! fix each problem. It reads only (five GET requests to amoCRM):
//! - the app secret has what the routes need (admin key, webhook token);
//! - the token: kind, expiry, and whether amoCRM accepts it (`GET /api/v4/account`);
//! - the account, pipeline, status, responsible user and every configured custom field id
//!   exist (`/api/v4/leads/pipelines`, `/api/v4/users`, `/api/v4/leads/custom_fields`);
//! - our webhook destination is subscribed to the lead events (`/api/v4/webhooks`).

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::finding::Finding;
use super::setup::{WEBHOOK_SETTINGS, WebhookTarget, stale_finding};
use crate::amocrm::admin::LeadField;
use crate::amocrm::token::TokenKind;
use crate::amocrm::{AmoClient, CrmError, TokenHealth, TokenProvider};
use crate::config::{AmoConfig, Config};
use crate::ports::{AppSecrets, SecretError};

/// A long-lived token with less than this left is reported: replacing it takes a person.
pub fn renew_before() -> Duration {
    Duration::days(14)
}

/// A custom field id the configuration names, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldExpectation {
    pub var: &'static str,
    /// The samconfig.toml / template parameter behind the variable, if any.
    pub parameter: Option<&'static str>,
    pub id: i64,
    /// The field's name in the production account (to suggest the right id).
    pub name: &'static str,
    /// amoCRM types that take the values we write.
    pub types: &'static [&'static str],
}

/// The lead fields lead delivery writes.
///
/// Seam: once the maintenance sync is merged, add its `AMOCRM_FIELD_NEXT_MAINTENANCE` (date)
/// and `AMOCRM_FIELD_MAINTENANCE_STATUS` (select) from `config.sync` when they are set.
pub fn configured_fields(amo: &AmoConfig) -> Vec<FieldExpectation> {
    const TEXT: &[&str] = &["text", "textarea"];
    vec![
        FieldExpectation {
            var: "AMOCRM_FIELD_SERIAL",
            parameter: Some("AmoFieldSerial"),
            id: amo.field_serial,
            name: "Серийный номер",
            types: TEXT,
        },
        FieldExpectation {
            var: "AMOCRM_FIELD_MODEL",
            parameter: Some("AmoFieldModel"),
            id: amo.field_model,
            name: "Модель оборудования",
            types: TEXT,
        },
        FieldExpectation {
            var: "AMOCRM_FIELD_TELEGRAM_ID",
            parameter: Some("AmoFieldTelegramId"),
            id: amo.field_telegram_id,
            name: "Telegram ID",
            types: &["text", "textarea", "numeric"],
        },
    ]
}

pub struct Doctor<'a> {
    pub config: &'a Config,
    pub amo: &'a AmoClient,
    pub tokens: &'a TokenProvider,
    pub app_secrets: &'a Result<AppSecrets, SecretError>,
    pub webhook: &'a Result<WebhookTarget, Finding>,
    pub fields: Vec<FieldExpectation>,
    pub now: DateTime<Utc>,
}

impl Doctor<'_> {
    /// Every finding, in the order an operator fixes them.
    pub async fn run(&self) -> Vec<Finding> {
        let mut findings = vec![self.app_secret()];
        let (token, account) = self.token().await;
        findings.push(token);
        let Some(account) = account else {
            let mut skipped = vec!["account", "pipeline", "status", "responsible user"];
            skipped.extend(self.fields.iter().map(|f| f.var));
            skipped.push("webhook");
            // A refused address is not a token problem; say which one it is.
            let (why, first) = if findings.last().is_some_and(|f| f.check == "amoCRM access") {
                (
                    "amoCRM refuses our address",
                    "the address (see the amoCRM access finding)",
                )
            } else {
                (
                    "amoCRM did not accept the token",
                    "the token (see the token finding)",
                )
            };
            findings.push(Finding::problem(
                "account checks",
                format!("not checked, {why}: {}", skipped.join(", ")),
                format!("Fix {first} first, then run doctor again."),
            ));
            return findings;
        };
        findings.push(self.account(&account));
        findings.extend(self.pipeline_and_status().await);
        findings.push(self.responsible_user().await);
        findings.extend(self.custom_fields().await);
        findings.extend(self.webhook().await);
        findings
    }

    fn app_secret(&self) -> Finding {
        let id = &self.config.app_secret_id;
        match self.app_secrets {
            Err(e) => Finding::problem(
                "app secret",
                e.to_string(),
                format!(
                    "Create secret {id} (APP_SECRET_ID) as JSON with admin_key, webhook_token, \
                     telegram_bot_token and amocrm_client_secret."
                ),
            ),
            Ok(s) => {
                let missing: Vec<&str> = [
                    ("admin_key", &s.admin_key),
                    ("webhook_token", &s.webhook_token),
                ]
                .into_iter()
                .filter(|(_, v)| v.as_deref().is_none_or(|v| v.trim().is_empty()))
                .map(|(k, _)| k)
                .collect();
                if missing.is_empty() {
                    Finding::ok(
                        "app secret",
                        format!("{id} has admin_key and webhook_token"),
                    )
                } else {
                    Finding::problem(
                        "app secret",
                        format!("{id} lacks {}", missing.join(" and ")),
                        format!(
                            "Add {} (long random strings) to secret {id}: admin_key guards \
                             GET /health and /ingest/test-crm, webhook_token authenticates \
                             amoCRM's webhooks.",
                            missing.join(" and ")
                        ),
                    )
                }
            }
        }
    }

    /// The token finding, and the account when amoCRM accepted the token.
    async fn token(&self) -> (Finding, Option<Value>) {
        let health = match self.tokens.token_health().await {
            Ok(h) => h,
            Err(e) => return (Finding::problem("token", e.message, e.hint), None),
        };
        let what = describe_token(&health, self.now);
        if health.reauthorization_required {
            let fix = health.hint.clone().unwrap_or_else(|| {
                "Re-authorize the integration: GET /oauth/start with the header X-Admin-Key.".into()
            });
            return (
                Finding::problem("token", format!("{what}: re-authorization required"), fix),
                None,
            );
        }
        let account = match self.amo.account().await {
            Ok(a) => a,
            Err(e) => return (refused(&what, &e), None),
        };
        let finding = match (health.kind, health.expires_at) {
            (TokenKind::LongLived, Some(expires)) if expires - self.now < renew_before() => {
                Finding::problem(
                    "token",
                    format!("{what}: amoCRM accepts it, but it expires soon"),
                    format!(
                        "Before {}, generate a new long-lived token in amoCRM → Settings → \
                         Integrations → this integration → Keys and scopes and put it into \
                         secret {} as {{\"kind\":\"long_lived\",\"access_token\":\"<token>\"}}.",
                        expires.format("%Y-%m-%d"),
                        health.secret_id
                    ),
                )
            }
            _ => Finding::ok("token", format!("{what}; amoCRM accepts it")),
        };
        (finding, Some(account))
    }

    fn account(&self, account: &Value) -> Finding {
        let id = account.get("id").and_then(Value::as_i64);
        let subdomain = account
            .get("subdomain")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = account
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cfg = &self.config.amo;
        if !subdomain.eq_ignore_ascii_case(&cfg.subdomain) {
            return Finding::problem(
                "account",
                format!(
                    "the token belongs to account «{name}» ({subdomain}), the configuration names \
                     {}",
                    cfg.subdomain
                ),
                "Put a token of the configured account into the token secret, or set \
                 AMOCRM_SUBDOMAIN (parameter AmoSubdomain) to the account the token belongs to.",
            );
        }
        match (self.config.account_id, id) {
            (Some(want), Some(have)) if want != have => Finding::problem(
                "account",
                format!("account «{name}» has id {have}, AMOCRM_ACCOUNT_ID is {want}"),
                format!(
                    "Set AMOCRM_ACCOUNT_ID={have} (parameter AmoAccountId): webhooks naming \
                     another account are refused."
                ),
            ),
            (None, Some(have)) => Finding::ok(
                "account",
                format!(
                    "«{name}» ({subdomain}, id {have}); AMOCRM_ACCOUNT_ID is not set (set it to \
                     {have} to refuse other accounts' webhooks)"
                ),
            ),
            _ => Finding::ok(
                "account",
                format!(
                    "«{name}» ({subdomain}, id {})",
                    id.map_or("?".into(), |i| i.to_string())
                ),
            ),
        }
    }

    async fn pipeline_and_status(&self) -> Vec<Finding> {
        let cfg = &self.config.amo;
        let pipelines = match self.amo.pipelines().await {
            Ok(p) => p,
            Err(e) => {
                let f = Finding::problem("pipeline", e.message, e.hint);
                let mut s = f.clone();
                s.check = "status".into();
                return vec![f, s];
            }
        };
        let list = pipelines
            .iter()
            .map(|p| format!("{} «{}»", p.id, p.name))
            .collect::<Vec<_>>()
            .join(", ");
        let Some(pipeline) = pipelines.iter().find(|p| p.id == cfg.pipeline_id) else {
            return vec![
                Finding::problem(
                    "pipeline",
                    format!("pipeline {} does not exist", cfg.pipeline_id),
                    format!("Set AMOCRM_PIPELINE_ID (parameter AmoPipelineId) to one of: {list}."),
                ),
                Finding::problem(
                    "status",
                    format!(
                        "status {} not checked: its pipeline does not exist",
                        cfg.status_id
                    ),
                    "Fix AMOCRM_PIPELINE_ID first.",
                ),
            ];
        };
        let pipeline_ok = Finding::ok("pipeline", format!("{} «{}»", pipeline.id, pipeline.name));
        let status = match pipeline.statuses.iter().find(|s| s.id == cfg.status_id) {
            Some(s) if matches!(s.id, 142 | 143) => Finding::problem(
                "status",
                format!("{} «{}» is a closing status", s.id, s.name),
                "New leads must not start won or lost: set AMOCRM_STATUS_ID (parameter \
                 AmoStatusId) to the pipeline's first working status.",
            ),
            Some(s) => Finding::ok("status", format!("{} «{}»", s.id, s.name)),
            None => {
                let elsewhere = pipelines.iter().find_map(|p| {
                    p.statuses
                        .iter()
                        .find(|s| s.id == cfg.status_id)
                        .map(|s| format!(" (it is «{}» of pipeline {} «{}»)", s.name, p.id, p.name))
                });
                Finding::problem(
                    "status",
                    format!(
                        "status {} is not in pipeline {}{}",
                        cfg.status_id,
                        pipeline.id,
                        elsewhere.unwrap_or_default()
                    ),
                    format!(
                        "Set AMOCRM_STATUS_ID (parameter AmoStatusId) to one of pipeline {}'s \
                         statuses: {}.",
                        pipeline.id,
                        pipeline
                            .statuses
                            .iter()
                            .filter(|s| !matches!(s.id, 142 | 143))
                            .map(|s| format!("{} «{}»", s.id, s.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
        };
        vec![pipeline_ok, status]
    }

    async fn responsible_user(&self) -> Finding {
        let want = self.config.amo.responsible_user_id;
        let users = match self.amo.users().await {
            Ok(u) => u,
            Err(e) => return Finding::problem("responsible user", e.message, e.hint),
        };
        let list = || {
            users
                .iter()
                .filter(|u| u.active)
                .map(|u| format!("{} «{}»", u.id, u.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match users.iter().find(|u| u.id == want) {
            Some(u) if u.active => {
                Finding::ok("responsible user", format!("{} «{}»", u.id, u.name))
            }
            Some(u) => Finding::problem(
                "responsible user",
                format!("user {} «{}» is deactivated", u.id, u.name),
                format!(
                    "Set AMOCRM_RESPONSIBLE_USER_ID (parameter AmoResponsibleUserId) to an active \
                     user: {}.",
                    list()
                ),
            ),
            None => Finding::problem(
                "responsible user",
                format!("user {want} does not exist in the account"),
                format!(
                    "Set AMOCRM_RESPONSIBLE_USER_ID (parameter AmoResponsibleUserId) to one of: {}.",
                    list()
                ),
            ),
        }
    }

    async fn custom_fields(&self) -> Vec<Finding> {
        if self.fields.is_empty() {
            return Vec::new();
        }
        let existing = match self.amo.lead_fields().await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .fields
                    .iter()
                    .map(|f| Finding::problem(check_name(f.var), e.message.clone(), e.hint.clone()))
                    .collect();
            }
        };
        self.fields
            .iter()
            .map(|want| field_finding(want, &existing))
            .collect()
    }

    async fn webhook(&self) -> Vec<Finding> {
        let target = match self.webhook {
            Ok(t) => t,
            Err(f) => return vec![f.clone()],
        };
        let subs = match self.amo.webhooks().await {
            Ok(s) => s,
            Err(e) => return vec![Finding::problem("webhook", e.message, e.hint)],
        };
        let setup = "Run `rss-ops setup` (it registers the destination idempotently).";
        let mut findings = vec![
            match subs.iter().find(|s| s.destination == target.destination()) {
                None => Finding::problem(
                    "webhook",
                    format!("{} is not subscribed", target.masked()),
                    setup,
                ),
                Some(s) if s.disabled => Finding::problem(
                    "webhook",
                    format!("{} is subscribed but disabled by amoCRM", target.masked()),
                    "amoCRM disables a webhook after many failed deliveries: check GET /health \
                     and the amocrm-webhook function's log, then re-enable it in amoCRM → \
                     Settings → Integrations → Web hooks.",
                ),
                Some(s) => {
                    let missing: Vec<&str> = WEBHOOK_SETTINGS
                        .into_iter()
                        .filter(|w| !s.settings.iter().any(|have| have == w))
                        .collect();
                    if missing.is_empty() {
                        Finding::ok(
                            "webhook",
                            format!(
                                "{} gets {} (id {})",
                                target.masked(),
                                s.settings.join(", "),
                                s.id
                            ),
                        )
                    } else {
                        Finding::problem(
                            "webhook",
                            format!("{} does not get {}", target.masked(), missing.join(", ")),
                            setup,
                        )
                    }
                }
            },
        ];
        findings.extend(stale_finding(&subs, target));
        findings
    }
}

/// `field AMOCRM_FIELD_SERIAL` for variables, the name itself otherwise.
fn check_name(check: &str) -> String {
    if check.starts_with("AMOCRM_FIELD_") {
        format!("field {check}")
    } else {
        check.to_string()
    }
}

fn field_finding(want: &FieldExpectation, existing: &[LeadField]) -> Finding {
    let check = check_name(want.var);
    let assign = |id: &str| match want.parameter {
        Some(p) => format!(
            "{}={id} (parameter {p} in samconfig.toml) and redeploy.",
            want.var
        ),
        None => format!("{}={id} and redeploy.", want.var),
    };
    match existing.iter().find(|f| f.id == want.id) {
        Some(f) if want.types.contains(&f.field_type.as_str()) => {
            Finding::ok(check, format!("{} «{}» ({})", f.id, f.name, f.field_type))
        }
        Some(f) => Finding::problem(
            check,
            format!(
                "lead field {} «{}» is of type {}; {} needs {}",
                f.id,
                f.name,
                f.field_type,
                want.var,
                want.types.join(" or ")
            ),
            match same_name(want, existing) {
                Some(other) if other.id != f.id => format!("Set {}", assign(&other.id.to_string())),
                _ => format!(
                    "Point {} at a {} lead field (amoCRM → Settings → Leads → fields).",
                    want.var,
                    want.types.join(" or ")
                ),
            },
        ),
        None => Finding::problem(
            check,
            format!("lead field {} does not exist in the account", want.id),
            match same_name(want, existing) {
                Some(other) => format!(
                    "Set {} The account's «{}» field has id {}.",
                    assign(&other.id.to_string()),
                    other.name,
                    other.id
                ),
                None => format!(
                    "Create a {} lead field «{}» in amoCRM (Settings → Leads → fields), then set {}",
                    want.types[0],
                    want.name,
                    assign("<its id>")
                ),
            },
        ),
    }
}

fn same_name<'a>(want: &FieldExpectation, existing: &'a [LeadField]) -> Option<&'a LeadField> {
    existing
        .iter()
        .find(|f| f.name.trim().to_lowercase() == want.name.to_lowercase())
}

/// "long-lived token in secret X, valid until 2031-02-09 (1800 days left)".
fn describe_token(h: &TokenHealth, now: DateTime<Utc>) -> String {
    let kind = match h.kind {
        TokenKind::LongLived => "long-lived token",
        TokenKind::Oauth => "OAuth token pair",
    };
    let expiry = match (h.kind, h.expires_at) {
        (_, None) => ", expiry unknown (not a JWT)".to_string(),
        (TokenKind::LongLived, Some(e)) => format!(
            ", valid until {} ({} days left)",
            e.format("%Y-%m-%d"),
            (e - now).num_days()
        ),
        (TokenKind::Oauth, Some(e)) => format!(
            ", access token valid until {} (refreshed automatically{})",
            e.format("%Y-%m-%d %H:%M UTC"),
            h.last_refresh_at
                .map(|t| format!(", last refresh {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default()
        ),
    };
    format!("{kind} in secret {}{expiry}", h.secret_id)
}

fn refused(what: &str, e: &CrmError) -> Finding {
    if e.kind == crate::amocrm::CrmErrorKind::Blocked {
        // Not the token: the address we call from (whitelist) or a ban. One line says so.
        return Finding::problem(
            "amoCRM access",
            "amoCRM refuses our address (403): add the AmoEgressIp output to the account's API \
             IP whitelist; the token is fine",
            e.hint.clone(),
        );
    }
    Finding::problem(
        "token",
        format!("{what}: GET /api/v4/account failed: {}", e.message),
        e.hint.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amocrm::admin::LeadField;

    fn field(id: i64, name: &str, t: &str) -> LeadField {
        LeadField {
            id,
            name: name.into(),
            code: None,
            field_type: t.into(),
            enums: Vec::new(),
        }
    }

    fn serial(id: i64) -> FieldExpectation {
        FieldExpectation {
            var: "AMOCRM_FIELD_SERIAL",
            parameter: Some("AmoFieldSerial"),
            id,
            name: "Серийный номер",
            types: &["text", "textarea"],
        }
    }

    #[test]
    fn a_missing_field_id_names_the_variable_and_the_right_id() {
        let existing = [field(712629, "Серийный номер", "text")];
        let f = field_finding(&serial(999999), &existing);
        assert!(!f.ok);
        assert_eq!(f.check, "field AMOCRM_FIELD_SERIAL");
        assert_eq!(f.detail, "lead field 999999 does not exist in the account");
        assert_eq!(
            f.fix.as_deref(),
            Some(
                "Set AMOCRM_FIELD_SERIAL=712629 (parameter AmoFieldSerial in samconfig.toml) and \
                 redeploy. The account's «Серийный номер» field has id 712629."
            )
        );
        let f = field_finding(&serial(999999), &[]);
        assert!(
            f.fix
                .unwrap()
                .starts_with("Create a text lead field «Серийный номер»")
        );
        assert!(field_finding(&serial(712629), &existing).ok);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_problem() {
        let existing = [field(5, "Серийный номер", "date")];
        let f = field_finding(&serial(5), &existing);
        assert!(!f.ok);
        assert!(f.detail.contains("is of type date"), "{}", f.detail);
    }

    #[test]
    fn token_descriptions_say_kind_secret_and_expiry() {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let h = TokenHealth {
            kind: TokenKind::LongLived,
            secret_id: "prod/amocrm-token".into(),
            expires_at: Some(now + Duration::days(30)),
            reauthorization_required: false,
            hint: None,
            since: None,
            last_refresh_at: None,
            last_authorized_at: None,
            last_error: None,
        };
        assert!(
            describe_token(&h, now)
                .starts_with("long-lived token in secret prod/amocrm-token, valid until")
        );
        assert!(describe_token(&h, now).ends_with("(30 days left)"));
    }
}
