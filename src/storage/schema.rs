//! The tables as `template.yaml` defines them. The local stack and the tests create their tables from the same
//! file that deploys production, so a change to a table in the template is a change everywhere.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde_yaml_ng::Value;

use super::StoreError;
use super::sdk::unavailable;

/// One DynamoDB table of the template, and the environment variable through which the function learns its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub env_var: String,
    /// `(name, type)` pairs, e.g. `("tenant_id", "S")`.
    pub attributes: Vec<(String, String)>,
    /// `(name, HASH|RANGE)` pairs.
    pub key_schema: Vec<(String, String)>,
    pub ttl_attribute: Option<String>,
    /// The stream's view type (`KEYS_ONLY`, …) when the table has a stream.
    pub stream_view: Option<String>,
}

impl TableSpec {
    /// The local name of the table: `<prefix>-tenants` for `TenantsTable`.
    pub fn local_name(&self, prefix: &str) -> String {
        let base = self
            .logical_id
            .trim_end_matches("Table")
            .to_ascii_lowercase();
        format!("{prefix}-{base}")
    }
}

fn tagged_ref(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// Reads every `AWS::DynamoDB::Table` of a SAM template that a function's environment references with `!Ref`.
pub fn table_specs(template: &str) -> Result<Vec<TableSpec>, String> {
    let doc: Value =
        serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml has no Resources")?;

    let mut env_for_table = Vec::new();
    for resource in resources.values() {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let vars = resource
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        for (name, value) in vars.into_iter().flatten() {
            if let (Some(name), Some(target)) = (name.as_str(), tagged_ref(value)) {
                env_for_table.push((target.to_owned(), name.to_owned()));
            }
        }
    }

    let mut specs = Vec::new();
    for (logical_id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let logical_id = logical_id
            .as_str()
            .ok_or("a resource name is not a string")?
            .to_owned();
        let Some(env_var) = env_for_table
            .iter()
            .find(|(table, _)| *table == logical_id)
            .map(|(_, var)| var.clone())
        else {
            continue;
        };
        let props = resource
            .get("Properties")
            .ok_or_else(|| format!("{logical_id} has no Properties"))?;
        let pairs = |list: &str, a: &str, b: &str| -> Result<Vec<(String, String)>, String> {
            props
                .get(list)
                .and_then(Value::as_sequence)
                .ok_or_else(|| format!("{logical_id} has no {list}"))?
                .iter()
                .map(|entry| {
                    let field = |k: &str| {
                        entry
                            .get(k)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{logical_id}.{list}: missing {k}"))
                    };
                    Ok((field(a)?, field(b)?))
                })
                .collect()
        };
        let ttl_attribute = props
            .get("TimeToLiveSpecification")
            .filter(|ttl| ttl.get("Enabled").and_then(Value::as_bool) == Some(true))
            .and_then(|ttl| ttl.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let stream_view = props
            .get("StreamSpecification")
            .and_then(|stream| stream.get("StreamViewType"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        specs.push(TableSpec {
            stream_view,
            attributes: pairs("AttributeDefinitions", "AttributeName", "AttributeType")?,
            key_schema: pairs("KeySchema", "AttributeName", "KeyType")?,
            logical_id,
            env_var,
            ttl_attribute,
        });
    }
    if specs.is_empty() {
        return Err("template.yaml defines no DynamoDB table referenced by a function".to_owned());
    }
    Ok(specs)
}

/// Creates each table (if it does not exist yet) with its TTL, and returns `(env var, table name)` pairs.
pub async fn create_tables(
    client: &Client,
    specs: &[TableSpec],
    prefix: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let existing = client.list_tables().send().await.map_err(unavailable)?;
    let mut names = Vec::new();
    for spec in specs {
        let name = spec.local_name(prefix);
        if !existing.table_names().contains(&name) {
            let mut create = client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .set_stream_specification(stream(spec)?);
            for (attr, kind) in &spec.attributes {
                create = create.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ScalarAttributeType::from(kind.as_str()))
                        .build()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            for (attr, kind) in &spec.key_schema {
                create = create.key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr)
                        .key_type(KeyType::from(kind.as_str()))
                        .build()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            match create.send().await {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(err) => return Err(unavailable(err)),
            }
            if let Some(attr) = &spec.ttl_attribute {
                client
                    .update_time_to_live()
                    .table_name(&name)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(attr)
                            .enabled(true)
                            .build()
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    )
                    .send()
                    .await
                    .map_err(unavailable)?;
            }
        } else if spec.stream_view.is_some() {
            // A table made before it had a stream (a local stack started by an older keystead): add it.
            let table = client
                .describe_table()
                .table_name(&name)
                .send()
                .await
                .map_err(unavailable)?;
            let enabled = table
                .table()
                .and_then(|t| t.stream_specification())
                .is_some_and(|s| s.stream_enabled());
            if !enabled {
                client
                    .update_table()
                    .table_name(&name)
                    .set_stream_specification(stream(spec)?)
                    .send()
                    .await
                    .map_err(unavailable)?;
            }
        }
        names.push((spec.env_var.clone(), name));
    }
    Ok(names)
}

fn stream(spec: &TableSpec) -> Result<Option<StreamSpecification>, StoreError> {
    spec.stream_view
        .as_deref()
        .map(|view| {
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
}
