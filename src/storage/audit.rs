//! The audit log, which is also the webhook outbox (issue 25): one `AUDIT#<event id>` item per event in the events
//! table, put in the same transaction as the change it reports (a change without its event, or an event without
//! its change, cannot exist). The table's stream carries the new items' keys to the dispatcher.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use time::OffsetDateTime;

use super::dynamo::DynamoStore;
use super::sdk::{Item, s, unavailable};
use super::table::events::{AUDIT_SK_PREFIX, audit_sk};
use super::{Store, StoreError};
use crate::domain::audit::{AuditEvent, EventType, Recorder};
use crate::domain::{KeyHash, LicenseId, RandomnessError, TenantId};

/// What `keystead audit` asks for: one page, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub license_id: Option<LicenseId>,
    pub email_hash: Option<String>,
    /// Only events at or after this id (`first_id_at` of `--since`).
    pub since: Option<String>,
    /// Only events older than this id: the previous page's `next`.
    pub before: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Where the next (older) page starts, when there may be one.
    pub next: Option<String>,
}

impl DynamoStore {
    /// The same store, naming `actor` on every event it writes.
    pub fn with_actor(mut self, actor: std::sync::Arc<dyn super::Actor>) -> Self {
        self.actor = Some(actor);
        self
    }

    /// The transaction items of the events `make` records, now.
    pub(crate) async fn event_items<F>(
        &self,
        tenant_id: &TenantId,
        make: F,
    ) -> Result<Vec<TransactWriteItem>, StoreError>
    where
        F: FnOnce(&mut Recorder) -> Result<(), RandomnessError>,
    {
        let mut recorder = Recorder::new(tenant_id, OffsetDateTime::now_utc());
        make(&mut recorder).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let events = recorder.finish();
        let actor = match (&self.actor, events.is_empty()) {
            (Some(actor), false) => Some(actor.name().await),
            _ => None,
        };
        events
            .into_iter()
            .map(|event| self.event_put(event, actor.as_deref()))
            .collect()
    }

    fn event_put(
        &self,
        mut event: AuditEvent,
        actor: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        if event.actor.is_none() {
            event.actor = actor.map(str::to_owned);
        }
        let put = Put::builder()
            .table_name(&self.tables.events)
            .set_item(Some(audit_item(&event)))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes events that report no change of a license (a seller's command, `ping.test`), together.
    pub async fn record_events(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let actor = match &self.actor {
            Some(actor) => Some(actor.name().await),
            None => None,
        };
        let items = events
            .into_iter()
            .map(|event| self.event_put(event, actor.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        match self.transact(items).await? {
            None => Ok(()),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }

    /// One event of a tenant.
    pub async fn audit_event(
        &self,
        tenant_id: &TenantId,
        event_id: &str,
    ) -> Result<Option<AuditEvent>, StoreError> {
        self.read_item(&self.tables.events, tenant_id, &audit_sk(event_id))
            .await?
            .map(event_from)
            .transpose()
    }

    /// An event by its id alone (the CLI's `webhook replay <EVENT_ID>`): looked for in each tenant's log.
    pub async fn find_event(&self, event_id: &str) -> Result<Option<AuditEvent>, StoreError> {
        for tenant_id in self.tenant_ids().await? {
            if let Some(event) = self.audit_event(&tenant_id, event_id).await? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// A page of a tenant's events, newest first.
    pub async fn audit(
        &self,
        tenant_id: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, StoreError> {
        let low = audit_sk(query.since.as_deref().unwrap_or(""));
        let high = query
            .before
            .as_deref()
            .map_or_else(|| format!("{AUDIT_SK_PREFIX}~"), audit_sk);
        let limit = query.limit.max(1);
        let mut events = Vec::new();
        let mut start_key = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.events)
                .key_condition_expression("tenant_id = :t AND sk BETWEEN :low AND :high")
                .expression_attribute_values(":t", s(tenant_id.as_str()))
                .expression_attribute_values(":low", s(&low))
                .expression_attribute_values(":high", s(&high))
                .scan_index_forward(false)
                .limit(i32::try_from(limit.saturating_mul(4).min(1000)).unwrap_or(1000))
                .set_exclusive_start_key(start_key);
            let mut filters = Vec::new();
            if let Some(id) = &query.license_id {
                filters.push("license_id = :lid");
                request = request.expression_attribute_values(":lid", s(id.as_str()));
            }
            if let Some(hash) = &query.email_hash {
                filters.push("email_hash = :eh");
                request = request.expression_attribute_values(":eh", s(hash));
            }
            if !filters.is_empty() {
                request = request.filter_expression(filters.join(" AND "));
            }
            let page = request.send().await.map_err(unavailable)?;
            for item in page.items() {
                let event = event_from(item.clone())?;
                if Some(event.id.as_str()) == query.before.as_deref() {
                    continue;
                }
                events.push(event);
                if events.len() == limit {
                    let next = events.last().map(|e| e.id.clone());
                    return Ok(AuditPage { events, next });
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(AuditPage { events, next: None });
            }
        }
    }
}

fn audit_item(event: &AuditEvent) -> Item {
    let mut item = Item::new();
    item.insert("tenant_id".into(), s(event.tenant_id.as_str()));
    item.insert("sk".into(), s(audit_sk(&event.id)));
    item.insert("event_id".into(), s(&event.id));
    item.insert("type".into(), s(event.kind.as_str()));
    item.insert("at".into(), s(&event.at));
    item.insert("payload".into(), s(&event.payload));
    let optional = [
        (
            "license_id",
            event.license_id.as_ref().map(|l| l.as_str().to_owned()),
        ),
        (
            "key_hash",
            event.key_hash.as_ref().map(|h| h.as_str().to_owned()),
        ),
        ("email_hash", event.email_hash.clone()),
        ("actor", event.actor.clone()),
        ("endpoint_id", event.endpoint_id.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    item
}

fn event_from(mut item: Item) -> Result<AuditEvent, StoreError> {
    let mut text = |name: &str| match item.remove(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit event without {what}"));
    let tenant_id = TenantId::parse(&text("tenant_id").ok_or_else(|| corrupt("tenant_id"))?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let kind_name = text("type").ok_or_else(|| corrupt("type"))?;
    let kind = EventType::parse(&kind_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event type {kind_name}")))?;
    Ok(AuditEvent {
        id: text("event_id").ok_or_else(|| corrupt("event_id"))?,
        tenant_id,
        kind,
        at: text("at").ok_or_else(|| corrupt("at"))?,
        license_id: text("license_id").map(LicenseId::from_stored),
        key_hash: text("key_hash").map(KeyHash::from_stored),
        email_hash: text("email_hash"),
        actor: text("actor"),
        payload: text("payload").ok_or_else(|| corrupt("payload"))?,
        endpoint_id: text("endpoint_id"),
    })
}
