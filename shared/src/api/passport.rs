//! passport-api for the Telegram Mini App: `GET /passport` and `POST /passport/service-requests`,
//! both authenticated by Telegram's signed initData (`Authorization: tma <initData>`).

use std::sync::Arc;

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::cors::Cors;
use super::http::{ApiError, body_bytes, json_response, route};
use super::ingest::{idempotency_key, telegram_refused, validation_failed};
use super::routes::unrouted;
use super::telegram_auth::{init_data, mini_app_user};
use crate::leads::accept::{RepeatPolicy, accept_lead};
use crate::leads::intake::{self, Intake, IntakeError};
use crate::maintenance::local::service_requested;
use crate::passport::{Equipment, EquipmentState};
use crate::ports::{LeadStore, PassportStore, StoreError};
use crate::telegram::TelegramUser;

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
        match route(&req) {
            ("OPTIONS", "/passport") => return self.cors.preflight(&req, "GET, OPTIONS"),
            ("OPTIONS", "/passport/service-requests") => {
                return self.cors.preflight(&req, "POST, OPTIONS");
            }
            _ => {}
        }
        if let Some(refused) = self.cors.refuse(&req) {
            return refused;
        }
        let (method, path) = route(&req);
        let resp = match (self.user(&req).await, method, path) {
            (None, ..) => telegram_refused(),
            (Some(user), "GET", "/passport") => self.passport(&user).await,
            (Some(user), "POST", "/passport/service-requests") => {
                self.service_request(&req, &user).await
            }
            _ => unrouted(&req),
        };
        self.cors.apply(&req, resp)
    }

    /// The verified Telegram user; `None` (logged with the reason) means 401.
    async fn user(&self, req: &Request) -> Option<TelegramUser> {
        mini_app_user(&self.secrets, init_data(req)?).await
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
            return ApiError::too_large(MAX_REQUEST_BYTES).response();
        }
        let key = match idempotency_key(req) {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let asked = match serde_json::from_slice::<Value>(body) {
            Ok(asked @ Value::Object(_)) => asked,
            _ => {
                return ApiError::malformed("send a JSON object {\"serial\", \"message\"}")
                    .response();
            }
        };
        let Some(serial) = asked["serial"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return ApiError::validation(vec![
                json!({"field": "serial", "message": "Укажите серийный номер оборудования"}),
            ])
            .response();
        };
        let equipment = match self.active_equipment(user).await {
            Ok(all) => all.into_iter().find(|e| e.serial == serial),
            Err(e) => return unavailable(e),
        };
        let Some(equipment) = equipment else {
            return ApiError::new(
                404,
                "unknown_serial",
                "Оборудования с таким серийным номером нет в вашем паспорте.",
            )
            .response();
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
            Err(IntakeError::Invalid(fields)) => return validation_failed(&fields),
            Err(IntakeError::Malformed(reason)) => return ApiError::malformed(reason).response(),
        };
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
                ApiError::unavailable().response()
            }
        }
    }
}

fn unavailable(e: StoreError) -> Response<Body> {
    tracing::error!(error = %e, "passport read failed");
    ApiError::new(
        503,
        "temporarily_unavailable",
        "Паспорт сейчас недоступен. Повторите через несколько секунд.",
    )
    .response()
}
