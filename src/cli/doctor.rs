//! `keystead doctor [<TENANT_ID>]`: checks what a working deployment needs, in the order a seller sets it up, and
//! prints a checklist with the fix for each failure: the tables (with TTL), the KMS key, the tenant, SES (the
//! sender, the sandbox, the quota), the API, Gumroad's resource subscriptions and the key emails that failed.
//! Every check runs whatever the others found; a check that cannot ask AWS fails with what AWS said.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{TableStatus, TimeToLiveStatus};
use aws_sdk_kms::types::{KeySpec, KeyState};
use serde::Serialize;
use serde_json::json;

use super::gumroad::{api_error, url_token};
use super::gumroad_api::{GumroadApi, RESOURCES, Subscription};
use super::license::{email_fix, owed_emails};
use super::ses::{SenderStanding, SesAdmin, sandbox_fix, unverified_sender};
use super::{CliError, Output, first_line, without_debug};
use crate::domain::{
    EmailFailure, Tenant, TenantId, TenantStatus, TokenHash, WebhookToken, format_duration,
    parse_duration,
};
use crate::signing::KmsVault;
use crate::storage::{DynamoStore, Store, Tables};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Also check this tenant: its sender, signing key, Gumroad subscriptions and failed key emails.
    tenant_id: Option<String>,
    /// The API's base URL (the stack's ApiUrl output).
    #[arg(long, env = "KEYSTEAD_API_URL")]
    api_url: Option<String>,
    /// The stack's SenderIdentity parameter (in its CliEnvironment output): the only identity, with its domain,
    /// the function's role may send as. Given, the sender check also compares the tenant's sender with it.
    #[arg(long, env = "KEYSTEAD_SENDER_IDENTITY")]
    sender_identity: Option<String>,
    /// How far back failed key emails count (90s, 45m, 12h, 7d; at most 365d).
    #[arg(long, default_value = "7d")]
    since: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    /// Worth knowing, not broken: does not fail the run.
    Warn,
    /// Not checked, and why (with what would let it be checked).
    Skip,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Skip => "skip",
            Self::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Serialize)]
struct Check {
    id: &'static str,
    status: Status,
    summary: String,
    /// Commands or steps that fix it, in order.
    fix: Vec<String>,
}

#[derive(Default)]
struct Checklist {
    checks: Vec<Check>,
}

impl Checklist {
    fn add(
        &mut self,
        id: &'static str,
        status: Status,
        summary: impl Into<String>,
        fix: Vec<String>,
    ) {
        self.checks.push(Check {
            id,
            status,
            summary: summary.into(),
            fix,
        });
    }

    fn ok(&mut self, id: &'static str, summary: impl Into<String>) {
        self.add(id, Status::Ok, summary, Vec::new());
    }

    fn fail(&mut self, id: &'static str, summary: impl Into<String>, fix: impl Into<String>) {
        self.add(id, Status::Fail, summary, vec![fix.into()]);
    }

    fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id)
            .collect()
    }
}

/// A check that could not ask AWS: what it said, and where to look.
const AWS_FIX: &str = "check the AWS credentials and region (`aws sts get-caller-identity`), the network, and that the credentials may call it (README, The admin CLI → Configuration)";

fn sdk_error<E: std::error::Error + 'static>(what: &str, err: &E) -> String {
    let detail = aws_sdk_ses::error::DisplayErrorContext(err).to_string();
    format!("{what} failed: {}", first_line(without_debug(&detail)))
}

