//! The routes of template.yaml, for the answer to everything else: API Gateway's `$default`
//! route sends any other method or path to lead-ingest, which answers 405 (with `Allow`) for a
//! known path and 404 for the rest, in the same error body as every route.

use lambda_http::{Body, Request, Response};

use super::http::{ApiError, route};

/// Each path of the API and the methods it answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("/leads", "POST, OPTIONS"),
    ("/ingest/test-crm", "GET"),
    ("/health", "GET"),
    ("/webhook/amocrm", "GET, POST"),
    ("/oauth/start", "GET"),
    ("/passport", "GET, OPTIONS"),
    ("/passport/service-requests", "POST, OPTIONS"),
];

/// The answer for a method or path no route has.
pub fn unrouted(req: &Request) -> Response<Body> {
    let (_, path) = route(req);
    match ROUTES.iter().find(|(p, _)| *p == path) {
        Some((_, allow)) => ApiError::method_not_allowed(allow).response(),
        None => ApiError::not_found().response(),
    }
}
