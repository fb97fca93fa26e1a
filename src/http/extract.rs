//! What handlers take from a request: the path's segments, a body read up to a limit, the webhook token, the
//! query and the session cookie. Each extractor is written once; the surfaces choose their own limits and
//! render a refusal in their own shape (the rejection is the surface's error type).

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use base64::Engine;

use super::gateway::Gateway;

/// The path's named segments (`{tenant_id}`, `{license_id}`, `{token}`), percent-decoded. Never refuses: a
/// segment that is not UTF-8 reads as empty, which no tenant, license or token matches.
#[derive(Debug, Default)]
pub struct Segments(Vec<(String, String)>);

impl Segments {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// The `{tenant_id}` every route has.
    pub fn tenant(&self) -> &str {
        self.get("tenant_id")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Segments {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(RawPathParams::from_request_parts(parts, state)
            .await
            .map(|params| {
                Self(
                    params
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                )
            })
            .unwrap_or_default())
    }
}

/// A body was longer than the surface accepts.
#[derive(Debug, Clone, Copy)]
pub struct TooLarge {
    pub limit: usize,
}

/// The body, at most `LIMIT` bytes, with its `Content-Type`. A longer body is refused with the surface's `E`.
pub struct Bounded<E, const LIMIT: usize> {
    pub content_type: Option<String>,
    pub bytes: Bytes,
    refusal: PhantomData<fn() -> E>,
}

impl<S, E, const LIMIT: usize> FromRequest<S> for Bounded<E, LIMIT>
where
    S: Send + Sync,
    E: From<TooLarge> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Lambda hands over the whole body at once: reading it is a copy, never a wait.
        let bytes = axum::body::to_bytes(request.into_body(), LIMIT)
            .await
            .map_err(|_| E::from(TooLarge { limit: LIMIT }))?;
        Ok(Self {
            content_type,
            bytes,
            refusal: PhantomData,
        })
    }
}

impl<E, const LIMIT: usize> Bounded<E, LIMIT> {
    /// The media type without parameters, lower-cased (`application/json; charset=utf-8` → `application/json`).
    pub fn media_type(&self) -> Option<String> {
        self.content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|mt| mt.trim().to_ascii_lowercase())
    }

    /// The body as an `application/x-www-form-urlencoded` form, first value of each name.
    pub fn form_field(&self, name: &str) -> Option<String> {
        first_value(&String::from_utf8_lossy(&self.bytes), name)
    }
}

/// The first value of `name` in an `application/x-www-form-urlencoded` string (a query, a form body).
fn first_value(encoded: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(encoded.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A query parameter's first value.
pub fn query(parts: &Parts, name: &str) -> Option<String> {
    parts.uri.query().and_then(|q| first_value(q, name))
}

/// The request's query, for handlers that read a parameter or two.
pub struct Query(Option<String>);

impl Query {
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.as_deref().and_then(|q| first_value(q, name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.uri.query().map(str::to_owned)))
    }
}

/// The caller's address as API Gateway saw it (`requestContext.http.sourceIp`), when the request came through it.
pub struct Caller(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<Gateway>()
            .and_then(|gateway| gateway.source_ip.clone());
        Ok(Self(ip.filter(|ip| !ip.is_empty())))
    }
}

/// The webhook token: `?token=` first, else the password of HTTP Basic auth (a ping URL's `user:token@`).
pub struct PresentedToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PresentedToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(token) = query(parts, "token") {
            return Ok(Self(Some(token)));
        }
        Ok(Self(basic_password(parts)))
    }
}

fn basic_password(parts: &Parts) -> Option<String> {
    let header = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

/// The value of one cookie, if the request carries it.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}
