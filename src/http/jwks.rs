//! `GET /v1/{tenant_id}/jwks.json`: the tenant's current and retired public keys, for apps to verify leases with.

use std::time::Duration;

use lambda_http::http::header::CACHE_CONTROL;
use lambda_http::{Body, Response};
use time::OffsetDateTime;

use super::{App, response};
use crate::domain::TenantId;
use crate::signing;

const DEADLINE: Duration = Duration::from_millis(4_500);

pub async fn handle(app: &App, tenant_id: &str) -> Response<Body> {
    let Ok(tenant_id) = TenantId::parse(tenant_id) else {
        return response::error(404, "Not found");
    };
    let answer = tokio::time::timeout(DEADLINE, async {
        // Read fresh, not from the tenant cache: a rotated key is published the moment it is made, while the
        // functions' signers switch to it within the cache's minute, so it is never used before it is published.
        app.tenants.forget(&tenant_id);
        let Some(tenant) = app.tenants.tenant(app.store.as_ref(), &tenant_id).await? else {
            return Ok(None);
        };
        // A tenant made before leases existed gets its first key now, so an app can ship it before its first lease.
        let tenant = if tenant.current_signing_key().is_none() {
            app.keyring
                .current(app.store.as_ref(), &app.tenants, tenant)
                .await?;
            app.tenants.tenant(app.store.as_ref(), &tenant_id).await?
        } else {
            Some(tenant)
        };
        Ok::<_, signing::SigningError>(tenant.map(|t| signing::jwks(&t, OffsetDateTime::now_utc())))
    })
    .await;
    match answer {
        Ok(Ok(Some(jwks))) => {
            let mut reply = response::json(200, &serde_json::json!(jwks));
            if let Ok(value) = "public, max-age=60".parse() {
                reply.headers_mut().insert(CACHE_CONTROL, value);
            }
            reply
        }
        Ok(Ok(None)) => response::error(404, "Not found"),
        Ok(Err(err)) => {
            tracing::error!(tenant = %tenant_id, error = %err, "jwks failed");
            response::unavailable()
        }
        Err(_) => response::unavailable(),
    }
}
