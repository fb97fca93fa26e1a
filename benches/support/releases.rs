//! Releases (issue 26): the update feeds and the download, in-process, each against its floor (the DynamoDB calls
//! it cannot avoid: with the function's caches warm, the license's read; cold, the license, the tenant and the
//! product's releases read side by side), and the binary patches' sizes on real open-source binaries (zstd's
//! reference-prefix mode, what `release publish` makes, against bsdiff's format by qbsdiff).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use keystead::app::App;
use keystead::domain::releases::{
    Arch, Asset, AssetKind, Channel, Platform, Release, ReleaseStatus,
};
use keystead::domain::{ProductId, TenantId};
use keystead::mail::SesMailer;
use keystead::portal::PortalSettings;
use keystead::storage::{DynamoStore, Tables};

use super::{Counter, Report, api_event, invoke, ms, stats};

/// A product with the releases of a year of monthly updates on two targets.
async fn publish(store: &DynamoStore, tenant: &TenantId) {
    for minor in 0..12 {
        for (platform, arch) in [
            (Platform::Linux, Arch::X86_64),
            (Platform::Darwin, Arch::Universal),
        ] {
            let version = format!("1.{minor}.0");
            let name = format!("MyApp-{version}-{platform}.tar.gz");
            let asset = Asset {
                s3_key: Asset::object_key(
                    tenant.as_str(),
                    "myapp",
                    &version,
                    (platform, arch),
                    "00",
                    &name,
                ),
                name,
                size: 40_000_000,
                sha256: "0".repeat(64),
                sha512: "A".repeat(88),
                kind: AssetKind::Installer,
                sparkle_signature: Some("S".repeat(88)),
                tauri_signature: Some("T".repeat(400)),
            };
            let release = Release {
                product_id: ProductId::parse("myapp").unwrap(),
                version,
                platform,
                arch,
                channel: Channel::Stable,
                build: Some(format!("{}", 100 + minor)),
                notes: Some("Fixes and improvements.".to_owned()),
                min_os: None,
                critical: false,
                entitlements: Vec::new(),
                status: ReleaseStatus::Published,
                created_at: format!("2026-{:02}-01T00:00:00Z", minor + 1),
                published_at: None,
                files: vec![asset],
            };
            store.add_release(tenant, &release).await.unwrap();
        }
    }
}

fn feed(tenant: &str, path: &str, query: &str, key: &str) -> String {
    api_event(
        "GET",
        &format!("/v1/{tenant}/products/myapp/{path}"),
        query,
        &[("x-license-key", key)],
        "",
    )
}

struct Floor<'a> {
    ddb: &'a aws_sdk_dynamodb::Client,
    tables: &'a Tables,
    tenant: String,
    license_sk: String,
}