pub async fn run(args: DoctorArgs, out: &mut Output) -> Result<(), CliError> {
    let tenant_id = args.tenant_id.as_deref().map(TenantId::parse).transpose()?;
    let since = parse_duration(&args.since)?;
    let api_url = super::tenant::api_base(args.api_url.as_deref())?;
    let sdk = crate::config::aws().await;
    let region = sdk
        .region()
        .map_or_else(|| "(no region)".to_owned(), |r| r.to_string());
    let mut list = Checklist::default();

    let store = match Tables::from_env() {
        Ok(tables) => {
            let ddb = aws_sdk_dynamodb::Client::new(&sdk);
            check_tables(&ddb, &tables, &region, &mut list).await;
            Some(crate::config::dynamo_store(&sdk, tables))
        }
        Err(missing) => {
            list.fail(
                "tables",
                missing,
                "export the stack's CliEnvironment output (README: Deploy, Read the outputs)",
            );
            None
        }
    };

    let tenant = match (&tenant_id, &store) {
        (Some(tenant_id), Some(store)) => check_tenant(store, tenant_id, &mut list).await,
        _ => None,
    };
    check_kms(&sdk, tenant.as_ref(), &mut list).await;

    let ses = SesAdmin::new(&sdk);
    if let Some(tenant) = &tenant {
        check_sender(&ses, tenant, args.sender_identity.as_deref(), &mut list).await;
    }
    check_quota(&ses, &mut list).await;
    check_suppression(&aws_sdk_sesv2::Client::new(&sdk), &region, &mut list).await;
    check_api(
        api_url.as_deref(),
        tenant_id.as_ref(),
        tenant.as_ref(),
        &mut list,
    );
    if let (Some(tenant), Some(store)) = (&tenant, &store) {
        check_gumroad(tenant, api_url.as_deref(), &mut list);
        check_emails(store, tenant, since, &mut list).await;
        check_webhooks(store, tenant, &mut list).await;
    }

    print(&list, tenant_id.as_ref(), &region, out);
    let failed = list.failed();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::ChecksFailed(format!(
            "{} check(s) failed: {} (the checklist says how to fix each)",
            failed.len(),
            failed.join(", ")
        )))
    }
}

fn print(list: &Checklist, tenant_id: Option<&TenantId>, region: &str, out: &mut Output) {
    match tenant_id {
        Some(t) => out.line(format!("keystead doctor: tenant {t}, region {region}")),
        None => out.line(format!("keystead doctor: region {region} (pass a TENANT_ID to also check its sender, Gumroad subscriptions and key emails)")),
    }
    let width = list.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for check in &list.checks {
        out.line(format!(
            "  {:<4}  {:<width$}  {}",
            check.status.label(),
            check.id,
            check.summary
        ));
        for fix in &check.fix {
            out.line(format!("  {:<4}  {:<width$}    fix: {fix}", "", ""));
        }
    }
    let count = |status: Status| list.checks.iter().filter(|c| c.status == status).count();
    out.line(format!(
        "{} checks: {} ok, {} failed, {} warnings, {} skipped.",
        list.checks.len(),
        count(Status::Ok),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Skip)
    ));
    out.document(json!({
        "tenant_id": tenant_id,
        "region": region,
        "ok": count(Status::Fail) == 0,
        "checks": list.checks,
    }));
}

/// The tenant's webhook endpoints: a warning for each one failing, a failure for each one disabled (its 410).
async fn check_webhooks(store: &DynamoStore, tenant: &Tenant, list: &mut Checklist) {
    use crate::domain::webhook::EndpointStatus;
    let endpoints = match store.endpoints(&tenant.tenant_id).await {
        Ok(endpoints) => endpoints,
        Err(err) => {
            list.fail(
                "webhooks",
                format!("reading the endpoints failed: {err}"),
                AWS_FIX,
            );
            return;
        }
    };
    if endpoints.is_empty() {
        list.ok("webhooks", "no webhook endpoints");
        return;
    }
    let disabled: Vec<String> = endpoints
        .iter()
        .filter(|e| e.status == EndpointStatus::Disabled)
        .map(|e| {
            format!(
                "{} ({}) disabled: {}",
                e.endpoint_id,
                e.url,
                e.disabled_reason.as_deref().unwrap_or("by its answer")
            )
        })
        .collect();
    let failing: Vec<String> = endpoints
        .iter()
        .filter(|e| e.status == EndpointStatus::Enabled)
        .filter_map(|e| {
            let since = e.failing_since.as_ref()?;
            Some(format!(
                "{} ({}) failing since {since}: {}",
                e.endpoint_id,
                e.url,
                e.last_error.as_deref().unwrap_or_default()
            ))
        })
        .collect();
    if !disabled.is_empty() {
        list.fail(
            "webhooks",
            disabled.join("; "),
            "fix the receiver, then `keystead webhook remove <endpoint>` and `webhook add` it again; `keystead webhook replay --since <time> --endpoint <new>` sends what it missed",
        );
    } else if !failing.is_empty() {
        list.add(
            "webhooks",
            Status::Warn,
            failing.join("; "),
            vec!["deliveries are retried for three days; `keystead webhook deliveries <endpoint> --failed` shows each attempt".to_owned()],
        );
    } else {
        list.ok(
            "webhooks",
            format!("{} endpoint(s), all delivering", endpoints.len()),
        );
    }
}

