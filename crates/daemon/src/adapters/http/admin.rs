//! The admin page, `GET /` on the HTTP API's listener: a page and its script, built into
//! the binary (no build step, no external assets). It reads and changes everything through
//! the API itself, with the token the operator types once (README, "Admin page").

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::{Body, full};

const PAGE: &str = include_str!("admin/index.html");
const SCRIPT: &str = include_str!("admin/admin.js");

/// What the page may load and call: its own script and the API of its own origin, nothing
/// else; no framing, no form posts elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

pub(super) fn page() -> Response<Body> {
    asset(PAGE, "text/html; charset=utf-8")
}

pub(super) fn script() -> Response<Body> {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