impl Floor<'_> {
    async fn license(&self) {
        self.ddb
            .get_item()
            .table_name(&self.tables.licenses)
            .key("tenant_id", AttributeValue::S(self.tenant.clone()))
            .key("sk", AttributeValue::S(self.license_sk.clone()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
    }

    /// The tenant's partition of `table` (`prefix` `None`: all of it, as the tenant is read).
    async fn query(&self, table: &str, prefix: Option<&str>, consistent: bool) {
        let query = self
            .ddb
            .query()
            .table_name(table)
            .expression_attribute_values(":t", AttributeValue::S(self.tenant.clone()))
            .consistent_read(consistent);
        let query = match prefix {
            None => query.key_condition_expression("tenant_id = :t"),
            Some(prefix) => query
                .key_condition_expression("tenant_id = :t AND begins_with(sk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned())),
        };
        query.send().await.unwrap();
    }

    /// `cold`: the tenant and the releases are read too, beside the license.
    async fn round(&self, which: &str, i: usize) -> f64 {
        let started = Instant::now();
        match which {
            "cold" => {
                tokio::join!(
                    self.license(),
                    self.query(&self.tables.tenants, None, true),
                    self.query(&self.tables.licenses, Some("RELEASE#myapp#"), false),
                );
            }
            "download" => {
                self.license().await;
                self.ddb
                    .update_item()
                    .table_name(&self.tables.events)
                    .key("tenant_id", AttributeValue::S(self.tenant.clone()))
                    .key("sk", AttributeValue::S(format!("RATE#floor-download-{i}")))
                    .update_expression("ADD uses :one SET #ttl = :ttl")
                    .condition_expression("attribute_not_exists(uses) OR uses < :limit")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(":limit", AttributeValue::N(i64::MAX.to_string()))
                    .expression_attribute_values(":ttl", AttributeValue::N("4102444800".into()))
                    .send()
                    .await
                    .unwrap();
            }
            _ => self.license().await,
        }
        ms(started.elapsed())
    }
}

/// One kind of call: its label, the router it goes to, its request for call `i`, the status it must answer and
/// its floor.
type Case<'a> = (
    &'a str,
    &'a keystead::http::Api,
    Box<dyn Fn(usize) -> String + 'a>,
    u16,
    &'a str,
);

/// The feeds on `keys[0]`; downloads rotate over `keys` (90 calls each, under a license's 100 a day).
#[allow(clippy::too_many_arguments)]
pub async fn section(
    report: &mut Report,
    store: &DynamoStore,
    (ddb, ddb_count): (&aws_sdk_dynamodb::Client, &Counter),
    ses: &aws_sdk_ses::Client,
    sdk: &aws_config::SdkConfig,
    tables: &Tables,
    tenant: &str,
    keys: &[String],
    n: usize,
) {
    let key = keys[0].as_str();
    let tenant_id = TenantId::parse(tenant).unwrap();
    publish(store, &tenant_id).await;
    let settings = PortalSettings {
        public_url: Some("https://api.bench".to_owned()),
        ..PortalSettings::default()
    };
    let app = App::with_portal(
        Arc::new(store.clone()),
        Arc::new(SesMailer::new(ses.clone())),
        Arc::new(keystead::config::kms_vault(sdk).expect("KEYSTEAD_SIGNING_KEY_ID")),
        settings,
        keystead::config::files(sdk),
    );
    let warm = keystead::http::router(app.clone());
    let cold = keystead::http::router(app.with_tenant_cache_ttl(Duration::ZERO));
    let fixed = |path: &'static str, query: &'static str| -> Box<dyn Fn(usize) -> String> {
        Box::new(move |_| feed(tenant, path, query, key))
    };
    let json_query = "platform=linux&arch=x86_64&current=1.0.0";
    let cases: [Case; 6] = [
        (
            "JSON feed, 24 releases, update from 1.0.0 (caches warm)",
            &warm,
            fixed("releases", json_query),
            200,
            "warm",
        ),
        (
            "Sparkle appcast, 12 items (caches warm)",
            &warm,
            fixed("appcast.xml", ""),
            200,
            "warm",
        ),
        (
            "Tauri update check (caches warm)",
            &warm,
            fixed("tauri/darwin/aarch64/1.0.0", ""),
            200,
            "warm",
        ),
        (
            "electron latest-mac.yml (caches warm)",
            &warm,
            fixed("electron/latest-mac.yml", ""),
            200,
            "warm",
        ),
        (
            "JSON feed (caches cold: tenant and releases read too)",
            &cold,
            fixed("releases", json_query),
            200,
            "cold",
        ),
        (
            "download: 303 to a presigned URL (counts the license's downloads)",
            &warm,
            Box::new(|i| {
                let key = &keys[(i / 90) % keys.len()];
                feed(tenant, "releases/1.11.0/MyApp-1.11.0-linux.tar.gz", "", key)
            }),
            303,
            "download",
        ),
    ];
    // Warm-up (not the downloads: each counts against a license's day).
    for (_, router, event, _, kind) in &cases {
        if *kind != "download" {
            for i in 0..50 {
                invoke(router, &event(i)).await;
            }
        }
    }
    let floor = Floor {
        ddb,
        tables,
        tenant: tenant.to_owned(),
        license_sk: format!("LICENSE#{}", keystead::domain::sha256_hex(key)),
    };
    report.line(format!(
        "### Release feeds in-process, {n} sequential calls each, against its floor (issue 26)"
    ));
    report.line("");
    report.line("| call | p50 ms | p95 ms | floor p50 ms | p50 / floor | DynamoDB requests per call | wrong answers |");
    report.line("|---|---:|---:|---:|---:|---|---:|");
    for (label, router, event, expected, floor_kind) in &cases {
        let (mut samples, mut floors, mut wrong, mut requests) = (Vec::new(), Vec::new(), 0, 0u64);
        let mut ops = std::collections::BTreeMap::<String, u64>::new();
        for i in 0..n {
            let event = event(i);
            ddb_count.take();
            let started = Instant::now();
            let (status, body) = invoke(router, &event).await.parts();
            samples.push(ms(started.elapsed()));
            let (count, by_op) = ddb_count.take();
            requests += count;
            for (op, c) in by_op {
                *ops.entry(op).or_default() += c;
            }
            if status != *expected {
                wrong += 1;
                if wrong <= 2 {
                    eprintln!("bench: {label} answered {status} {body}");
                }
            }
            floors.push(floor.round(floor_kind, i).await);
        }
        let (s, f) = (stats(&mut samples), stats(&mut floors));
        let ops: Vec<String> = ops
            .iter()
            .map(|(op, c)| format!("{op} × {}", *c as f64 / n as f64))
            .collect();
        report.line(format!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2}× | {} ({}) | {wrong} |",
            s.p50,
            s.p95,
            f.p50,
            s.p50 / f.p50,
            requests as f64 / n as f64,
            ops.join(", "),
        ));
    }
    report.line("");
}

