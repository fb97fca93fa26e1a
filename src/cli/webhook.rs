//! `keystead webhook …` (the seller's endpoints, their secrets, deliveries and replays) and `keystead audit`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;

use super::{CliError, Output};
use crate::dispatch::queue::{Job, Queue};
use crate::dispatch::target::{check_url, loopback_allowed_by_env};
use crate::domain::audit::{AuditEvent, EventType, Recorder, email_hash, first_id_at};
use crate::domain::webhook::{
    Delivery, DeliveryStatus, Endpoint, EndpointStatus, parse_event_types, secret_context,
    secret_text,
};
use crate::domain::{LicenseKey, TenantId, random_id, rfc3339};
use crate::signing::KeyVault;
use crate::storage::{AuditQuery, DynamoStore, Store};

/// How long the previous secret keeps signing after `rotate-secret`.
const ROTATION_OVERLAP_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint; prints its id and its signing secret (`whsec_…`) once.
    Add {
        tenant_id: String,
        /// HTTPS URL the events are POSTed to (plain http to loopback only in local mode).
        url: String,
        /// Only these event types, comma-separated (default: all of them).
        #[arg(long)]
        events: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List a tenant's endpoints: status, events, and whether deliveries to them are failing.
    List { tenant_id: String },
    /// Remove an endpoint: nothing more is sent to it.
    Remove { endpoint_id: String },
    /// Make a new secret; prints it once. The old one keeps signing too for 24 hours.
    RotateSecret { endpoint_id: String },
    /// Send a `ping.test` event to the endpoint and wait for its delivery.
    Test {
        endpoint_id: String,
        /// Seconds to wait for the dispatcher's first attempt.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// An endpoint's deliveries, newest first.
    Deliveries {
        endpoint_id: String,
        /// Only those not delivered (pending a retry, failed, dropped).
        #[arg(long)]
        failed: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send events again, with their own ids (`webhook-id`): one event, or every event since a time.
    Replay {
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        event_id: Option<String>,
        /// RFC 3339 time, or a duration back from now (`2h`, `3d`).
        #[arg(long)]
        since: Option<String>,
        /// Only this tenant's events (with --since; default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Only to this endpoint (default: every endpoint that wants the event).
        #[arg(long)]
        endpoint: Option<String>,
    },
}

/// `keystead audit`: a tenant's events, newest first.
#[derive(Debug, Args)]
pub struct AuditArgs {
    tenant_id: String,
    /// Only events about this license (its key, or its id `lic_…`).
    #[arg(long)]
    license: Option<String>,
    /// Only events about this buyer's licenses.
    #[arg(long)]
    email: Option<String>,
    /// RFC 3339 time, or a duration back from now (`2h`, `3d`).
    #[arg(long)]
    since: Option<String>,
    /// Events per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The next page: the `next` value the previous page printed.
    #[arg(long)]
    before: Option<String>,
}

async fn vault_store()
-> Result<(DynamoStore, crate::signing::KmsVault, aws_config::SdkConfig), CliError> {
    super::keyed_store().await
}

async fn endpoint_named(store: &DynamoStore, endpoint_id: &str) -> Result<Endpoint, CliError> {
    store
        .find_endpoint(endpoint_id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no webhook endpoint '{endpoint_id}'")))
}

/// A fresh secret: a KMS data key under the endpoint's context; the seller sees it once, the store keeps KMS's
/// ciphertext.
async fn new_secret(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    endpoint_id: &str,
) -> Result<(String, String), CliError> {
    let context = secret_context(tenant_id, endpoint_id);
    let context: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key = vault
        .generate_data_key(&context)
        .await
        .map_err(|e| CliError::Aws(super::first_line(super::without_debug(&e.0))))?;
    Ok((
        secret_text(&key.plaintext),
        STANDARD.encode(&key.ciphertext),
    ))
}

/// `--since`: RFC 3339, or a duration back from now.
fn parse_since(raw: &str) -> Result<OffsetDateTime, CliError> {
    if let Ok(at) = OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    let seconds = crate::domain::parse_duration(raw).map_err(|_| {
        CliError::Invalid(format!(
            "invalid time {raw:?}: expected RFC 3339 (2026-12-01T00:00:00Z) or a duration (2h, 3d)"
        ))
    })?;
    Ok(OffsetDateTime::now_utc()
        - time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX)))
}

fn endpoint_json(endpoint: &Endpoint) -> serde_json::Value {
    json!({
        "endpoint_id": endpoint.endpoint_id,
        "tenant_id": endpoint.tenant_id.as_str(),
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "status": endpoint.status.as_str(),
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "last_error": endpoint.last_error,
        "created_at": endpoint.created_at,
    })
}

fn delivery_json(delivery: &Delivery) -> serde_json::Value {
    json!({
        "event_id": delivery.event_id,
        "type": delivery.event_type,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()).map(rfc3339),
        "delivered_at": delivery.delivered_at,
        "updated_at": delivery.updated_at,
    })
}

