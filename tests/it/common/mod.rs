//! Shared helpers for the integration tests: the local stack from the environment `infra/local/up` exports,
//! tenants seeded straight into DynamoDB Local, API Gateway v2 events for the real handler, and the mail that
//! moto's SES server received.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use keystead::app::App;
use keystead::domain::{
    Email, KeyPrefix, Permalink, Product, ProductId, Tenant, TenantId, TenantStatus, WebhookToken,
};
use keystead::storage::{DynamoStore, Tables};
use serde_json::{Value, json};

pub mod faults;
pub mod local_api;
pub mod portal;
pub mod private_dynamodb;

pub type Item = HashMap<String, AttributeValue>;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, or eval \"$(infra/local/up)\" first")
    })
}

/// A random lower-case suffix so every test works on its own tenant, buyers and sales.
pub fn unique(prefix: &str) -> String {
    let id = keystead::domain::random_id("x").unwrap();
    format!("{prefix}-{}", &id[2..14])
}

pub struct Stack {
    pub app: App,
    pub store: DynamoStore,
    pub ddb: aws_sdk_dynamodb::Client,
    pub ses: aws_sdk_ses::Client,
    pub tables: Tables,
}

impl Stack {
    /// Changes one product of a tenant in place, as `keystead product set` would.
    pub async fn change_product(
        &self,
        tenant_id: &str,
        product_id: &str,
        change: impl FnOnce(&mut Product),
    ) {
        use keystead::storage::Store;
        let tenant_id = TenantId::parse(tenant_id).unwrap();
        let mut product = self
            .store
            .load_tenant(&tenant_id)
            .await
            .unwrap()
            .unwrap()
            .products
            .remove(&ProductId::parse(product_id).unwrap())
            .unwrap();
        change(&mut product);
        assert!(
            self.store
                .replace_product(&tenant_id, &product)
                .await
                .unwrap(),
            "the product changed meanwhile"
        );
    }
}

pub async fn stack() -> Stack {
    let tables = Tables::from_env().unwrap_or_else(|e| panic!("{e}"));
    stack_with(&sdk().await, tables)
}

/// keystead's SDK configuration, with timeouts loose enough for a loaded two-core test machine: the tests check
/// behaviour, never speed.
pub async fn sdk() -> aws_config::SdkConfig {
    keystead::config::aws_with(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(std::time::Duration::from_secs(4))
            .operation_timeout(std::time::Duration::from_secs(8))
            .build(),
    )
    .await
}

pub fn stack_with(sdk: &aws_config::SdkConfig, tables: Tables) -> Stack {
    let store = keystead::config::dynamo_store(sdk, tables.clone());
    let mailer = keystead::config::ses_mailer(sdk);
    stack_around(sdk, tables, store, mailer)
}

/// The stack with its SES client in another region (DynamoDB and KMS where the stack's are, as in a deployment
/// whose SES identity lives elsewhere).
pub async fn stack_with_ses_in(region: &'static str, tables: Tables) -> Stack {
    let sdk = sdk().await;
    let ses_sdk = sdk
        .clone()
        .into_builder()
        .region(aws_config::Region::new(region))
        .build();
    let store = keystead::config::dynamo_store(&sdk, tables.clone());
    let mailer = keystead::config::ses_mailer(&ses_sdk);
    stack_around(&sdk, tables, store, mailer)
}

/// The stack whose function uses `store` and `mailer`; the test's own clients (and `Stack::store`) are clean.
fn stack_around(
    sdk: &aws_config::SdkConfig,
    tables: Tables,
    store: DynamoStore,
    mailer: keystead::mail::SesMailer,
) -> Stack {
    let app = App::new(
        Arc::new(store),
        Arc::new(mailer),
        Arc::new(keystead::config::kms_vault(sdk).unwrap_or_else(|e| panic!("{e}"))),
    );
    Stack {
        app,
        store: keystead::config::dynamo_store(sdk, tables.clone()),
        ddb: aws_sdk_dynamodb::Client::new(sdk),
        ses: aws_sdk_ses::Client::new(sdk),
        tables,
    }
}