/// Patch sizes on the pairs of real files under `BENCH_PATCH_DIR` (`<name>/old`, `<name>/new`; scripts/bench
/// fetches them): zstd with the old file as reference prefix (level 19, long-distance matching, what
/// `release publish` makes) against bsdiff's format (qbsdiff, bzip2), each checked by applying it.
pub fn patches(report: &mut Report, dir: &std::path::Path) {
    let mut pairs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("old").is_file() && p.join("new").is_file())
        .collect();
    pairs.sort();
    report.line("### Binary patches on real files: zstd reference prefix (what `release publish` makes) against qbsdiff");
    report.line("");
    report.line("| files | new size | zstd -19 of the new file | zstd patch | patch / new | made in s | qbsdiff patch | patch / new | made in s |");
    report.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in pairs {
        let old = std::fs::read(pair.join("old")).unwrap();
        let new = std::fs::read(pair.join("new")).unwrap();
        let label = std::fs::read_to_string(pair.join("label"))
            .unwrap_or_else(|_| pair.file_name().unwrap().to_string_lossy().into_owned());
        let compressed = zstd::bulk::compress(&new, 19).unwrap().len();
        let started = Instant::now();
        let zstd_patch = keystead::files::patch::make_patch(&old, &new).unwrap();
        let zstd_secs = started.elapsed().as_secs_f64();
        assert_eq!(
            keystead::files::patch::apply_patch(&old, &zstd_patch).unwrap(),
            new
        );
        let started = Instant::now();
        let mut bsdiff = Vec::new();
        qbsdiff::Bsdiff::new(&old, &new)
            .compare(&mut bsdiff)
            .unwrap();
        let bsdiff_secs = started.elapsed().as_secs_f64();
        let mut applied = Vec::new();
        qbsdiff::Bspatch::new(&bsdiff)
            .unwrap()
            .apply(&old, &mut applied)
            .unwrap();
        assert_eq!(applied, new);
        let pct = |part: usize| format!("{:.1}%", part as f64 * 100.0 / new.len() as f64);
        report.line(format!(
            "| {} | {} | {} | {} | {} | {zstd_secs:.1} | {} | {} | {bsdiff_secs:.1} |",
            label.trim(),
            new.len(),
            compressed,
            zstd_patch.len(),
            pct(zstd_patch.len()),
            bsdiff.len(),
            pct(bsdiff.len()),
        ));
    }
    report.line("");
}