/// Each table exists, is active and has TTL on `ttl` (without it, expired records are never deleted).
async fn check_tables(
    ddb: &aws_sdk_dynamodb::Client,
    tables: &Tables,
    region: &str,
    list: &mut Checklist,
) {
    let all = [
        (
            "tenants-table",
            "KEYSTEAD_TENANTS_TABLE",
            "TenantsTableName",
            &tables.tenants,
        ),
        (
            "licenses-table",
            "KEYSTEAD_LICENSES_TABLE",
            "LicensesTableName",
            &tables.licenses,
        ),
        (
            "payments-table",
            "KEYSTEAD_PAYMENTS_TABLE",
            "PaymentsTableName",
            &tables.payments,
        ),
        (
            "events-table",
            "KEYSTEAD_EVENTS_TABLE",
            "EventsTableName",
            &tables.events,
        ),
    ];
    for (id, var, output, name) in all {
        let described = ddb.describe_table().table_name(name.as_str()).send().await;
        let table = match described {
            Ok(out) => out.table,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                list.fail(
                    id,
                    format!("table '{name}' ({var}) does not exist in {region}"),
                    format!("set {var} to the stack's {output} output (CliEnvironment), or deploy the stack (`sam build && sam deploy`)"),
                );
                continue;
            }
            Err(err) => {
                list.fail(
                    id,
                    sdk_error(&format!("DescribeTable {name}"), &err),
                    AWS_FIX,
                );
                continue;
            }
        };
        let status = table.as_ref().and_then(|t| t.table_status().cloned());
        if !matches!(
            status,
            Some(TableStatus::Active) | Some(TableStatus::Updating)
        ) {
            let state = status.map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned());
            list.fail(
                id,
                format!("table '{name}' is {state}, not ACTIVE"),
                "wait until CloudFormation finishes, then run doctor again",
            );
            continue;
        }
        let ttl = ddb
            .describe_time_to_live()
            .table_name(name.as_str())
            .send()
            .await;
        let description = match ttl {
            Ok(out) => out.time_to_live_description,
            Err(err) => {
                list.fail(
                    id,
                    sdk_error(&format!("DescribeTimeToLive {name}"), &err),
                    AWS_FIX,
                );
                continue;
            }
        };
        let ttl_status = description
            .as_ref()
            .and_then(|d| d.time_to_live_status().cloned());
        let attribute = description.as_ref().and_then(|d| d.attribute_name());
        match (ttl_status, attribute) {
            (Some(TimeToLiveStatus::Enabled), Some("ttl")) => {
                list.ok(id, format!("'{name}' exists, TTL on `ttl`"));
            }
            (Some(TimeToLiveStatus::Enabling), _) => list.add(
                id,
                Status::Warn,
                format!("'{name}' exists; TTL is being enabled"),
                Vec::new(),
            ),
            (status, attribute) => list.fail(
                id,
                format!(
                    "'{name}' has TTL {} (on {}): expired records are never deleted",
                    status.map_or_else(|| "off".to_owned(), |s| s.as_str().to_lowercase()),
                    attribute.unwrap_or("no attribute")
                ),
                format!("aws dynamodb update-time-to-live --table-name {name} --time-to-live-specification Enabled=true,AttributeName=ttl"),
            ),
        }
    }
}

