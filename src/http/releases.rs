//! `GET /v1/{tenant_id}/products/{product_id}/…`: the license-gated update feeds and downloads (issue 26). The
//! key comes as `Authorization: Bearer <KEY>`, `X-License-Key: <KEY>` or `?key=<KEY>` (for updaters that can
//! only set a URL); a machine, when sent (`X-Machine-Id` or `?machine_id=`), must hold a seat.

use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{Query, Segments, query};
use super::feeds::{self, Links};
use super::render;
use crate::app::App;
use crate::app::releases::{self, Caller, FeedError, Filter, Reader};
use crate::domain::releases::{Arch, Channel, Platform, Version};

/// Everything the feeds refuse or fail with; the only place their statuses and bodies are chosen.
#[derive(Debug, thiserror::Error)]
pub enum FeedsError {
    #[error(transparent)]
    Refused(#[from] FeedError),
}

impl IntoResponse for FeedsError {
    fn into_response(self) -> Response {
        let Self::Refused(err) = self;
        let status = match &err {
            FeedError::Unauthorized(_) => {
                let mut response = render::error(StatusCode::UNAUTHORIZED, &err.to_string());
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"keystead\""),
                );
                return response;
            }
            FeedError::Forbidden(_) => StatusCode::FORBIDDEN,
            FeedError::NotFound(_) => StatusCode::NOT_FOUND,
            FeedError::Invalid(_) => StatusCode::BAD_REQUEST,
            FeedError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            FeedError::Storage(_) | FeedError::Unavailable(_) => {
                tracing::error!(error = %err, "release feed failure");
                return render::unavailable();
            }
        };
        render::error(status, &err.to_string())
    }
}

/// What the feeds' deadline answers: the one retryable 503.
pub fn on_timeout(_tenant: &str) -> Response {
    render::unavailable()
}

/// The license key and machine a feed request carries, and whether the key came in the URL.
pub struct Credential {
    key: Option<String>,
    machine: Option<String>,
    in_query: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Credential {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bearer = header(AUTHORIZATION.as_str()).and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        let from_headers = bearer.or_else(|| header("x-license-key"));
        let from_query = query(parts, "key");
        Ok(Self {
            in_query: from_headers.is_none() && from_query.is_some(),
            key: from_headers.or(from_query),
            machine: header("x-machine-id").or_else(|| query(parts, "machine_id")),
        })
    }
}

impl Credential {
    fn caller<'a>(&'a self, path: &'a Segments) -> Caller<'a> {
        Caller {
            tenant: path.tenant(),
            product: path.get("product_id"),
            key: self.key.as_deref(),
            machine: self.machine.as_deref(),
        }
    }

    fn links(&self, app: &App, path: &Segments) -> Links {
        let base = app.portal.base_url().unwrap_or_default();
        let key_query = match (&self.key, self.in_query) {
            (Some(key), true) => format!(
                "?key={}",
                form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
            ),
            _ => String::new(),
        };
        Links {
            product_base: format!(
                "{base}/v1/{}/products/{}",
                path.tenant(),
                path.get("product_id")
            ),
            key_query,
        }
    }
}

fn parse<T>(
    raw: Option<String>,
    parse: fn(&str) -> Result<T, crate::domain::InvalidValue>,
) -> Result<Option<T>, FeedError> {
    raw.as_deref()
        .map(parse)
        .transpose()
        .map_err(|e| FeedError::Invalid(e.to_string()))
}

fn channel(query: &Query) -> Result<Channel, FeedError> {
    Ok(parse(query.get("channel"), Channel::parse)?.unwrap_or(Channel::Stable))
}

fn answer(
    tenant: &str,
    feed: &'static str,
    result: Result<Response, FeedError>,
) -> Result<Response, FeedsError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(FeedError::Storage(_) | FeedError::Unavailable(_)) => "unavailable",
        Err(_) => "refused",
    };
    tracing::info!(tenant, feed, outcome, "release feed");
    result.map_err(FeedsError::from)
}

