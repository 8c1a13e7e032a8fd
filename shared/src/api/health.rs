//! `GET /health` on lead-ingest, for monitoring and operators (header `X-Admin-Key`): the
//! report of `ops::health` as JSON, 200 when nobody needs to act, 503 with the reasons when
//! someone does.

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tracing::{error, warn};

use super::http::{ApiError, json_response};
use crate::ops::health::HealthService;
use crate::secrets::AppSecretsSource;

/// A monitor polling an unhealthy integration needs no answer more often than this.
const UNHEALTHY_RETRY_AFTER_SECS: u64 = 60;

pub async fn health(
    service: Option<&HealthService>,
    secrets: &AppSecretsSource,
    req: &Request,
) -> Response<Body> {
    if let Some(refused) = super::admin::admin_refused(secrets, req, "health").await {
        return refused;
    }
    let Some(service) = service else {
        return unhealthy(json!({
            "status": "unhealthy",
            "reasons": [{
                "code": "not_configured",
                "message": "this function was started without the health sources",
                "hint": "Report it: the function's wiring lacks the health service.",
            }],
        }));
    };
    let report = service.report(Utc::now()).await;
    let body = match serde_json::to_value(&report) {
        Ok(body) => body,
        Err(e) => {
            error!(error = %e, "health report not serialisable");
            return ApiError::new(500, "internal", "Отчёт о состоянии не удалось собрать.")
                .response();
        }
    };
    if report.healthy() {
        return json_response(200, &body);
    }
    let codes: Vec<&str> = report.reasons.iter().map(|r| r.code).collect();
    warn!(reasons = ?codes, "health: unhealthy");
    unhealthy(body)
}

/// 503 in the error body every route uses, with the report's `status` and `reasons` in it.
fn unhealthy(report: Value) -> Response<Body> {
    let mut error = ApiError::new(
        503,
        "unhealthy",
        "Интеграции нужна помощь инженера: причины в поле reasons.",
    )
    .retry_after(UNHEALTHY_RETRY_AFTER_SECS);
    if let Value::Object(members) = report {
        for (key, value) in members {
            error = error.member(&key, value);
        }
    }
    error.response()
}