/// The tenant exists and takes pings.
async fn check_tenant(
    store: &DynamoStore,
    tenant_id: &TenantId,
    list: &mut Checklist,
) -> Option<Tenant> {
    match store.load_tenant(tenant_id).await {
        Ok(Some(tenant)) => {
            if tenant.status == TenantStatus::Suspended {
                list.add(
                    "tenant",
                    Status::Warn,
                    format!("tenant {tenant_id} is suspended: its pings are refused (403)"),
                    vec![format!("keystead tenant resume {tenant_id}")],
                );
            } else if !tenant.gumroad_enabled {
                list.add(
                    "tenant",
                    Status::Warn,
                    format!("tenant {tenant_id} has Gumroad pings disabled"),
                    vec![format!("keystead tenant set {tenant_id} --gumroad enabled")],
                );
            } else {
                list.ok(
                    "tenant",
                    format!(
                        "tenant {tenant_id} is active with {} product(s) and {} permalink mapping(s)",
                        tenant.products.len(),
                        tenant.permalinks.len() + tenant.variants.len()
                    ),
                );
            }
            Some(tenant)
        }
        Ok(None) => {
            list.fail(
                "tenant",
                format!("unknown tenant '{tenant_id}'"),
                format!("keystead tenant create {tenant_id} --sender <verified address>"),
            );
            None
        }
        Err(err) => {
            list.fail(
                "tenant",
                format!("reading tenant {tenant_id} failed: {err}"),
                AWS_FIX,
            );
            None
        }
    }
}

/// The signing key exists and is enabled; with a tenant, it opens the tenant's current lease-signing key.
async fn check_kms(sdk: &aws_config::SdkConfig, tenant: Option<&Tenant>, list: &mut Checklist) {
    let Some(key_id) = std::env::var(KmsVault::ENV).ok().filter(|v| !v.is_empty()) else {
        list.fail(
            "kms-key",
            format!("{} is not set: leases cannot be signed", KmsVault::ENV),
            "export the stack's CliEnvironment output (it sets KEYSTEAD_SIGNING_KEY_ID to the SigningKeyArn output)",
        );
        return;
    };
    let client = aws_sdk_kms::Client::new(sdk);
    let described = match client.describe_key().key_id(&key_id).send().await {
        Ok(out) => out,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) =>
        {
            list.fail(
                "kms-key",
                format!("KMS key {key_id} does not exist in this account and region"),
                "set KEYSTEAD_SIGNING_KEY_ID to the stack's SigningKeyArn output",
            );
            return;
        }
        Err(err) => {
            list.fail("kms-key", sdk_error("KMS DescribeKey", &err), AWS_FIX);
            return;
        }
    };
    let metadata = described.key_metadata();
    let state = metadata.and_then(|m| m.key_state().cloned());
    let spec = metadata.and_then(|m| m.key_spec().cloned());
    match state {
        Some(KeyState::Enabled) | None => {}
        Some(KeyState::PendingDeletion) => {
            list.fail(
                "kms-key",
                format!("KMS key {key_id} is pending deletion: no tenant's signing key can be opened after it is gone"),
                format!("aws kms cancel-key-deletion --key-id {key_id} && aws kms enable-key --key-id {key_id}"),
            );
            return;
        }
        Some(other) => {
            list.fail(
                "kms-key",
                format!("KMS key {key_id} is {}", other.as_str()),
                format!("aws kms enable-key --key-id {key_id}"),
            );
            return;
        }
    }
    if spec.is_some_and(|s| s != KeySpec::SymmetricDefault) {
        list.fail(
            "kms-key",
            format!("KMS key {key_id} is not a symmetric encryption key"),
            "set KEYSTEAD_SIGNING_KEY_ID to the stack's SigningKeyArn output",
        );
        return;
    }
    let Some(tenant) = tenant else {
        list.ok("kms-key", format!("KMS key {key_id} is enabled"));
        return;
    };
    let Some(sealed) = tenant.current_signing_key() else {
        list.ok(
            "kms-key",
            format!(
                "KMS key {key_id} is enabled; tenant {} gets its signing key with its first lease",
                tenant.tenant_id
            ),
        );
        return;
    };
    let vault = KmsVault::new(client, key_id.clone());
    match crate::signing::open(&vault, &tenant.tenant_id, sealed).await {
        Ok(_) => list.ok(
            "kms-key",
            format!("KMS key {key_id} opens tenant {}'s signing key {}", tenant.tenant_id, sealed.kid),
        ),
        Err(err) => list.fail(
            "kms-key",
            format!("KMS key {key_id} cannot open tenant {}'s signing key {}: {err}", tenant.tenant_id, sealed.kid),
            format!("check that KEYSTEAD_SIGNING_KEY_ID is the key the tenant's keys were sealed with; if the key is lost, `keystead tenant rotate-signing-key {}` makes a new one", tenant.tenant_id),
        ),
    }
}

