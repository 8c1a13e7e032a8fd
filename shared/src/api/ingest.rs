//! lead-ingest: `POST /leads` (+ CORS preflight), `GET /ingest/test-crm` and `GET /health`.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{error, info, warn};

use super::http::{Cors, body_bytes, error_response, header, json_response, route};
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
            ("POST", "/leads") => self.post_lead(&req).await,
            ("OPTIONS", "/leads") => return self.cors.preflight(&req, "POST, OPTIONS"),
            ("GET", "/ingest/test-crm") => self.test_crm(&req).await,
            ("GET", "/health") => {
                super::health::health(self.health.as_deref(), &self.secrets, &req).await
            }
            (_, "/leads") | (_, "/ingest/test-crm") | (_, "/health") => error_response(
                405,
                "method_not_allowed",
                "method not allowed on this route",
            ),
            _ => error_response(404, "not_found", "no such route"),
        };
        self.cors.apply(&req, resp)
    }

    async fn post_lead(&self, req: &Request) -> Response<Body> {
        let body = body_bytes(req);
        if body.len() > MAX_BODY_BYTES {
            return json_response(
                413,
                &json!({"error": "payload_too_large", "limit_bytes": MAX_BODY_BYTES}),
            );
        }
        let content_type = header(req, "content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let parsed = match content_type.as_deref() {
            Some("application/json") => intake::parse_json(body),
            Some("application/x-www-form-urlencoded") => intake::parse_form(body),
            _ => {
                return json_response(
                    415,
                    &json!({
                        "error": "unsupported_media_type",
                        "message": "send application/json or application/x-www-form-urlencoded",
                    }),
                );
            }
        };
        let idempotency_key = header(req, "idempotency-key").map(str::trim);
        if let Some(key) = idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || key.chars().any(char::is_control))
        {
            return validation_failed(vec![json!({
                "field": "Idempotency-Key",
                "message": format!("must be 1–{MAX_IDEMPOTENCY_KEY} printable characters"),
            })]);
        }
        let request = match parsed {
            Ok(Intake::Lead(request)) => request,
            Ok(Intake::Spam) => {
                // Answered like success so bots learn nothing; nothing is stored.
                warn!(spam = true, "honeypot field filled; lead dropped");
                return accepted(&new_lead_id());
            }
            Err(IntakeError::Malformed(reason)) => {
                return error_response(400, "malformed_body", &reason);
            }
            Err(IntakeError::Invalid(fields)) => {
                return validation_failed(
                    fields
                        .iter()
                        .map(|f| json!({"field": f.field, "message": f.message}))
                        .collect(),
                );
            }
        };
        let (source, phone, email) = (
            request.source.as_str(),
            request.phone.as_deref().map(mask_phone),
            request.email.as_deref().map(mask_email),
        );
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
                    phone = phone.as_deref(),
                    email = email.as_deref(),
                    "lead accepted"
                );
                accepted(&accepted_lead.lead_id)
            }
            Err(e) => {
                error!(error = %e, "lead could not be stored");
                let mut resp = error_response(
                    503,
                    "temporarily_unavailable",
                    "the request was not saved; please retry",
                );
                resp.headers_mut()
                    .insert("retry-after", "5".parse().expect("static"));
                resp
            }
        }
    }

    async fn test_crm(&self, req: &Request) -> Response<Body> {
        if self.secrets.current().await.admin_key.is_none() {
            error!("test-crm called but no admin_key is set in the app secret");
        }
        if !self
            .secrets
            .accepts(|s| s.admin_key.as_deref(), header(req, "x-admin-key"))
            .await
        {
            return error_response(
                401,
                "unauthorized",
                "a valid X-Admin-Key header is required",
            );
        }
        match self.probe.create_test_lead().await {
            Ok(id) => json_response(200, &json!({"status": "success", "amo_lead_id": id})),
            Err(e) => {
                error!(error = %e.message, hint = %e.hint, status = ?e.status, "test-crm failed");
                json_response(
                    502,
                    &json!({"status": "error", "error": e.message, "hint": e.hint}),
                )
            }
        }
    }
}

fn accepted(lead_id: &str) -> Response<Body> {
    json_response(202, &json!({"lead_id": lead_id, "status": "accepted"}))
}

fn validation_failed(fields: Vec<serde_json::Value>) -> Response<Body> {
    json_response(
        400,
        &json!({"error": "validation_failed", "fields": fields}),
    )
}