fn body(content_type: &'static str, text: String) -> Response {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "private, no-store"),
        ],
        text,
    )
        .into_response()
}

async fn reader(app: &App, credential: &Credential, path: &Segments) -> Result<Reader, FeedError> {
    releases::reader(app, &credential.caller(path)).await
}

/// `GET …/appcast.xml[?channel=&arch=]`: Sparkle's appcast of the macOS releases the license may have.
pub async fn appcast(
    State(app): State<App>,
    path: Segments,
    query: Query,
    credential: Credential,
) -> Result<Response, FeedsError> {
    let result = async {
        let filter = Filter {
            platform: Some(Platform::Darwin),
            arch: parse(query.get("arch"), Arch::parse)?,
            channel: channel(&query)?,
        };
        let reader = reader(&app, &credential, &path).await?;
        let list = releases::visible(&app, &reader, filter).await?;
        let title = reader
            .tenant
            .products
            .get(&reader.product_id)
            .map_or_else(|| reader.product_id.to_string(), |p| p.name.clone());
        let xml = feeds::appcast(&title, &list, &credential.links(&app, &path));
        Ok(body("application/rss+xml; charset=utf-8", xml))
    }
    .await;
    answer(path.tenant(), "sparkle", result)
}

/// `GET …/tauri/{target}/{arch}/{current_version}[?channel=]`: `200` with the update, or `204` when the
/// current version is the newest the license may have.
pub async fn tauri(
    State(app): State<App>,
    path: Segments,
    query: Query,
    credential: Credential,
) -> Result<Response, FeedsError> {
    let result = async {
        let platform =
            Platform::parse(path.get("target")).map_err(|e| FeedError::Invalid(e.to_string()))?;
        let arch = Arch::parse(path.get("arch")).map_err(|e| FeedError::Invalid(e.to_string()))?;
        let current = Version::parse(path.get("current_version"))
            .map_err(|e| FeedError::Invalid(e.to_string()))?;
        let filter = Filter {
            platform: Some(platform),
            arch: Some(arch),
            channel: channel(&query)?,
        };
        let reader = reader(&app, &credential, &path).await?;
        let list = releases::visible(&app, &reader, filter).await?;
        let links = credential.links(&app, &path);
        // The newest release Tauri can install: one with a signature (the updater refuses any other).
        let update = list
            .iter()
            .filter(|r| r.parsed_version().is_some_and(|v| v > current))
            .find_map(|r| feeds::tauri(r, &links));
        Ok(match update {
            Some(update) => render::json(StatusCode::OK, &update),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    answer(path.tenant(), "tauri", result)
}

/// The platform, arch and channel an electron-updater channel file names: `latest.yml` (Windows),
/// `latest-mac.yml`, `latest-linux.yml`, `latest-linux-arm64.yml`, and the same with a channel for `latest`.
fn electron_file(name: &str) -> Result<(Channel, Platform, Option<Arch>), FeedError> {
    let invalid = || {
        FeedError::NotFound(
            "Unknown channel file: use <channel>.yml, <channel>-mac.yml or <channel>-linux[-arm64].yml",
        )
    };
    let stem = name.strip_suffix(".yml").ok_or_else(invalid)?;
    let (channel, platform, arch) = if let Some(channel) = stem.strip_suffix("-mac") {
        (channel, Platform::Darwin, None)
    } else if let Some(channel) = stem.strip_suffix("-linux-arm64") {
        (channel, Platform::Linux, Some(Arch::Aarch64))
    } else if let Some(channel) = stem.strip_suffix("-linux") {
        (channel, Platform::Linux, Some(Arch::X86_64))
    } else {
        (stem, Platform::Windows, None)
    };
    let channel = match channel {
        "latest" => Channel::Stable,
        other => Channel::parse(other).map_err(|_| invalid())?,
    };
    Ok((channel, platform, arch))
}

/// `GET …/electron/{channel}.yml`: electron-updater's channel file (generic provider).
pub async fn electron(
    State(app): State<App>,
    path: Segments,
    credential: Credential,
) -> Result<Response, FeedsError> {
    let result = async {
        let (channel, platform, arch) = electron_file(path.get("file"))?;
        let reader = reader(&app, &credential, &path).await?;
        let list = releases::visible(
            &app,
            &reader,
            Filter {
                platform: Some(platform),
                arch,
                channel,
            },
        )
        .await?;
        let yaml = feeds::electron(&list)
            .ok_or(FeedError::NotFound("No release for this channel file"))?;
        Ok(body("text/yaml; charset=utf-8", yaml))
    }
    .await;
    answer(path.tenant(), "electron", result)
}

/// `GET …/releases[?platform=&arch=&channel=&current=]`: the releases the license may have, newest first; with
/// `current`, only newer ones, and `update` names the newest.
pub async fn list(
    State(app): State<App>,
    path: Segments,
    query: Query,
    credential: Credential,
) -> Result<Response, FeedsError> {
    let result = async {
        let filter = Filter {
            platform: parse(query.get("platform"), Platform::parse)?,
            arch: parse(query.get("arch"), Arch::parse)?,
            channel: channel(&query)?,
        };
        let current = parse(query.get("current"), Version::parse)?;
        let reader = reader(&app, &credential, &path).await?;
        let list = releases::visible(&app, &reader, filter).await?;
        let links = credential.links(&app, &path);
        let newer: Vec<serde_json::Value> = list
            .iter()
            .filter(|r| {
                current
                    .as_ref()
                    .is_none_or(|c| r.parsed_version().is_some_and(|v| v > *c))
            })
            .map(|r| feeds::release_json(r, &links))
            .collect();
        let update = current.as_ref().and(newer.first().cloned());
        Ok(render::json(
            StatusCode::OK,
            &serde_json::json!({
                "product_id": reader.product_id,
                "channel": filter.channel,
                "releases": newer,
                "update": update,
            }),
        ))
    }
    .await;
    answer(path.tenant(), "json", result)
}

/// `GET …/releases/{version}/{filename}`: `303` to a short-lived presigned URL of the file (S3 serves ranges,
/// so an interrupted download resumes there).
pub async fn download(
    State(app): State<App>,
    path: Segments,
    credential: Credential,
) -> Result<Response, FeedsError> {
    let result = async {
        let reader = reader(&app, &credential, &path).await?;
        let download =
            releases::download(&app, &reader, path.get("version"), path.get("filename")).await?;
        let location = HeaderValue::from_str(&download.url)
            .map_err(|e| FeedError::Unavailable(e.to_string()))?;
        let mut response = StatusCode::SEE_OTHER.into_response();
        response.headers_mut().insert(LOCATION, location);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        Ok(response)
    }
    .await;
    answer(path.tenant(), "download", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn electron_channel_files_name_their_platform_and_channel() {
        let cases = [
            ("latest.yml", Channel::Stable, Platform::Windows, None),
            ("latest-mac.yml", Channel::Stable, Platform::Darwin, None),
            ("beta-mac.yml", Channel::Beta, Platform::Darwin, None),
            (
                "latest-linux.yml",
                Channel::Stable,
                Platform::Linux,
                Some(Arch::X86_64),
            ),
            (
                "rc-linux-arm64.yml",
                Channel::Rc,
                Platform::Linux,
                Some(Arch::Aarch64),
            ),
        ];
        for (name, channel, platform, arch) in cases {
            let parsed = electron_file(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, (channel, platform, arch), "{name}");
        }
        for bad in ["latest.yaml", "nightly.yml", "latest-win.yml", ".yml"] {
            assert!(electron_file(bad).is_err(), "{bad}");
        }
    }
}
