//! What every request goes through, written once: the deadline, the request log (with the API's own domain
//! remembered for links in emails), the answer floor of the portal's sign-in form, and our shape of a 404 and a
//! 405.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::ALLOW;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::extract::Segments;
use super::gateway::Gateway;
use super::render;
use crate::app::App;

/// Gumroad gives up after 5 s, and so does everything else here: whatever is still running by then is answered
/// with the surface's retryable 503. Code below a handler asks `crate::deadline::remaining()` for what is left.
pub const DEADLINE: Duration = Duration::from_millis(4_500);

/// What a surface answers when a request runs out of time, given the path's tenant segment.
#[derive(Clone, Copy)]
pub struct OnTimeout(pub fn(&str) -> Response);

/// Runs the handler within `DEADLINE`; if it is not done by then, the surface's answer instead.
pub async fn deadline(
    State(on_timeout): State<OnTimeout>,
    segments: Segments,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    match crate::deadline::within(DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            // The route's template, never the path itself: a download link's path carries its token.
            let route = route.as_ref().map_or("", MatchedPath::as_str);
            tracing::error!(
                tenant = segments.tenant(),
                route,
                outcome = "unavailable",
                "deadline exceeded"
            );
            (on_timeout.0)(segments.tenant())
        }
    }
}

/// Answers no sooner than the portal's floor, so that a request that sends a mail and one that does not take
/// alike.
pub async fn answer_floor(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(rest) = app
        .portal
        .settings
        .answer_floor
        .checked_sub(started.elapsed())
    {
        tokio::time::sleep(rest).await;
    }
    response
}

/// Whether CloudFront forwarded the request: it carries the edge's secret header (compared in constant time).
fn came_through_edge(request: &Request, secret: &str) -> bool {
    use subtle::ConstantTimeEq;
    request
        .headers()
        .get(EDGE_HEADER)
        .is_some_and(|value| bool::from(value.as_bytes().ct_eq(secret.as_bytes())))
}

/// The header the WAF edge's CloudFront distribution adds (`template.yaml`, `EdgeDistribution`).
pub const EDGE_HEADER: &str = "x-keystead-edge";

/// What every request meets first, around the table of routes: refuses requests that bypassed the WAF edge when
/// there is one, remembers the API's domain from API Gateway's request context (links in emails point there),
/// logs the request's method, status and time at debug level, and gives a 405 our `Allow` header. (A plain
/// function rather than a layer: a router's `layer` wraps each route, before a 405 gets its `Allow`, and one
/// more router level around the table cost every request a boxed service and future.)
pub async fn edge(app: &App, routes: &Router, request: Request) -> Response {
    if let Some(domain) = request
        .extensions()
        .get::<Gateway>()
        .and_then(|gateway| gateway.domain_name.as_deref())
    {
        app.portal.saw_domain(domain);
    }
    if let Some(secret) = &app.edge_secret
        && !came_through_edge(&request, secret)
    {
        tracing::info!(outcome = "not_through_edge", "request refused");
        return render::error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let started = Instant::now();
    let method = request.method().clone();
    let mut response = match routes.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        allow_without_head(&mut response);
    }
    tracing::debug!(%method, status = response.status().as_u16(), duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "request");
    response
}

/// The router lists `GET` routes' implied `HEAD` and joins with `,`; API Gateway routes only the methods the
/// template names, so the answer names exactly those, as it always has: `GET, POST`.
fn allow_without_head(response: &mut Response) {
    let Some(allow) = response.headers().get(ALLOW).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let methods: Vec<&str> = allow
        .split(',')
        .map(str::trim)
        .filter(|m| *m != "HEAD")
        .collect();
    if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
        response.headers_mut().insert(ALLOW, value);
    }
}

/// A path no route has.
pub async fn not_found() -> Response {
    render::error(StatusCode::NOT_FOUND, "Not found")
}

/// A route asked with a method it does not take (the router adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    render::error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").into_response()
}
