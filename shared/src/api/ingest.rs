//! lead-ingest: `POST /leads` (+ CORS preflight), `GET /ingest/test-crm`, `GET /health`, and
//! API Gateway's `$default` route (404/405 for everything else).
//!
//! A lead's `telegram_id` is trusted only when Telegram vouches for it: the Mini App's initData
//! (`Authorization: tma …`, which replaces the body's id) or the bot's key (`X-Bot-Key`). A lead
//! with `source = tma` needs the initData. Any other id is kept but marked unverified (a tag and
//! a line in the note), since a won deal registers its machine in that id's passport.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{error, info, warn};

use super::admin::admin_refused;
use super::cors::Cors;
use super::http::{ApiError, body_bytes, header, json_response, route};
use super::routes::unrouted;
use super::telegram_auth::{TelegramVoucher, voucher};
use crate::leads::Source;
use crate::leads::accept::{RepeatPolicy, accept_lead, new_lead_id};
use crate::leads::intake::{self, Intake, IntakeError};
use crate::leads::phone::{mask_email, mask_phone};
use crate::metrics::Metric;
use crate::ops::health::HealthService;
use crate::ports::{CrmProbe, LeadStore};
use crate::secrets::AppSecretsSource;

/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 200;

pub struct LeadIngestApi {
    pub store: Arc<dyn LeadStore>,
    pub probe: Arc<dyn CrmProbe>,
    /// The app secret: its `admin_key` authorises test-crm and /health (re-read on rotation).
    pub secrets: Arc<AppSecretsSource>,
    pub cors: Cors,
    pub repeat: RepeatPolicy,
    /// `GET /health`: token, amoCRM errors, waiting work, last sync.
    pub health: Option<Arc<HealthService>>,
}

impl LeadIngestApi {
    /// One API Gateway request in, its response out (never an error: API Gateway sees none).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        super::http::traced(req, |req| self.route(req)).await
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let resp = match route(&req) {
            ("POST", "/leads") => match self.cors.refuse(&req) {
                Some(refused) => return refused,
                None => self.post_lead(&req).await,
            },
            ("OPTIONS", "/leads") => return self.cors.preflight(&req, "POST, OPTIONS"),
            ("GET", "/ingest/test-crm") => self.test_crm(&req).await,
            ("GET", "/health") => {
                super::health::health(self.health.as_deref(), &self.secrets, &req).await
            }
            // API Gateway's `$default` route: every other method and path comes here.
            _ => unrouted(&req),
        };
        self.cors.apply(&req, resp)
    }

    async fn post_lead(&self, req: &Request) -> Response<Body> {
        let body = body_bytes(req);
        if body.len() > MAX_BODY_BYTES {
            return ApiError::too_large(MAX_BODY_BYTES).response();
        }
        let content_type = header(req, "content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let json = match content_type.as_deref() {
            Some("application/json") => true,
            Some("application/x-www-form-urlencoded") => false,
            _ => {
                return ApiError::new(
                    415,
                    "unsupported_media_type",
                    "Отправьте заявку как application/json или application/x-www-form-urlencoded.",
                )
                .response();
            }
        };
        let idempotency_key = match idempotency_key(req) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let voucher = voucher(&self.secrets, req).await;
        let telegram_user = match &voucher {
            TelegramVoucher::Refused => return telegram_refused(),
            TelegramVoucher::MiniApp(user) => Some(user.id),
            TelegramVoucher::Bot | TelegramVoucher::None => None,
        };
        let parsed = if json {
            intake::parse_json_from(body, telegram_user)
        } else {
            intake::parse_form_from(body, telegram_user)
        };
        let mut request = match parsed {
            Ok(Intake::Lead(request)) => request,
            Ok(Intake::Spam) => {
                // Answered like success so bots learn nothing; nothing is stored.
                warn!(spam = true, "honeypot field filled; lead dropped");
                return accepted(&new_lead_id());
            }
            Err(IntakeError::Malformed(reason)) => return ApiError::malformed(reason).response(),
            Err(IntakeError::Invalid(fields)) => return validation_failed(&fields),
        };
        match voucher {
            TelegramVoucher::None if request.source == Source::Tma => {
                return ApiError::new(
                    401,
                    "telegram_auth_required",
                    "Заявка из Mini App принимается только с подписью Telegram: откройте \
                     приложение из Telegram заново.",
                )
                .response();
            }
            TelegramVoucher::None => request.telegram_unverified = request.telegram_id.is_some(),
            _ => {}
        }
        let (source, phone, email) = (
            request.source.as_str(),
            request.phone.as_deref().map(mask_phone),
            request.email.as_deref().map(mask_email),
        );
        let telegram_unverified = request.telegram_unverified;
        match accept_lead(
            self.store.as_ref(),
            request,
            idempotency_key,
            Utc::now(),
            self.repeat,
        )
        .await
        {
            Ok(accepted_lead) => {
                crate::metrics::count(if accepted_lead.repeat {
                    Metric::LeadsRepeated
                } else {
                    Metric::LeadsAccepted
                });
                info!(
                    lead_id = %accepted_lead.lead_id,
                    repeat = accepted_lead.repeat,
                    source,
                    telegram_unverified,
                    phone = phone.as_deref(),
                    email = email.as_deref(),
                    "lead accepted"
                );
                accepted(&accepted_lead.lead_id)
            }
            Err(e) => {
                error!(error = %e, "lead could not be stored");
                ApiError::unavailable().response()
            }
        }
    }

    async fn test_crm(&self, req: &Request) -> Response<Body> {
        if let Some(refused) = admin_refused(&self.secrets, req, "test-crm").await {
            return refused;
        }
        match self.probe.create_test_lead().await {
            Ok(id) => json_response(200, &json!({"status": "success", "amo_lead_id": id})),
            Err(e) => {
                error!(error = %e.message, hint = %e.hint, kind = ?e.kind, "test-crm failed");
                ApiError::new(
                    502,
                    "amocrm_failed",
                    "amoCRM не принял тестовую сделку: подробности в поле hint.",
                )
                .member("status", "error".into())
                .member("detail", e.message.into())
                .member("hint", e.hint.into())
                .response()
            }
        }
    }
}

/// The `Idempotency-Key` header, trimmed; a present but unusable one is a 400.
#[allow(clippy::result_large_err)]
pub(super) fn idempotency_key(req: &Request) -> Result<Option<&str>, Response<Body>> {
    let Some(key) = header(req, "idempotency-key").map(str::trim) else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![json!({
            "field": "Idempotency-Key",
            "message": format!("Ключ повтора должен быть из 1–{MAX_IDEMPOTENCY_KEY} печатных символов"),
        })])
        .response());
    }
    Ok(Some(key))
}

pub(super) fn telegram_refused() -> Response<Body> {
    ApiError::new(
        401,
        "unauthorized",
        "Не удалось подтвердить вход через Telegram: откройте приложение из Telegram заново.",
    )
    .response()
}

fn accepted(lead_id: &str) -> Response<Body> {
    json_response(202, &json!({"lead_id": lead_id, "status": "accepted"}))
}

pub(super) fn validation_failed(fields: &[intake::FieldError]) -> Response<Body> {
    ApiError::validation(
        fields
            .iter()
            .map(|f| json!({"field": f.field, "message": f.message}))
            .collect(),
    )
    .response()
}