/// The tenant's sender is a verified identity (a domain with DKIM) that the function's role may send as.
async fn check_sender(
    ses: &SesAdmin,
    tenant: &Tenant,
    sender_identity: Option<&str>,
    list: &mut Checklist,
) {
    let sender = &tenant.sender;
    let standing = match ses.sender_standing(sender).await {
        Ok(standing) => standing,
        Err(err) => {
            list.fail("ses-sender", err.to_string(), AWS_FIX);
            return;
        }
    };
    let SenderStanding::Verified { identity, domain } = &standing else {
        let (problem, fix) = unverified_sender(sender, &standing, &ses.region);
        list.fail("ses-sender", problem, fix);
        return;
    };
    let verified = if *domain {
        match ses.dkim(std::slice::from_ref(identity)).await {
            Ok(dkim) => match dkim.get(identity.as_str()) {
                Some(state) if state.as_str() == "Success" => {
                    format!("sender {sender} is verified through the domain {identity}, with DKIM")
                }
                state => {
                    return list.fail(
                        "ses-sender",
                        format!(
                            "sender {sender} is verified through {identity}, but its DKIM is {}: mail is more likely to land in spam, and Gmail and Yahoo refuse unauthenticated bulk mail",
                            state.map_or("not set up", |s| s.as_str())
                        ),
                        format!("keystead ses verify {identity} (add the three CNAME records it prints)"),
                    );
                }
            },
            Err(err) => return list.fail("ses-sender", err.to_string(), AWS_FIX),
        }
    } else {
        format!("sender {sender} is verified in SES ({identity})")
    };
    match sender_identity {
        None => list.ok(
            "ses-sender",
            format!("{verified}; not compared with the stack's SenderIdentity (KEYSTEAD_SENDER_IDENTITY is not set: export the stack's CliEnvironment output)"),
        ),
        Some(allowed) if role_may_send_as(allowed, identity) => list.ok(
            "ses-sender",
            format!("{verified}, which the stack's SenderIdentity {allowed} covers"),
        ),
        Some(allowed) => list.fail(
            "ses-sender",
            format!(
                "{verified}, but the function's role may send only as the stack's SenderIdentity {allowed} and its domain: SES refuses every key email with AccessDenied (it authorizes a send against the most specific verified identity, here {identity})"
            ),
            format!(
                "`keystead tenant set {} --sender <an address SenderIdentity covers>`, or deploy again with `sam deploy --parameter-overrides SenderIdentity={identity}`",
                tenant.tenant_id
            ),
        ),
    }
}

/// Whether the role the template gives the function may send through the verified `identity`: SES authorizes a
/// send against the identity that verifies the From address, and the role allows `identity/<SenderIdentity>`
/// and `identity/<its domain>` (template.yaml, SendAsSenderIdentity and SendAsSenderDomain).
fn role_may_send_as(sender_identity: &str, identity: &str) -> bool {
    let sender_identity = sender_identity.trim().to_ascii_lowercase();
    let domain = sender_identity
        .rsplit_once('@')
        .map_or(sender_identity.as_str(), |(_, domain)| domain);
    let identity = identity.to_ascii_lowercase();
    identity == sender_identity || identity == domain
}