/// The store over a DynamoDB client with `faults` in it.
pub async fn faulty_store(faults: &faults::Faults) -> DynamoStore {
    let sdk = sdk().await;
    let tables = Tables::from_env().unwrap_or_else(|e| panic!("{e}"));
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(faults.clone())
            .build(),
    );
    // Keys sealed at rest, as the function's store does.
    let store = DynamoStore::new(ddb, tables);
    let vault = keystead::config::kms_vault(&sdk).unwrap_or_else(|e| panic!("{e}"));
    let keys = keystead::portal::KeysAtRest::new(
        keystead::portal::MacKeys::new(Arc::new(vault)),
        store.clone(),
    );
    store.with_key_cipher(Arc::new(keys))
}

/// The stack with `faults` in the function's DynamoDB and SES clients (the test's own reads stay clean).
pub async fn faulty_stack(faults: &faults::Faults) -> Stack {
    let sdk = sdk().await;
    let tables = Tables::from_env().unwrap_or_else(|e| panic!("{e}"));
    let mailer = keystead::mail::SesMailer::from_config(
        aws_sdk_ses::config::Builder::from(&sdk).interceptor(faults.clone()),
    );
    stack_around(&sdk, tables, faulty_store(faults).await, mailer)
}

pub struct Seed {
    pub seller_id: Option<String>,
    pub sender: String,
    pub activation_limit: u32,
    pub duration_days: Option<u32>,
    pub status: TenantStatus,
    pub gumroad_enabled: bool,
    pub map_product: bool,
    pub seat_lease_seconds: Option<u64>,
    /// Answer Gumroad's own verify route (`tenant set --gumroad-verify on`).
    pub gumroad_verify: bool,
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            seller_id: Some("kL0psVL2admJSYRNs-OCMg==".to_owned()),
            sender: env("KEYSTEAD_LOCAL_SENDER"),
            activation_limit: 3,
            duration_days: None,
            status: TenantStatus::Active,
            gumroad_enabled: true,
            map_product: true,
            seat_lease_seconds: None,
            gumroad_verify: false,
        }
    }
}

#[derive(Clone)]
pub struct Seeded {
    pub tenant_id: String,
    pub token: String,
    pub product_id: String,
}

/// A tenant with product `myapp` (prefix ACME, name "MyApp") mapped from permalink `myapp-pro`.
pub async fn seed(stack: &Stack, seed: Seed) -> Seeded {
    let tenant_id = TenantId::parse(&unique("t")).unwrap();
    let token = WebhookToken::generate().unwrap();
    let product = Product {
        activation_limit: seed.activation_limit,
        duration_days: seed.duration_days,
        seat_lease_seconds: seed.seat_lease_seconds,
        ..Product::new(
            ProductId::parse("myapp").unwrap(),
            "MyApp".to_owned(),
            KeyPrefix::parse("ACME").unwrap(),
            "2026-01-01T00:00:00Z".to_owned(),
        )
    };
    let mut permalinks = std::collections::BTreeMap::new();
    if seed.map_product {
        permalinks.insert(
            Permalink::parse("myapp-pro").unwrap(),
            product.product_id.clone(),
        );
    }
    let tenant = Tenant {
        status: seed.status,
        seller_id: seed.seller_id,
        permalinks,
        gumroad_enabled: seed.gumroad_enabled,
        gumroad_verify: seed.gumroad_verify,
        ..Tenant::new(
            tenant_id.clone(),
            token.hash().to_hex(),
            Email::parse(&seed.sender).unwrap(),
            "2026-01-01T00:00:00Z".to_owned(),
        )
    };
    stack.store.create_tenant(&tenant).await.unwrap();
    stack
        .store
        .create_product(&tenant_id, &product)
        .await
        .unwrap();
    Seeded {
        tenant_id: tenant_id.to_string(),
        token: token.expose().to_owned(),
        product_id: product.product_id.to_string(),
    }
}