/// Records a seller's command in the audit log.
pub(crate) async fn seller_command(
    store: &DynamoStore,
    tenant_id: &TenantId,
    command: &str,
    details: serde_json::Value,
) -> Result<(), CliError> {
    let mut recorder = Recorder::new(tenant_id, OffsetDateTime::now_utc());
    let mut data = serde_json::Map::new();
    data.insert("tenant_id".into(), json!(tenant_id.as_str()));
    data.insert("command".into(), json!(command));
    data.insert("details".into(), details);
    recorder.push(EventType::SellerCommand, None, data)?;
    store.record_events(recorder.finish()).await?;
    Ok(())
}

/// Sends `event` again to `only` or every endpoint of its tenant that wants it: each delivery starts over (same
/// `webhook-id`).
async fn replay(
    store: &DynamoStore,
    queue: &Queue,
    event: &AuditEvent,
    endpoints: &[Endpoint],
    only: Option<&str>,
) -> Result<usize, CliError> {
    let now = OffsetDateTime::now_utc();
    let mut jobs = Vec::new();
    for endpoint in endpoints {
        let addressed = event.endpoint_id.as_deref();
        let wanted = match only {
            Some(id) => id == endpoint.endpoint_id && endpoint.status == EndpointStatus::Enabled,
            None => endpoint.wants(event.kind, addressed),
        };
        if !wanted || (addressed.is_some() && addressed != Some(endpoint.endpoint_id.as_str())) {
            continue;
        }
        let fresh = Delivery::pending(
            &endpoint.endpoint_id,
            &event.id,
            event.kind.as_str(),
            rfc3339(now),
        );
        store
            .save_delivery(&event.tenant_id, &fresh, now.unix_timestamp())
            .await?;
        jobs.push(Job {
            t: event.tenant_id.as_str().to_owned(),
            e: endpoint.endpoint_id.clone(),
            id: event.id.clone(),
        });
    }
    queue
        .send(&jobs)
        .await
        .map_err(|e| CliError::Aws(super::first_line(super::without_debug(&e.0))))?;
    Ok(jobs.len())
}

async fn queue(sdk: &aws_config::SdkConfig) -> Result<Queue, CliError> {
    Queue::from_env(aws_sdk_sqs::Client::new(sdk)).map_err(CliError::Config)
}