/// Out of the sandbox, with room left in today's quota.
async fn check_quota(ses: &SesAdmin, list: &mut Checklist) {
    let quota = match ses.quota().await {
        Ok(quota) => quota,
        Err(err) => {
            list.fail("ses-sandbox", err.to_string(), AWS_FIX);
            return;
        }
    };
    let region = &ses.region;
    if quota.in_sandbox() {
        list.fail(
            "ses-sandbox",
            format!("the SES account is in the sandbox in {region}: only verified addresses receive mail, so buyers get no keys"),
            sandbox_fix(region),
        );
    } else {
        list.ok(
            "ses-sandbox",
            format!("the SES account has production access in {region}"),
        );
    }
    let summary = quota.describe();
    if quota.headroom() <= 0.0 {
        list.fail(
            "ses-quota",
            format!("today's SES quota is used up ({summary}): key emails fail until it frees up"),
            "ask AWS for a higher quota (Service Quotas → Amazon SES → Sending quota), then `keystead license resend <TENANT_ID> --failed`",
        );
    } else if quota.headroom() < 0.2 {
        list.add(
            "ses-quota",
            Status::Warn,
            format!("less than 20 % of today's SES quota is left ({summary})"),
            vec![
                "ask AWS for a higher quota (Service Quotas → Amazon SES → Sending quota)"
                    .to_owned(),
            ],
        );
    } else {
        list.ok("ses-quota", summary);
    }
}

/// The account-level suppression list (SES v2's GetAccount), a backstop behind the stack's configuration set: on
/// for bounces and complaints, SES sends nothing more to an address that bounced or complained, whichever mail of
/// the account it was. Off is worth a warning, not a failure: keystead's own mail is covered by its configuration
/// set either way.
async fn check_suppression(sesv2: &aws_sdk_sesv2::Client, region: &str, list: &mut Checklist) {
    use aws_sdk_sesv2::types::SuppressionListReason;
    let account = match sesv2.get_account().send().await {
        Ok(account) => account,
        Err(err) => {
            list.fail(
                "ses-suppression",
                sdk_error("SES v2 GetAccount", &err),
                AWS_FIX,
            );
            return;
        }
    };
    let on: Vec<&SuppressionListReason> = account
        .suppression_attributes()
        .map(|a| a.suppressed_reasons().iter().collect())
        .unwrap_or_default();
    let missing: Vec<&str> = [
        (SuppressionListReason::Bounce, "bounces"),
        (SuppressionListReason::Complaint, "complaints"),
    ]
    .iter()
    .filter(|(reason, _)| !on.contains(&reason))
    .map(|(_, name)| *name)
    .collect();
    if missing.is_empty() {
        list.ok(
            "ses-suppression",
            format!("the account-level suppression list takes bounces and complaints in {region}"),
        );
    } else {
        list.add(
            "ses-suppression",
            Status::Warn,
            format!(
                "the account-level suppression list does not take {} in {region}: the account's other mail can keep \
                 sending to addresses that complained, and SES may pause the account's sending (every tenant's key \
                 emails) when its complaint rate reaches 0.1%",
                missing.join(" or ")
            ),
            vec![format!(
                "aws sesv2 put-account-suppression-attributes --suppressed-reasons BOUNCE COMPLAINT --region {region}"
            )],
        );
    }
}