/// A sale ping in Gumroad's own field order and encoding (see shared/GUMROAD.md).
pub fn sale_body(sale_id: &str, email: &str) -> String {
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2D", "-")
            .replace("%5F", "_")
            .replace("%2E", ".")
            .replace("%7E", "~")
    };
    [
        "seller_id=kL0psVL2admJSYRNs-OCMg%3D%3D".to_owned(),
        "product_id=32-nPAicqbLj8B_WswVlMw%3D%3D".to_owned(),
        "product_name=MyApp%20Pro".to_owned(),
        "permalink=myapp-pro".to_owned(),
        "product_permalink=https%3A%2F%2Facme.gumroad.com%2Fl%2Fmyapp-pro".to_owned(),
        "short_product_id=qwxyz".to_owned(),
        format!("email={}", enc(email)),
        "price=2900".to_owned(),
        "gumroad_fee=370".to_owned(),
        "currency=usd".to_owned(),
        "quantity=1".to_owned(),
        "card%5Bvisual%5D=%2A%2A%2A%2A%204242".to_owned(),
        "card%5Btype%5D=visa".to_owned(),
        "order_number=524459935".to_owned(),
        format!("sale_id={}", enc(sale_id)),
        "sale_timestamp=2026-05-04T19%3A38%3A56Z".to_owned(),
        "full_name=Jane%20Doe".to_owned(),
        "variants%5BTier%5D=Pro".to_owned(),
        "ip_country=United%20States".to_owned(),
        "refunded=false".to_owned(),
        "resource_name=sale".to_owned(),
        "disputed=false".to_owned(),
        "dispute_won=false".to_owned(),
    ]
    .join("&")
}

/// A unique sale id shaped like Gumroad's (`FO8TXN-dbxYaBdahG97Y-Q==`).
pub fn sale_id() -> String {
    format!("{}==", unique("S"))
}

pub fn buyer() -> String {
    format!("{}@example.com", unique("buyer"))
}

pub struct Ping<'a> {
    pub method: &'a str,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    pub base64: bool,
    /// The caller's address as API Gateway reports it.
    pub source_ip: String,
}

impl<'a> Ping<'a> {
    pub fn new(tenant_id: &str, token: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST",
            path: format!("/webhooks/gumroad/{tenant_id}"),
            query: token
                .map(|t| vec![("token", t.to_owned())])
                .unwrap_or_default(),
            headers: vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            )],
            body: body.into(),
            base64: false,
            source_ip: "203.0.113.7".to_owned(),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// The API Gateway HTTP API (payload 2.0) event for this request.
    pub fn event(&self) -> Value {
        let raw_query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        let query: serde_json::Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let (body, is_base64) = if self.base64 || std::str::from_utf8(&self.body).is_err() {
            (
                base64::engine::general_purpose::STANDARD.encode(&self.body),
                true,
            )
        } else {
            (String::from_utf8(self.body.clone()).unwrap(), false)
        };
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": raw_query.join("&"),
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012", "apiId": "local", "domainName": "local.example",
                "domainPrefix": "local",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1",
                         "sourceIp": self.source_ip, "userAgent": "Gumroad"},
                "requestId": unique("req"), "routeKey": "$default", "stage": "$default",
                "time": "04/May/2026:19:38:56 +0000", "timeEpoch": 1_777_923_536_000_i64
            },
            "body": body,
            "isBase64Encoded": is_base64,
        });
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        event
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub async fn send(app: &App, ping: &Ping<'_>) -> Reply {
    Reply::from(app.handle(&ping.event().to_string()).await.unwrap())
}

impl From<keystead::http::gateway::Answer> for Reply {
    fn from(answer: keystead::http::gateway::Answer) -> Self {
        let headers = answer
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = match answer.text {
            true => String::from_utf8_lossy(&answer.body).into_owned(),
            false => String::from_utf8(answer.body.to_vec()).unwrap(),
        };
        Reply {
            status: answer.status.as_u16(),
            headers,
            body,
        }
    }
}

