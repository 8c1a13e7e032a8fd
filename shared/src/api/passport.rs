//! passport-api for the Telegram Mini App: `GET /passport` and `POST /passport/service-requests`,
//! both authenticated by Telegram's signed initData (`Authorization: tma <initData>`).

use std::sync::Arc;

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::http::{Cors, body_bytes, error_response, header, json_response, route};
use crate::leads::accept::{RepeatPolicy, accept_lead};
use crate::leads::intake::{self, Intake, IntakeError};
use crate::maintenance::local::service_requested;
use crate::passport::{Equipment, EquipmentState};
use crate::ports::{LeadStore, PassportStore, StoreError};
use crate::telegram::{DEFAULT_MAX_AGE_SECS, TelegramUser, verify_init_data};

const MAX_REQUEST_BYTES: usize = 16 * 1024;

pub struct PassportApi {
    pub passport: Arc<dyn PassportStore>,
    pub leads: Arc<dyn LeadStore>,
    /// From the app secret; without it every call is 401 (and logged as a config error).
    /// The app secret: its `telegram_bot_token` signs the Mini App's initData (re-read on
    /// rotation).
    pub secrets: Arc<crate::secrets::AppSecretsSource>,
    pub repeat: RepeatPolicy,
    /// The Mini App's origin(s): the TMA page calls this API from the browser.
    pub cors: Cors,
}

fn equipment_json(e: &Equipment) -> Value {
    json!({
        "serial": e.serial,
        "model": e.model,
        "purchased_at": e.purchased_at.date_naive().to_string(),
        "maintenance": {
            "status": e.maintenance.status.as_str(),
            "status_title": e.maintenance.status.title_ru(),
            "next_due": e.maintenance.next_due.to_string(),
        },
        "amo_lead_id": e.amo_lead_id,
    })
}

impl PassportApi {
    /// One API Gateway request in, its response out (never an error: API Gateway sees none).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        super::http::traced(req, |req| self.route(req)).await
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let resp = match route(&req) {
            ("OPTIONS", "/passport") => return self.cors.preflight(&req, "GET, OPTIONS"),
            ("OPTIONS", "/passport/service-requests") => {
                return self.cors.preflight(&req, "POST, OPTIONS");
            }
            (method, path) => match (self.user(&req).await, method, path) {
                (None, ..) => error_response(
                    401,
                    "unauthorized",
                    "send Authorization: tma <initData> from the Mini App",
                ),
                (Some(user), "GET", "/passport") => self.passport(&user).await,
                (Some(user), "POST", "/passport/service-requests") => {
                    self.service_request(&req, &user).await
                }
                _ => error_response(404, "not_found", "no such route"),
            },
        };
        self.cors.apply(&req, resp)
    }

    /// The verified Telegram user; `None` (logged with the reason) means 401. initData that
    /// fails the check is checked once more against a fresh read of the bot token (rotation).
    async fn user(&self, req: &Request) -> Option<TelegramUser> {
        let init_data = header(req, "authorization")?.strip_prefix("tma ")?.trim();
        let verify = |secrets: &crate::ports::AppSecrets| {
            let Some(bot_token) = secrets.telegram_bot_token.as_deref() else {
                tracing::error!("telegram_bot_token is not set in the app secret");
                return None;
            };
            Some(verify_init_data(
                init_data,
                bot_token,
                Utc::now().timestamp(),
                DEFAULT_MAX_AGE_SECS,
            ))
        };
        let first = verify(self.secrets.current().await.as_ref())?;
        let checked = match first {
            Err(_) => match self.secrets.after_miss().await {
                Some(fresh) => verify(fresh.as_ref()).unwrap_or(first),
                None => first,
            },
            ok => ok,
        };
        checked
            .map_err(|e| warn!(reason = %e, "initData refused"))
            .ok()
    }

    async fn active_equipment(&self, user: &TelegramUser) -> Result<Vec<Equipment>, StoreError> {
        let all = self.passport.for_owner(user.id).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.state == EquipmentState::Active)
            .collect())
    }

    async fn passport(&self, user: &TelegramUser) -> Response<Body> {
        match self.active_equipment(user).await {
            Err(e) => unavailable(e),
            Ok(equipment) => json_response(
                200,
                &json!({
                    "telegram_id": user.id,
                    "equipment": equipment.iter().map(equipment_json).collect::<Vec<_>>(),
                }),
            ),
        }
    }

    async fn service_request(&self, req: &Request, user: &TelegramUser) -> Response<Body> {
        let body = body_bytes(req);
        if body.len() > MAX_REQUEST_BYTES {
            return json_response(
                413,
                &json!({"error": "payload_too_large", "limit_bytes": MAX_REQUEST_BYTES}),
            );
        }
        let Ok(asked) = serde_json::from_slice::<Value>(body) else {
            return error_response(
                400,
                "malformed_body",
                "send a JSON object {\"serial\", \"message\"}",
            );
        };
        let Some(serial) = asked["serial"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return json_response(
                400,
                &json!({"error": "validation_failed", "fields": [{"field": "serial", "message": "Укажите серийный номер оборудования"}]}),
            );
        };
        let equipment = match self.active_equipment(user).await {
            Ok(all) => all.into_iter().find(|e| e.serial == serial),
            Err(e) => return unavailable(e),
        };
        let Some(equipment) = equipment else {
            return error_response(404, "unknown_serial", "no such equipment in your passport");
        };
        let name = [Some(user.first_name.as_str()), user.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // The same intake path as POST /leads: one validator, one store, one delivery.
        let lead_body = json!({
            "source": "tma",
            "intent": "service",
            "name": if name.is_empty() { format!("Telegram {}", user.id) } else { name },
            "telegram_id": user.id,
            "message": asked["message"],
            "equipment": {"model": equipment.model, "serial": equipment.serial},
        });
        let request = match intake::parse_json(lead_body.to_string().as_bytes()) {
            Ok(Intake::Lead(r)) => r,
            Ok(Intake::Spam) => unreachable!("no honeypot field is set here"),
            Err(IntakeError::Invalid(fields)) => {
                return json_response(
                    400,
                    &json!({"error": "validation_failed", "fields": fields}),
                );
            }
            Err(IntakeError::Malformed(reason)) => {
                return error_response(400, "malformed_body", &reason);
            }
        };
        let key = header(req, "idempotency-key")
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200);
        match accept_lead(self.leads.as_ref(), request, key, Utc::now(), self.repeat).await {
            Ok(accepted) => {
                info!(lead_id = %accepted.lead_id, repeat = accepted.repeat, "service request accepted");
                if !accepted.repeat {
                    // The machine's status changes on our side; the maintenance sync takes it
                    // to the deal. The request itself is safe already, so a failure only logs.
                    let marked = service_requested(
                        self.passport.as_ref(),
                        user.id,
                        &equipment.serial,
                        Utc::now(),
                    )
                    .await;
                    if let Err(e) = marked {
                        warn!(error = %e, "service request: the machine's status was not updated");
                    }
                }
                json_response(
                    202,
                    &json!({"lead_id": accepted.lead_id, "status": "accepted"}),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "service request could not be stored");
                error_response(
                    503,
                    "temporarily_unavailable",
                    "the request was not saved; please retry",
                )
            }
        }
    }
}

fn unavailable(e: StoreError) -> Response<Body> {
    tracing::error!(error = %e, "passport read failed");
    error_response(503, "temporarily_unavailable", "retry later")
}