/// The API answers with keystead's own JSON: the tenant's JWKS, or keystead's 404 for a tenant that does not exist.
fn check_api(
    api_url: Option<&str>,
    tenant_id: Option<&TenantId>,
    tenant: Option<&Tenant>,
    list: &mut Checklist,
) {
    let Some(api) = api_url else {
        list.add(
            "api",
            Status::Skip,
            "no API URL to check",
            vec!["pass --api-url or set KEYSTEAD_API_URL to the stack's ApiUrl output".to_owned()],
        );
        return;
    };
    let probe = tenant_id.map_or("keystead-doctor-probe", TenantId::as_str);
    let url = format!("{api}/v1/{probe}/jwks.json");
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let fix = "set KEYSTEAD_API_URL (or --api-url) to the stack's ApiUrl output, and check that the stack deployed";
    let mut response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(err) => {
            list.fail(
                "api",
                format!("{url} does not answer: {}", first_line(&err.to_string())),
                fix,
            );
            return;
        }
    };
    let status = response.status().as_u16();
    let body: Option<serde_json::Value> = response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let keystead_404 = status == 404 && body.as_ref().is_some_and(|b| b["error"] == "Not found");
    match (tenant, status, &body) {
        (Some(tenant), 200, Some(jwks)) if jwks["keys"].is_array() => {
            let kids: Vec<&str> = jwks["keys"]
                .as_array()
                .map(|keys| keys.iter().filter_map(|k| k["kid"].as_str()).collect())
                .unwrap_or_default();
            match tenant.signing_kid.as_deref() {
                Some(kid) if !kids.contains(&kid) => list.fail(
                    "api",
                    format!("{api} serves tenant {}'s JWKS without its current key {kid}: is the API another stack's?", tenant.tenant_id),
                    fix,
                ),
                _ => list.ok("api", format!("{api} answers with tenant {}'s JWKS", tenant.tenant_id)),
            }
        }
        (Some(tenant), _, _) if keystead_404 => list.fail(
            "api",
            format!("{api} is keystead but does not know tenant {}: the API and the tables are different stacks", tenant.tenant_id),
            fix,
        ),
        (None, _, _) if keystead_404 => list.ok("api", format!("{api} answers with keystead's JSON")),
        (_, status, _) => list.fail(
            "api",
            format!("{url} answered HTTP {status}, not keystead's JSON (API Gateway's own 404 means the route is missing)"),
            fix,
        ),
    }
}

/// A subscription's post URL without token and user info: `https://host/path`, for comparing with the API URL.
fn endpoint(url: &str) -> Option<(String, String)> {
    let uri: ureq::http::Uri = url.trim().parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let base = format!("{}://{host}{port}", uri.scheme_str()?);
    Some((base, uri.path().trim_end_matches('/').to_owned()))
}

/// Gumroad pings the tenant's current URL for every event keystead handles, and nothing pings a dead one.
fn check_gumroad(tenant: &Tenant, api_url: Option<&str>, list: &mut Checklist) {
    const ID: &str = "gumroad-subscriptions";
    let tenant_id = &tenant.tenant_id;
    let api = match GumroadApi::from_env() {
        Ok(api) => api,
        Err(why) => {
            list.add(
                ID,
                Status::Skip,
                format!("Gumroad not checked ({})", why.split(':').next().unwrap_or_default()),
                vec!["export GUMROAD_ACCESS_TOKEN=… (Gumroad → Settings → Advanced → Applications) and run doctor again".to_owned()],
            );
            return;
        }
    };
    let path = format!("/webhooks/gumroad/{tenant_id}");
    let stored = TokenHash::from_hex(&tenant.token_hash).unwrap_or(TokenHash([0; 32]));
    let api_endpoint = api_url.and_then(endpoint).map(|(base, _)| base);
    let mut current: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stale: Vec<(Subscription, &'static str)> = Vec::new();
    for event in RESOURCES {
        let subscriptions = match api.list(event) {
            Ok(subscriptions) => subscriptions,
            Err(err) => {
                let err = api_error(err, &api, &format!("the '{event}' subscriptions"));
                list.fail(
                    ID,
                    err.to_string(),
                    "fix the Gumroad access, then run doctor again",
                );
                return;
            }
        };
        for sub in subscriptions {
            let Some((base, sub_path)) = endpoint(&sub.post_url) else {
                continue;
            };
            if sub_path != path {
                continue;
            }
            let token_ok = sub
                .post_url
                .parse::<ureq::http::Uri>()
                .ok()
                .and_then(|uri| url_token(&uri))
                .is_some_and(|token| {
                    bool::from(WebhookToken::from_string(token).hash().ct_matches(&stored))
                });
            let why = if !token_ok {
                "carries a rotated-away token"
            } else if api_endpoint.as_ref().is_some_and(|api| *api != base) {
                "points at another API"
            } else {
                *current.entry(event).or_default() += 1;
                continue;
            };
            stale.push((sub, why));
        }
    }
    let missing: Vec<&str> = RESOURCES
        .into_iter()
        .filter(|event| !current.contains_key(event))
        .collect();
    if missing.is_empty() && stale.is_empty() {
        list.ok(
            ID,
            format!(
                "all {} events keystead handles ping tenant {tenant_id}'s current URL",
                RESOURCES.len()
            ),
        );
        return;
    }
    let mut problems = Vec::new();
    let mut fix = Vec::new();
    for (sub, why) in &stale {
        problems.push(format!(
            "{} subscription {} {why}",
            sub.resource_name, sub.id
        ));
        fix.push(format!("keystead gumroad unsubscribe {}", sub.id));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "no subscription to the current URL for {}",
            missing.join(", ")
        ));
        fix.push(format!(
            "keystead gumroad subscribe {tenant_id} --webhook-url '<ping URL>' --events {} (the ping URL from `tenant create` or `tenant rotate-token`)",
            missing.join(",")
        ));
    }
    list.add(ID, Status::Fail, problems.join("; "), fix);
}

