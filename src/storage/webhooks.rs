//! Webhook endpoints (tenants table, `WEBHOOK#<endpoint id>`) and their deliveries (events table,
//! `DELIVERY#<endpoint id>#<event id>`, with a TTL): what the CLI manages and the dispatcher reads and records.

use super::dynamo::DynamoStore;
use super::sdk::{Item, conditional, from_item, n, s, to_item, unavailable};
use super::table::events::{DELIVERY_TTL_SECONDS, delivery_sk};
use super::table::tenants::{WEBHOOK_SK_PREFIX, webhook_sk};
use super::{Store, StoreError};
use crate::domain::TenantId;
use crate::domain::webhook::{Delivery, DeliveryStatus, Endpoint};

impl DynamoStore {
    /// Adds an endpoint; `AlreadyExists` when its id is taken.
    pub async fn add_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let item = to_item(endpoint, Some(webhook_sk(&endpoint.endpoint_id)))?;
        self.put_new(&self.tables.tenants, item).await
    }

    /// Writes an endpoint over itself (a rotated secret): only while it exists.
    pub async fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let item = to_item(endpoint, Some(webhook_sk(&endpoint.endpoint_id)))?;
        let written = conditional(
            self.client
                .put_item()
                .table_name(&self.tables.tenants)
                .set_item(Some(item))
                .condition_expression("attribute_exists(sk)")
                .send()
                .await,
        )?;
        written.map(|_| ()).ok_or(StoreError::NotFound)
    }

    pub async fn endpoints(&self, tenant_id: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        self.query_partition(&self.tables.tenants, tenant_id, WEBHOOK_SK_PREFIX)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    pub async fn endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.read_item(&self.tables.tenants, tenant_id, &webhook_sk(endpoint_id))
            .await?
            .map(from_item)
            .transpose()
    }

    /// An endpoint by its id alone (the CLI's commands that name only the endpoint).
    pub async fn find_endpoint(&self, endpoint_id: &str) -> Result<Option<Endpoint>, StoreError> {
        for tenant_id in self.tenant_ids().await? {
            if let Some(endpoint) = self.endpoint(&tenant_id, endpoint_id).await? {
                return Ok(Some(endpoint));
            }
        }
        Ok(None)
    }

    pub async fn remove_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(webhook_sk(endpoint_id)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records a failed attempt on the endpoint: failing since the first one, with the last error. An endpoint
    /// removed meanwhile stays removed.
    pub async fn endpoint_failed(
        &self,
        endpoint: &Endpoint,
        error: &str,
        at: &str,
        disable: bool,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(endpoint.tenant_id.as_str()))
            .key("sk", s(webhook_sk(&endpoint.endpoint_id)))
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":at", s(at))
            .expression_attribute_values(":error", s(error));
        update = if disable {
            update
                .update_expression(
                    "SET failing_since = if_not_exists(failing_since, :at), last_error = :error, \
                     #status = :disabled, disabled_reason = :error",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":disabled", s("disabled"))
        } else {
            update.update_expression(
                "SET failing_since = if_not_exists(failing_since, :at), last_error = :error",
            )
        };
        conditional(update.send().await)?;
        Ok(())
    }

    /// Clears the endpoint's failure after a success (a write only when it was failing).
    pub async fn endpoint_recovered(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        if endpoint.failing_since.is_none() {
            return Ok(());
        }
        conditional(
            self.client
                .update_item()
                .table_name(&self.tables.tenants)
                .key("tenant_id", s(endpoint.tenant_id.as_str()))
                .key("sk", s(webhook_sk(&endpoint.endpoint_id)))
                .update_expression("REMOVE failing_since, last_error")
                .condition_expression("attribute_exists(sk)")
                .send()
                .await,
        )?;
        Ok(())
    }

    pub async fn delivery(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        event_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        self.read_item(
            &self.tables.events,
            tenant_id,
            &delivery_sk(endpoint_id, event_id),
        )
        .await?
        .map(from_item)
        .transpose()
    }

    /// Writes a delivery's record, kept 30 days past its last attempt.
    pub async fn save_delivery(
        &self,
        tenant_id: &TenantId,
        delivery: &Delivery,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let mut item: Item = to_item(
            delivery,
            Some(delivery_sk(&delivery.endpoint_id, &delivery.event_id)),
        )?;
        item.insert("tenant_id".into(), s(tenant_id.as_str()));
        item.insert("ttl".into(), n(now_unix + DELIVERY_TTL_SECONDS));
        self.client
            .put_item()
            .table_name(&self.tables.events)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// An endpoint's deliveries, newest first; only those that did not succeed when `failed_only`.
    pub async fn deliveries(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        failed_only: bool,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let prefix = format!("DELIVERY#{endpoint_id}#");
        let mut found = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.events)
                .key_condition_expression("tenant_id = :t AND begins_with(sk, :p)")
                .expression_attribute_values(":t", s(tenant_id.as_str()))
                .expression_attribute_values(":p", s(&prefix))
                .scan_index_forward(false)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let mut item = item.clone();
                item.remove("ttl");
                let delivery: Delivery = from_item(item)?;
                if failed_only && delivery.status == DeliveryStatus::Delivered {
                    continue;
                }
                found.push(delivery);
                if found.len() >= limit {
                    return Ok(found);
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(found);
            }
        }
    }
}
