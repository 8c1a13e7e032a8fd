//! The operators' routes (`/health`, `/ingest/test-crm`, `/oauth/start`) answer only a request
//! that carries the app secret's `admin_key` as `X-Admin-Key`.

use lambda_http::{Body, Request, Response};
use tracing::{error, warn};

use super::http::{ApiError, header};
use crate::secrets::AppSecretsSource;

/// 401 unless the request carries the admin key; `route` names the route in the logs.
pub async fn admin_refused(
    secrets: &AppSecretsSource,
    req: &Request,
    route: &str,
) -> Option<Response<Body>> {
    if secrets.current().await.admin_key.is_none() {
        error!(route, "called but no admin_key is set in the app secret");
    }
    if secrets
        .accepts(|s| s.admin_key.as_deref(), header(req, "x-admin-key"))
        .await
    {
        return None;
    }
    warn!(route, "a missing or wrong admin key refused");
    Some(
        ApiError::new(
            401,
            "unauthorized",
            "Нужен действующий ключ администратора в заголовке X-Admin-Key.",
        )
        .response(),
    )
}