async fn query_all(stack: &Stack, table: &str, tenant_id: &str) -> Vec<Item> {
    stack
        .ddb
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

/// The licenses table's records of a tenant, without the portal's email index pointers (`EMAIL#…`, see
/// `portal::email_pointers`).
pub async fn licenses(stack: &Stack, tenant_id: &str) -> Vec<Item> {
    query_all(stack, &stack.tables.licenses, tenant_id)
        .await
        .into_iter()
        .filter(|item| !s(item, "sk").starts_with("EMAIL#"))
        .collect()
}

/// Every record of a tenant in the licenses table, email index pointers included.
pub async fn license_table(stack: &Stack, tenant_id: &str) -> Vec<Item> {
    query_all(stack, &stack.tables.licenses, tenant_id).await
}

pub async fn payments(stack: &Stack, tenant_id: &str) -> Vec<Item> {
    query_all(stack, &stack.tables.payments, tenant_id).await
}

/// The events table's items of a tenant but its audit log (idempotency records, markers, counters).
pub async fn events(stack: &Stack, tenant_id: &str) -> Vec<Item> {
    query_all(stack, &stack.tables.events, tenant_id)
        .await
        .into_iter()
        .filter(|item| !s(item, "sk").starts_with("AUDIT#"))
        .collect()
}

/// A new queue in moto's SQS; its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

/// A tenant's audit events (the webhook outbox), oldest first.
pub async fn audit_items(stack: &Stack, tenant_id: &str) -> Vec<Item> {
    query_all(stack, &stack.tables.events, tenant_id)
        .await
        .into_iter()
        .filter(|item| s(item, "sk").starts_with("AUDIT#"))
        .collect()
}

/// The types of a tenant's audit events, oldest first.
pub async fn audit_types(stack: &Stack, tenant_id: &str) -> Vec<String> {
    audit_items(stack, tenant_id)
        .await
        .iter()
        .map(|item| s(item, "type").to_owned())
        .collect()
}

/// What DynamoDB's TTL would have done by `as_of` (unix seconds): deletes every item of the tenant, in every
/// table, whose `ttl` is at or before it. DynamoDB Local never expires anything by itself. Returns the sort keys
/// (or sale ids) deleted.
pub async fn ttl_sweep(stack: &Stack, tenant_id: &str, as_of: i64) -> Vec<String> {
    let mut deleted = Vec::new();
    let tables = [
        (&stack.tables.tenants, "sk"),
        (&stack.tables.licenses, "sk"),
        (&stack.tables.payments, "sale_id"),
        (&stack.tables.events, "sk"),
    ];
    for (table, range_key) in tables {
        for item in query_all(stack, table, tenant_id).await {
            let expired = item
                .get("ttl")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|ttl| ttl <= as_of);
            if expired {
                stack
                    .ddb
                    .delete_item()
                    .table_name(table.as_str())
                    .key("tenant_id", item["tenant_id"].clone())
                    .key(range_key, item[range_key].clone())
                    .send()
                    .await
                    .unwrap();
                deleted.push(s(&item, range_key).to_owned());
            }
        }
    }
    deleted
}

/// The license records among a tenant's items (not its activations or pointers).
pub fn license_items(items: &[Item]) -> Vec<&Item> {
    items
        .iter()
        .filter(|i| s(i, "sk").starts_with("LICENSE#"))
        .collect()
}

/// Every record a tenant's pings could have written.
pub async fn writes(stack: &Stack, tenant_id: &str) -> usize {
    licenses(stack, tenant_id).await.len()
        + payments(stack, tenant_id).await.len()
        + events(stack, tenant_id).await.len()
}

/// A license item's key, opened as the store opens it (keys are sealed at rest).
pub async fn key_of(stack: &Stack, item: &Item) -> String {
    use keystead::storage::Store as _;
    let tenant = TenantId::parse(s(item, "tenant_id")).unwrap();
    let hash = keystead::domain::KeyHash::from_stored(s(item, "key_hash"));
    stack
        .store
        .get_license(&tenant, &hash)
        .await
        .unwrap()
        .unwrap()
        .key
        .expose()
        .to_owned()
}

pub fn s<'a>(item: &'a Item, attr: &str) -> &'a str {
    item.get(attr)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{attr} missing or not a string in {item:?}"))
}

pub fn n(item: &Item, attr: &str) -> i64 {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{attr} missing or not a number in {item:?}"))
}

fn http_get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .with_config()
        .limit(512 * 1024 * 1024)
        .read_to_string()
        .unwrap()
}

/// The messages moto's SES accepted for `to`: `source`, `subject`, `body` (the HTML part), `destinations`.
pub fn emails_to(to: &str) -> Vec<Value> {
    let url = format!("{}/moto-api/data.json", env("AWS_ENDPOINT_URL_SES"));
    // moto's dump of every model fails once for each new S3 object version while S3 (the same server) is in
    // use: the next dump succeeds.
    let text = (0..20)
        .find_map(|attempt| {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let mut response = ureq::get(&url).call().ok()?;
            response
                .body_mut()
                .with_config()
                .limit(512 * 1024 * 1024)
                .read_to_string()
                .ok()
        })
        .unwrap_or_else(|| http_get(&url));
    let data: Value = serde_json::from_str(&text).unwrap();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d == to))
        })
        .collect()
}