pub async fn run(command: WebhookCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        WebhookCommand::Add {
            tenant_id,
            url,
            events,
            description,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let url = url.trim().to_owned();
            check_url(&url, loopback_allowed_by_env())
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            let events = parse_event_types(events.as_deref().unwrap_or_default())
                .map_err(CliError::Invalid)?;
            let description = description
                .map(|d| crate::gumroad::one_line(&d))
                .filter(|d| !d.is_empty());
            let (store, vault, _) = vault_store().await?;
            if store.load_tenant(&tenant_id).await?.is_none() {
                return Err(CliError::NotFound(format!("no tenant '{tenant_id}'")));
            }
            let endpoint_id = random_id("ep")?;
            let (secret, sealed) = new_secret(&vault, &tenant_id, &endpoint_id).await?;
            let endpoint = Endpoint {
                endpoint_id,
                tenant_id: tenant_id.clone(),
                url,
                events,
                description,
                secret_sealed: sealed,
                previous_secret_sealed: None,
                previous_until: None,
                status: EndpointStatus::Enabled,
                disabled_reason: None,
                failing_since: None,
                last_error: None,
                created_at: rfc3339(OffsetDateTime::now_utc()),
            };
            store.add_endpoint(&endpoint).await?;
            seller_command(
                &store,
                &tenant_id,
                "webhook add",
                json!({"endpoint_id": endpoint.endpoint_id, "url": endpoint.url, "events": endpoint.events}),
            )
            .await?;
            let mut doc = endpoint_json(&endpoint);
            doc["secret"] = json!(secret);
            out.fields(&[
                ("endpoint", endpoint.endpoint_id.clone()),
                ("url", endpoint.url.clone()),
                (
                    "events",
                    if endpoint.events.is_empty() {
                        "all".to_owned()
                    } else {
                        endpoint.events.join(",")
                    },
                ),
                ("secret", secret),
            ]);
            out.line("Keep the secret: it is shown only now. Verify deliveries with it (README, Webhooks).");
            out.document(doc);
        }
        WebhookCommand::List { tenant_id } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let store = super::store().await?;
            if store.load_tenant(&tenant_id).await?.is_none() {
                return Err(CliError::NotFound(format!("no tenant '{tenant_id}'")));
            }
            let endpoints = store.endpoints(&tenant_id).await?;
            let rows: Vec<Vec<String>> = endpoints
                .iter()
                .map(|e| {
                    vec![
                        e.endpoint_id.clone(),
                        e.status.as_str().to_owned(),
                        e.url.clone(),
                        if e.events.is_empty() {
                            "all".to_owned()
                        } else {
                            e.events.join(",")
                        },
                        e.failing_since
                            .as_ref()
                            .map_or_else(String::new, |since| format!("failing since {since}")),
                    ]
                })
                .collect();
            out.table(&["ENDPOINT", "STATUS", "URL", "EVENTS", "HEALTH"], &rows);
            out.document(
                json!({"endpoints": endpoints.iter().map(endpoint_json).collect::<Vec<_>>()}),
            );
        }
        WebhookCommand::Remove { endpoint_id } => {
            let store = super::store().await?;
            let endpoint = endpoint_named(&store, &endpoint_id).await?;
            store
                .remove_endpoint(&endpoint.tenant_id, &endpoint.endpoint_id)
                .await?;
            seller_command(
                &store,
                &endpoint.tenant_id,
                "webhook remove",
                json!({"endpoint_id": endpoint.endpoint_id, "url": endpoint.url}),
            )
            .await?;
            out.line(format!("removed {}", endpoint.endpoint_id));
            out.document(json!({"removed": endpoint.endpoint_id}));
        }
        WebhookCommand::RotateSecret { endpoint_id } => {
            let (store, vault, _) = vault_store().await?;
            let mut endpoint = endpoint_named(&store, &endpoint_id).await?;
            let (secret, sealed) =
                new_secret(&vault, &endpoint.tenant_id, &endpoint.endpoint_id).await?;
            let until = OffsetDateTime::now_utc().unix_timestamp() + ROTATION_OVERLAP_SECONDS;
            endpoint.previous_secret_sealed =
                Some(std::mem::replace(&mut endpoint.secret_sealed, sealed));
            endpoint.previous_until = Some(until);
            store.save_endpoint(&endpoint).await?;
            seller_command(
                &store,
                &endpoint.tenant_id,
                "webhook rotate-secret",
                json!({"endpoint_id": endpoint.endpoint_id}),
            )
            .await?;
            let old_until = OffsetDateTime::from_unix_timestamp(until)
                .map(rfc3339)
                .unwrap_or_default();
            out.fields(&[
                ("endpoint", endpoint.endpoint_id.clone()),
                ("secret", secret.clone()),
                ("old secret signs until", old_until.clone()),
            ]);
            out.document(json!({
                "endpoint_id": endpoint.endpoint_id,
                "secret": secret,
                "previous_secret_until": old_until,
            }));
        }
        WebhookCommand::Test { endpoint_id, wait } => {
            let store = super::store().await?;
            let endpoint = endpoint_named(&store, &endpoint_id).await?;
            let mut recorder = Recorder::new(&endpoint.tenant_id, OffsetDateTime::now_utc());
            let mut data = serde_json::Map::new();
            data.insert("tenant_id".into(), json!(endpoint.tenant_id.as_str()));
            data.insert("endpoint_id".into(), json!(endpoint.endpoint_id));
            data.insert(
                "message".into(),
                json!("keystead test event: this endpoint receives and verifies webhooks"),
            );
            recorder.push(EventType::PingTest, None, data)?;
            let mut events = recorder.finish();
            for event in &mut events {
                event.endpoint_id = Some(endpoint.endpoint_id.clone());
            }
            let event_id = events.first().map(|e| e.id.clone()).unwrap_or_default();
            store.record_events(events).await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            let mut delivery = None;
            while std::time::Instant::now() < deadline {
                delivery = store
                    .delivery(&endpoint.tenant_id, &endpoint.endpoint_id, &event_id)
                    .await?;
                if delivery
                    .as_ref()
                    .is_some_and(|d| d.attempts > 0 || d.status != DeliveryStatus::Pending)
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            let mut doc = json!({"event_id": event_id, "endpoint_id": endpoint.endpoint_id});
            match &delivery {
                Some(d) => {
                    doc["delivery"] = delivery_json(d);
                    out.fields(&[
                        ("event", event_id.clone()),
                        ("status", d.status.as_str().to_owned()),
                        (
                            "answer",
                            d.last_status.map_or_else(
                                || d.last_error.clone().unwrap_or_default(),
                                |code| code.to_string(),
                            ),
                        ),
                    ]);
                }
                None => out.fields(&[
                    ("event", event_id.clone()),
                    ("status", "not attempted".to_owned()),
                ]),
            }
            out.document(doc);
            match delivery {
                Some(d) if d.status == DeliveryStatus::Delivered => {}
                Some(d) => {
                    return Err(CliError::ChecksFailed(format!(
                        "the test event was not delivered: {}",
                        d.last_error.unwrap_or_else(|| d.status.as_str().to_owned())
                    )));
                }
                None => {
                    return Err(CliError::ChecksFailed(format!(
                        "no delivery attempt within {wait} s: is the dispatcher running (locally: `keystead dev dispatch`)?"
                    )));
                }
            }
        }
        WebhookCommand::Deliveries {
            endpoint_id,
            failed,
            limit,
        } => {
            let store = super::store().await?;
            let endpoint = endpoint_named(&store, &endpoint_id).await?;
            let deliveries = store
                .deliveries(&endpoint.tenant_id, &endpoint.endpoint_id, failed, limit)
                .await?;
            let rows: Vec<Vec<String>> = deliveries
                .iter()
                .map(|d| {
                    vec![
                        d.event_id.clone(),
                        d.event_type.clone(),
                        d.status.as_str().to_owned(),
                        d.attempts.to_string(),
                        d.last_status.map_or_else(String::new, |c| c.to_string()),
                        d.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out.table(
                &["EVENT", "TYPE", "STATUS", "ATTEMPTS", "ANSWER", "ERROR"],
                &rows,
            );
            out.document(json!({
                "endpoint_id": endpoint.endpoint_id,
                "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
            }));
        }
        WebhookCommand::Replay {
            event_id,
            since,
            tenant,
            endpoint,
        } => {
            let (sdk, tables) = super::configured().await?;
            let store = super::seller_store(&sdk, tables);
            let queue = queue(&sdk).await?;
            let mut events = Vec::new();
            if let Some(event_id) = event_id {
                let event = store
                    .find_event(event_id.trim())
                    .await?
                    .ok_or_else(|| CliError::NotFound(format!("no event '{}'", event_id.trim())))?;
                events.push(event);
            } else if let Some(since) = since {
                let since = parse_since(&since)?;
                let tenants = match tenant {
                    Some(t) => vec![TenantId::parse(&t)?],
                    None => store.tenant_ids().await?,
                };
                for tenant_id in tenants {
                    let mut query = AuditQuery {
                        since: Some(first_id_at(since)),
                        limit: 500,
                        ..AuditQuery::default()
                    };
                    loop {
                        let page = store.audit(&tenant_id, &query).await?;
                        events.extend(page.events.into_iter().filter(|e| e.kind.delivered()));
                        match page.next {
                            Some(next) => query.before = Some(next),
                            None => break,
                        }
                    }
                }
                // Oldest first, as they happened.
                events.sort_by(|a, b| a.id.cmp(&b.id));
            }
            let mut sent = 0;
            let mut endpoints_of: std::collections::HashMap<String, Vec<Endpoint>> =
                std::collections::HashMap::new();
            for event in &events {
                let key = event.tenant_id.as_str().to_owned();
                if !endpoints_of.contains_key(&key) {
                    let found = store.endpoints(&event.tenant_id).await?;
                    endpoints_of.insert(key.clone(), found);
                }
                let endpoints = endpoints_of
                    .get(&key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                sent += replay(&store, &queue, event, endpoints, endpoint.as_deref()).await?;
            }
            for tenant_id in endpoints_of.keys().filter_map(|t| TenantId::parse(t).ok()) {
                seller_command(
                    &store,
                    &tenant_id,
                    "webhook replay",
                    json!({"events": events.iter().filter(|e| e.tenant_id == tenant_id).count(), "endpoint": endpoint}),
                )
                .await?;
            }
            out.line(format!(
                "queued {sent} deliveries of {} event(s)",
                events.len()
            ));
            out.document(json!({"events": events.len(), "deliveries": sent}));
        }
    }
    Ok(())
}

pub async fn audit(args: AuditArgs, out: &mut Output) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(&args.tenant_id)?;
    let store = super::store().await?;
    if store.load_tenant(&tenant_id).await?.is_none() {
        return Err(CliError::NotFound(format!("no tenant '{tenant_id}'")));
    }
    let license_id = match args.license.as_deref().map(str::trim) {
        None => None,
        Some(id) if id.starts_with("lic_") => {
            Some(crate::domain::LicenseId::from_stored(id.to_owned()))
        }
        Some(key) => {
            let key = LicenseKey::from_string(key.to_owned());
            let found = match store.get_license(&tenant_id, &key.hash()).await? {
                Some(license) => Some(license),
                // A key typed in lower case.
                None => {
                    let upper = LicenseKey::from_string(key.expose().to_ascii_uppercase());
                    store.get_license(&tenant_id, &upper.hash()).await?
                }
            };
            let license = found.ok_or_else(|| {
                CliError::NotFound(format!("no license with that key for tenant '{tenant_id}'"))
            })?;
            Some(license.license_id)
        }
    };
    let email = args
        .email
        .as_deref()
        .map(crate::domain::Email::parse)
        .transpose()?;
    let query = AuditQuery {
        license_id,
        email_hash: email.map(|e| email_hash(e.as_str())),
        since: args
            .since
            .as_deref()
            .map(parse_since)
            .transpose()?
            .map(first_id_at),
        before: args.before,
        limit: args.limit.clamp(1, 1000),
    };
    let page = store.audit(&tenant_id, &query).await?;
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|e| {
            let data: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
            let about = data
                .pointer("/data/license_id")
                .or_else(|| data.pointer("/data/command"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            vec![
                e.at.clone(),
                e.kind.as_str().to_owned(),
                about,
                e.actor.clone().unwrap_or_default(),
                e.id.clone(),
            ]
        })
        .collect();
    out.table(&["TIME", "TYPE", "ABOUT", "BY", "EVENT"], &rows);
    if let Some(next) = &page.next {
        out.line(format!("more: --before {next}"));
    }
    out.document(json!({
        "events": page.events.iter().map(|e| {
            let payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
            json!({
                "id": e.id,
                "type": e.kind.as_str(),
                "timestamp": e.at,
                "actor": e.actor,
                "data": payload.get("data").cloned().unwrap_or_default(),
            })
        }).collect::<Vec<_>>(),
        "next": page.next,
    }));
    Ok(())
}
