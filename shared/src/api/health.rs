//! `GET /health` on lead-ingest, for monitoring and operators (header `X-Admin-Key`): the
//! report of `ops::health` as JSON, 200 when nobody needs to act, 503 with the reasons when
//! someone does.

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{error, warn};

use super::http::{error_response, header, json_response};
use crate::ops::health::HealthService;
use crate::secrets::AppSecretsSource;

pub async fn health(
    service: Option<&HealthService>,
    secrets: &AppSecretsSource,
    req: &Request,
) -> Response<Body> {
    if secrets.current().await.admin_key.is_none() {
        error!("GET /health called but no admin_key is set in the app secret");
    }
    if !secrets
        .accepts(|s| s.admin_key.as_deref(), header(req, "x-admin-key"))
        .await
    {
        return error_response(
            401,
            "unauthorized",
            "a valid X-Admin-Key header is required",
        );
    }
    let Some(service) = service else {
        return json_response(
            503,
            &json!({
                "status": "unhealthy",
                "reasons": [{
                    "code": "not_configured",
                    "message": "this function was started without the health sources",
                    "hint": "Report it: the function's wiring lacks the health service.",
                }],
            }),
        );
    };
    let report = service.report(Utc::now()).await;
    let status = if report.healthy() { 200 } else { 503 };
    if status == 503 {
        let codes: Vec<&str> = report.reasons.iter().map(|r| r.code).collect();
        warn!(reasons = ?codes, "health: unhealthy");
    }
    match serde_json::to_value(&report) {
        Ok(body) => json_response(status, &body),
        Err(e) => {
            error!(error = %e, "health report not serialisable");
            error_response(500, "internal", "the health report could not be rendered")
        }
    }
}