/// No key email owed from the last `since` seconds.
async fn check_emails(store: &DynamoStore, tenant: &Tenant, since: u64, list: &mut Checklist) {
    const ID: &str = "key-emails";
    let window = format_duration(since);
    let owed = match owed_emails(store, &tenant.tenant_id, Some(since)).await {
        Ok(owed) => owed,
        Err(err) => {
            list.fail(ID, err.to_string(), AWS_FIX);
            return;
        }
    };
    if owed.is_empty() {
        list.ok(ID, format!("no key email is owed from the last {window}"));
        return;
    }
    let mut reasons: BTreeMap<Option<EmailFailure>, usize> = BTreeMap::new();
    for license in &owed {
        *reasons.entry(license.email_failure).or_default() += 1;
    }
    let counted: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason.map_or("stalled", EmailFailure::as_str)))
        .collect();
    let examples: Vec<String> = owed
        .iter()
        .take(3)
        .map(|l| format!("{} to {}", l.license_id, l.buyer_email.masked()))
        .collect();
    let mut fix: Vec<String> = reasons
        .keys()
        .flatten()
        .map(|reason| email_fix(*reason, &tenant.sender))
        .collect();
    fix.push(format!(
        "keystead license resend {} --failed --since {window}",
        tenant.tenant_id
    ));
    list.add(
        ID,
        Status::Fail,
        format!(
            "{} key email(s) from the last {window} never reached the buyer ({}): {}{}",
            owed.len(),
            counted.join(", "),
            examples.join(", "),
            if owed.len() > examples.len() {
                ", …"
            } else {
                ""
            }
        ),
        fix,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_urls_compare_without_token_or_user() {
        assert_eq!(
            endpoint("https://gumroad:t0k@API.example.com/webhooks/gumroad/acme/?token=x"),
            Some((
                "https://api.example.com".to_owned(),
                "/webhooks/gumroad/acme".to_owned()
            ))
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9000/webhooks/gumroad/acme"),
            Some((
                "http://127.0.0.1:9000".to_owned(),
                "/webhooks/gumroad/acme".to_owned()
            ))
        );
        assert_eq!(endpoint("not a url"), None);
    }

    #[test]
    fn the_role_sends_as_sender_identity_and_its_domain_only() {
        // SenderIdentity a domain: the domain itself (an address verified through it is checked as it).
        assert!(role_may_send_as("mydomain.com", "mydomain.com"));
        assert!(role_may_send_as("MyDomain.com", "mydomain.com"));
        assert!(!role_may_send_as("mydomain.com", "licenses@mydomain.com"));
        assert!(!role_may_send_as("mydomain.com", "other.com"));
        assert!(!role_may_send_as("mydomain.com", "shop.mydomain.com"));
        // SenderIdentity an address: the address, or its domain.
        assert!(role_may_send_as(
            "licenses@mydomain.com",
            "licenses@mydomain.com"
        ));
        assert!(role_may_send_as("licenses@mydomain.com", "mydomain.com"));
        assert!(!role_may_send_as(
            "licenses@mydomain.com",
            "sales@mydomain.com"
        ));
        assert!(!role_may_send_as("licenses@mydomain.com", "mydomain.co"));
    }
}
