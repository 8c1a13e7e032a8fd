//! CORS for the browser callers: the site's pages (`/leads`) and the Mini App's page
//! (`/passport*`), each with its own list of origins. An origin not on the list gets nothing:
//! its preflight and its requests are answered 403, without any `Access-Control-*` header.

use lambda_http::{Body, Request, Response};

use super::http::{ApiError, header};

/// Headers a browser script may read: the retry delay and the id to quote to support.
const EXPOSED_HEADERS: &str = "Retry-After, X-Correlation-Id";
/// Headers the callers send beyond the CORS-safelisted ones.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key";
/// How long a browser may reuse a preflight: two hours, Chromium's own cap.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 7200;

#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
}

/// What the request's `Origin` says about it.
enum Caller<'a> {
    /// No `Origin`: a server, a bot, curl; CORS does not apply.
    NotABrowser,
    Allowed(&'a str),
    Refused,
}

impl Cors {
    pub fn new(origins: &[String]) -> Self {
        Cors {
            allowed_origins: origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    fn caller<'a>(&self, req: &'a Request) -> Caller<'a> {
        match header(req, "origin") {
            None => Caller::NotABrowser,
            Some(origin) if self.allowed_origins.iter().any(|o| o == origin) => {
                Caller::Allowed(origin)
            }
            Some(_) => Caller::Refused,
        }
    }

    /// `Some(403)` for a request from an origin not on the list (a form posted from another
    /// site included: no preflight protects a form-encoded POST).
    pub fn refuse(&self, req: &Request) -> Option<Response<Body>> {
        matches!(self.caller(req), Caller::Refused).then(|| self.apply(req, refused()))
    }

    /// Adds the CORS headers when the caller's origin is allowed.
    pub fn apply(&self, req: &Request, mut resp: Response<Body>) -> Response<Body> {
        let headers = resp.headers_mut();
        headers.insert("vary", "Origin".parse().expect("static"));
        if let Caller::Allowed(origin) = self.caller(req)
            && let Ok(origin) = origin.parse()
        {
            headers.insert("access-control-allow-origin", origin);
            headers.insert(
                "access-control-expose-headers",
                EXPOSED_HEADERS.parse().expect("static"),
            );
        }
        resp
    }

    /// The answer to an `OPTIONS` on a route with `methods`.
    pub fn preflight(&self, req: &Request, methods: &'static str) -> Response<Body> {
        let mut resp = match self.caller(req) {
            Caller::Refused => refused(),
            _ => Response::builder()
                .status(204)
                .header("allow", methods)
                .body(Body::Empty)
                .expect("static response parts are valid"),
        };
        if let Caller::Allowed(_) = self.caller(req) {
            let h = resp.headers_mut();
            h.insert(
                "access-control-allow-methods",
                methods.parse().expect("static"),
            );
            h.insert(
                "access-control-allow-headers",
                ALLOWED_HEADERS.parse().expect("static"),
            );
            h.insert("access-control-max-age", PREFLIGHT_MAX_AGE_SECS.into());
        }
        self.apply(req, resp)
    }
}

fn refused() -> Response<Body> {
    ApiError::new(
        403,
        "origin_not_allowed",
        "Запросы с этого сайта не принимаются.",
    )
    .response()
}