/// The plain-text bodies of every SendEmail request SES received for `to` (moto keeps only the HTML part in its
/// model, so this reads the requests it recorded).
pub fn recorded_text_bodies(to: &str) -> Vec<String> {
    let path = format!("{}/ses-recording.jsonl", env("KEYSTEAD_LOCAL_STATE"));
    let recording = std::fs::read_to_string(&path).unwrap_or_default();
    let mut bodies = Vec::new();
    for line in recording.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let raw = entry["body"].as_str().unwrap_or_default();
        let raw = if entry["body_encoded"].as_bool() == Some(true) {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        } else {
            raw.to_owned()
        };
        let form: HashMap<String, String> = serde_urlencoded::from_str(&raw).unwrap_or_default();
        if form.get("Action").map(String::as_str) == Some("SendEmail")
            && form
                .get("Destination.ToAddresses.member.1")
                .map(String::as_str)
                == Some(to)
            && let Some(text) = form.get("Message.Body.Text.Data")
        {
            bodies.push(text.clone());
        }
    }
    bodies
}

/// A ping for a new sale (a fresh sale id and buyer) to a seeded tenant, with its token.
pub fn new_sale(t: &Seeded) -> Ping<'static> {
    Ping::new(
        &t.tenant_id,
        Some(&t.token),
        sale_body(&sale_id(), &buyer()),
    )
}

/// A sale-shaped event (refund, dispute, dispute_won) for a sale: Gumroad's payload builder with another
/// `resource_name`.
pub fn sale_event(resource: &str, sale: &str, buyer: &str, refunded: bool) -> String {
    sale_body(sale, buyer)
        .replace("refunded=false", &format!("refunded={refunded}"))
        .replace("resource_name=sale", &format!("resource_name={resource}"))
}

/// A subscription payload as Gumroad builds it (see shared/GUMROAD.md), with the event's own fields appended.
pub fn subscription_event(
    resource: &str,
    subscription: &str,
    purchases: &[&str],
    extra: &str,
) -> String {
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut pairs = vec![
        format!("subscription_id={}", enc(subscription)),
        "product_id=32-nPAicqbLj8B_WswVlMw%3D%3D".to_owned(),
        "product_name=MyApp%20Pro".to_owned(),
        "user_id=Ud2Xo8rZzYmA8Qh2A3ZTdg%3D%3D".to_owned(),
        "user_email=jane.doe%2Bgr%40example.com".to_owned(),
    ];
    pairs.extend(
        purchases
            .iter()
            .map(|p| format!("purchase_ids%5B%5D={}", enc(p))),
    );
    pairs.extend([
        "created_at=2026-05-04T19%3A38%3A56Z".to_owned(),
        "charge_occurrence_count=1".to_owned(),
        "recurrence=monthly".to_owned(),
        "free_trial_ends_at=".to_owned(),
        format!("resource_name={resource}"),
    ]);
    let mut body = pairs.join("&");
    if !extra.is_empty() {
        body.push('&');
        body.push_str(extra);
    }
    body
}

pub fn subscription_sale(sale: &str, buyer: &str, subscription: &str, renewal: bool) -> String {
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut body = sale_body(sale, buyer).replace(
        "&full_name=Jane%20Doe",
        &format!(
            "&full_name=Jane%20Doe&subscription_id={}",
            enc(subscription)
        ),
    );
    if renewal {
        body = body.replace(
            "&variants%5BTier%5D=Pro",
            "&variants%5BTier%5D=Pro&is_recurring_charge=true",
        );
    }
    body.replace("&ip_country", "&recurrence=monthly&ip_country")
}

/// A license API request (`POST /v1/{tenant}/licenses/{action}`) with a JSON body.
pub fn call<'a>(tenant: &str, action: &str, body: impl Into<Vec<u8>>) -> Ping<'a> {
    let mut ping = Ping::new(tenant, None, body).header("content-type", "application/json");
    ping.path = format!("/v1/{tenant}/licenses/{action}");
    ping
}

pub async fn api(stack: &Stack, tenant: &str, action: &str, body: Value) -> Reply {
    send(&stack.app, &call(tenant, action, body.to_string())).await
}
