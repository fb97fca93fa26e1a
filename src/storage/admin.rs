//! The seller's writes, used by the CLI: tenants, products and permalink mappings. The function never calls
//! these, so its IAM policy does not need them.

use std::collections::HashMap;

use super::StoreError;
use super::dynamo::{
    DynamoStore, PRODUCT_SK_PREFIX, TENANT_SK, is_condition_failure, s, to_item, unavailable,
};
use crate::domain::{Permalink, Product, ProductId, Tenant, TenantId};

impl DynamoStore {
    /// Creates a tenant; `AlreadyExists` when the id is taken.
    pub async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.tenants)
            .set_item(Some(to_item(tenant, Some(TENANT_SK.to_owned()))?))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::AlreadyExists),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Sets attributes of an existing tenant record; `NotFound` when there is none.
    pub async fn update_tenant(
        &self,
        tenant_id: &TenantId,
        set: &[(&str, aws_sdk_dynamodb::types::AttributeValue)],
    ) -> Result<(), StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut clauses = Vec::new();
        for (i, (attr, value)) in set.iter().enumerate() {
            names.insert(format!("#a{i}"), (*attr).to_owned());
            values.insert(format!(":v{i}"), value.clone());
            clauses.push(format!("#a{i} = :v{i}"));
        }
        self.update_tenant_expr(
            tenant_id,
            &format!("SET {}", clauses.join(", ")),
            names,
            values,
        )
        .await
    }

    async fn update_tenant_expr(
        &self,
        tenant_id: &TenantId,
        expression: &str,
        names: HashMap<String, String>,
        values: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(TENANT_SK))
            .update_expression(expression)
            .condition_expression("attribute_exists(sk)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::NotFound),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Creates a product under an existing tenant; `AlreadyExists` when the id is taken.
    pub async fn create_product(
        &self,
        tenant_id: &TenantId,
        product: &Product,
    ) -> Result<(), StoreError> {
        let mut item = to_item(
            product,
            Some(format!("{PRODUCT_SK_PREFIX}{}", product.product_id)),
        )?;
        item.insert("tenant_id".to_owned(), s(tenant_id.as_str()));
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.tenants)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::AlreadyExists),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Deletes a product; `NotFound` when there is none.
    pub async fn delete_product(
        &self,
        tenant_id: &TenantId,
        product_id: &ProductId,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(format!("{PRODUCT_SK_PREFIX}{product_id}")))
            .condition_expression("attribute_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::NotFound),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Maps a permalink slug to a product (`Some`) or removes the mapping (`None`).
    pub async fn set_permalink(
        &self,
        tenant_id: &TenantId,
        permalink: &Permalink,
        product_id: Option<&ProductId>,
    ) -> Result<(), StoreError> {
        let names = HashMap::from([
            ("#m".to_owned(), "permalinks".to_owned()),
            ("#p".to_owned(), permalink.to_string()),
        ]);
        match product_id {
            Some(product_id) => {
                let values = HashMap::from([(":v".to_owned(), s(product_id.as_str()))]);
                self.update_tenant_expr(tenant_id, "SET #m.#p = :v", names, values)
                    .await
            }
            None => {
                self.update_tenant_expr(tenant_id, "REMOVE #m.#p", names, HashMap::new())
                    .await
            }
        }
    }
}

impl Tenant {
    pub fn product(&self, product_id: &ProductId) -> Option<&Product> {
        self.products.get(product_id)
    }
}
