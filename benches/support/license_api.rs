//! The license API's share of the benchmark: `validate`, `activate`, `deactivate` (with and without a lease) and
//! the Gumroad-compatible verify, in-process, each against its own floor (the bare DynamoDB calls it cannot avoid),
//! with DynamoDB requests per call counted by the interceptor.

use std::sync::atomic::Ordering;
use std::time::Instant;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use keystead::http::Api;
use keystead::storage::Tables;
use serde_json::{Value, json};

use super::{Counter, Report, invoke, ms, stats, unique};

fn api_event(path: &str, content_type: &str, body: &str) -> String {
    super::api_event(
        "POST",
        path,
        "",
        &[("content-type", content_type), ("user-agent", "bench-app")],
        body,
    )
}

fn call(tenant: &str, action: &str, body: Value) -> String {
    api_event(
        &format!("/v1/{tenant}/licenses/{action}"),
        "application/json",
        &body.to_string(),
    )
}

/// One kind of license API call: how to make its request, and whether the answer is the right one.
struct Case {
    label: &'static str,
    request: Box<dyn Fn(usize) -> String>,
    ok: fn(u16, &str) -> bool,
}

fn lease_ok(status: u16, body: &str) -> bool {
    status == 200 && body.contains("\"lease\":\"ey")
}

fn plain_ok(status: u16, body: &str) -> bool {
    status == 200 && !body.contains("\"lease\"")
}

/// The calls, on one license of the bench tenant with one machine holding a seat.
fn cases(tenant: &str, key: &str) -> Vec<Case> {
    let (t, k) = (tenant.to_owned(), key.to_owned());
    let validate = {
        let (t, k) = (t.clone(), k.clone());
        move |_| call(&t, "validate", json!({"key": k, "product_id": "myapp"}))
    };
    let validate_lease = {
        let (t, k) = (t.clone(), k.clone());
        move |i| {
            call(
                &t,
                "validate",
                json!({"key": k, "machine_id": "bench-held", "nonce": format!("n{i}")}),
            )
        }
    };
    let activate_held = {
        let (t, k) = (t.clone(), k.clone());
        move |i| {
            call(
                &t,
                "activate",
                json!({"key": k, "machine_id": "bench-held", "nonce": format!("n{i}")}),
            )
        }
    };
    let activate_new = {
        let (t, k) = (t.clone(), k.clone());
        move |i| {
            call(
                &t,
                "activate",
                json!({"key": k, "machine_id": format!("bench-{i}")}),
            )
        }
    };
    let deactivate = {
        let (t, k) = (t.clone(), k.clone());
        move |i| {
            call(
                &t,
                "deactivate",
                json!({"key": k, "machine_id": format!("bench-{i}")}),
            )
        }
    };
    let verify = move |_| {
        api_event(
            &format!("/gumroad/{t}/v2/licenses/verify"),
            "application/x-www-form-urlencoded",
            &format!("product_id=32-nPAicqbLj8B_WswVlMw%3D%3D&license_key={k}"),
        )
    };
    vec![
        Case {
            label: "validate (no machine: no lease)",
            request: Box::new(validate),
            ok: plain_ok,
        },
        Case {
            label: "validate with machine_id and nonce (lease)",
            request: Box::new(validate_lease),
            ok: lease_ok,
        },
        Case {
            label: "activate, machine already holds a seat (lease)",
            request: Box::new(activate_held),
            ok: lease_ok,
        },
        Case {
            label: "activate a new machine (lease)",
            request: Box::new(activate_new),
            ok: lease_ok,
        },
        Case {
            label: "deactivate that machine",
            request: Box::new(deactivate),
            ok: |status, body| status == 200 && body.contains("\"deactivated\":true"),
        },
        Case {
            label: "Gumroad-compatible verify (counts a use)",
            request: Box::new(verify),
            ok: |status, body| status == 200 && body.contains("\"success\":true"),
        },
    ]
}

/// The floors: the DynamoDB calls each kind of call cannot avoid, straight from the SDK, on the same items.
struct Floor<'a> {
    ddb: &'a aws_sdk_dynamodb::Client,
    tables: &'a Tables,
    tenant: String,
    key_hash: String,
    /// The audit events (the webhook outbox, issue 25) keystead writes in the transactions of a new machine's
    /// activation and of its deactivation: copies ride in the floor's transactions too.
    activated: Item,
    deactivated: Item,
}

type Item = std::collections::HashMap<String, AttributeValue>;

/// An audit event of `event_type` keystead wrote for the tenant (the newest is as good as any).
async fn audit_item(
    ddb: &aws_sdk_dynamodb::Client,
    tables: &Tables,
    tenant: &str,
    event_type: &str,
) -> Item {
    let mut pages = ddb
        .query()
        .table_name(&tables.events)
        .key_condition_expression("tenant_id = :t AND begins_with(sk, :p)")
        .filter_expression("#type = :type")
        .expression_attribute_names("#type", "type")
        .expression_attribute_values(":t", AttributeValue::S(tenant.to_owned()))
        .expression_attribute_values(":p", AttributeValue::S("AUDIT#".to_owned()))
        .expression_attribute_values(":type", AttributeValue::S(event_type.to_owned()))
        .into_paginator()
        .items()
        .send();
    match pages.next().await {
        Some(item) => item.unwrap(),
        None => panic!("bench: no {event_type} event for {tenant}"),
    }
}

impl Floor<'_> {
    fn key(&self, sk: String) -> [(String, AttributeValue); 2] {
        [
            (
                "tenant_id".to_owned(),
                AttributeValue::S(self.tenant.clone()),
            ),
            ("sk".to_owned(), AttributeValue::S(sk)),
        ]
    }

    async fn get(&self, sk: String) {
        let [(a, av), (b, bv)] = self.key(sk);
        self.ddb
            .get_item()
            .table_name(&self.tables.licenses)
            .key(a, av)
            .key(b, bv)
            .consistent_read(true)
            .send()
            .await
            .unwrap();
    }

    /// A copy of `template` as a new audit event: one more put in the transaction, as keystead's.
    fn audit_put(&self, template: &Item, i: usize) -> TransactWriteItem {
        let mut item = template.clone();
        item.insert(
            "sk".to_owned(),
            AttributeValue::S(format!("AUDIT#floor-{i}-{}", unique("e"))),
        );
        let put = Put::builder()
            .table_name(&self.tables.events)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    fn license_sk(&self) -> String {
        format!("LICENSE#{}", self.key_hash)
    }

    fn seat(&self, delta: i64) -> TransactWriteItem {
        let [(a, av), (b, bv)] = self.key(self.license_sk());
        let update = Update::builder()
            .table_name(&self.tables.licenses)
            .key(a, av)
            .key(b, bv)
            .update_expression("SET activations = activations + :d")
            .expression_attribute_values(":d", AttributeValue::N(delta.to_string()))
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    }

    /// One round of `which`'s calls; its latency in ms.
    async fn round(&self, which: usize, i: usize) -> f64 {
        let started = Instant::now();
        let machine_sk = |m: &str| format!("ACTIVATION#{}#{m}", self.key_hash);
        match which {
            0 => self.get(self.license_sk()).await,
            1 => {
                tokio::join!(
                    self.get(self.license_sk()),
                    self.get(machine_sk("bench-held"))
                );
            }
            2 => {
                // The seat is held already: the license and the seat read side by side, then the seat renewed
                // in one transaction with a check of the license, as keystead does.
                tokio::join!(
                    self.get(self.license_sk()),
                    self.get(machine_sk("bench-held"))
                );
                let [(a, av), (b, bv)] = self.key(machine_sk("bench-held"));
                let seat = Update::builder()
                    .table_name(&self.tables.licenses)
                    .key(a, av)
                    .key(b, bv)
                    .condition_expression("attribute_exists(sk)")
                    .update_expression("SET last_seen = :now")
                    .expression_attribute_values(":now", AttributeValue::S(format!("floor-{i}")))
                    .build()
                    .unwrap();
                let [(a, av), (b, bv)] = self.key(self.license_sk());
                let check = ConditionCheck::builder()
                    .table_name(&self.tables.licenses)
                    .key(a, av)
                    .key(b, bv)
                    .condition_expression("attribute_exists(sk)")
                    .build()
                    .unwrap();
                self.ddb
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().update(seat).build())
                    .transact_items(TransactWriteItem::builder().condition_check(check).build())
                    .send()
                    .await
                    .unwrap();
            }
            3 => {
                tokio::join!(
                    self.get(self.license_sk()),
                    self.get(machine_sk(&format!("floor-{i}")))
                );
                let mut item: std::collections::HashMap<String, AttributeValue> = self
                    .key(machine_sk(&format!("floor-{i}")))
                    .into_iter()
                    .collect();
                item.insert("machine_id".into(), AttributeValue::S(format!("floor-{i}")));
                let put = Put::builder()
                    .table_name(&self.tables.licenses)
                    .set_item(Some(item))
                    .build()
                    .unwrap();
                // The license's hourly budget of new machines, counted in the same transaction.
                let budget = Update::builder()
                    .table_name(&self.tables.events)
                    .key("tenant_id", AttributeValue::S(self.tenant.clone()))
                    .key("sk", AttributeValue::S("RATE#floor-budget".to_owned()))
                    .update_expression("ADD uses :one SET #ttl = :ttl")
                    .condition_expression("attribute_not_exists(uses) OR uses < :limit")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(":limit", AttributeValue::N(i64::MAX.to_string()))
                    .expression_attribute_values(":ttl", AttributeValue::N("4102444800".into()))
                    .build()
                    .unwrap();
                self.ddb
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(put).build())
                    .transact_items(self.seat(0))
                    .transact_items(TransactWriteItem::builder().update(budget).build())
                    .transact_items(self.audit_put(&self.activated, i))
                    .send()
                    .await
                    .unwrap();
                self.get(self.license_sk()).await;
            }
            4 => {
                self.get(self.license_sk()).await;
                let [(a, av), (b, bv)] = self.key(machine_sk(&format!("floor-{i}")));
                let delete = Delete::builder()
                    .table_name(&self.tables.licenses)
                    .key(a, av)
                    .key(b, bv)
                    .build()
                    .unwrap();
                self.ddb
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().delete(delete).build())
                    .transact_items(self.seat(0))
                    .transact_items(self.audit_put(&self.deactivated, i))
                    .send()
                    .await
                    .unwrap();
            }
            _ => {
                self.get(self.license_sk()).await;
                let [(a, av), (b, bv)] = self.key(self.license_sk());
                // The use counted as keystead counts it: once per request (a retried attempt is not counted
                // again), answering with the new count.
                self.ddb
                    .update_item()
                    .table_name(&self.tables.licenses)
                    .key(a, av)
                    .key(b, bv)
                    .update_expression("ADD floor_uses :one, floor_v :one SET floor_rq = :token")
                    .condition_expression(
                        "attribute_exists(sk) AND (attribute_not_exists(floor_rq) OR floor_rq <> :token)",
                    )
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(":token", AttributeValue::S(unique("floor")))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                    .send()
                    .await
                    .unwrap();
            }
        }
        ms(started.elapsed())
    }
}

/// `BENCH_PROFILE_LICENSE`: `n` calls of case `which`, each followed by its floor's round, and nothing else (for a
/// profiler); then each side's p50 split into the time inside DynamoDB operations (the interceptor's
/// `SDK_NANOS`, meaningful for calls whose operations run one after another) and the rest, and the same request
/// to an unknown tenant, which keystead answers with no I/O at all.
pub async fn profile(
    app: &Api,
    ddb: &aws_sdk_dynamodb::Client,
    tables: &Tables,
    tenant: &str,
    key: &str,
    which: usize,
    n: usize,
) {
    let held = call(
        tenant,
        "activate",
        json!({"key": key, "machine_id": "bench-held"}),
    );
    let (status, body) = invoke(app, &held).await.parts();
    assert!(
        lease_ok(status, &body),
        "bench: activate answered {status} {body}"
    );
    let case = &cases(tenant, key)[which];
    let activated = audit_item(ddb, tables, tenant, "license.machine_activated").await;
    let floor = Floor {
        ddb,
        tables,
        tenant: tenant.to_owned(),
        key_hash: keystead::domain::sha256_hex(key),
        deactivated: activated.clone(),
        activated,
    };
    eprintln!(
        "bench: profiling {n} × {} (pid {})",
        case.label,
        std::process::id()
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let in_sdk = || super::SDK_NANOS.swap(0, Ordering::SeqCst) as f64 / 1e6;
    // Total, inside the SDK, outside it: keystead's calls and the floor's rounds.
    let (mut ours, mut floors) = (Split::default(), Split::default());
    for i in 0..n {
        let event = (case.request)(i);
        in_sdk();
        let started = Instant::now();
        let answered = invoke(app, &event).await;
        ours.push(ms(started.elapsed()), in_sdk());
        let (status, body) = answered.parts();
        assert!(
            (case.ok)(status, &body),
            "bench: {} answered {status} {body}",
            case.label
        );
        let total = floor.round(which, i).await;
        floors.push(total, in_sdk());
    }
    let unknown = call("x", "validate", json!({"key": key, "product_id": "myapp"}));
    let mut no_io = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        std::hint::black_box(invoke(app, &unknown).await);
        no_io.push(ms(started.elapsed()));
    }
    eprintln!("bench: keystead: {}", ours.summary());
    eprintln!("bench: floor: {}", floors.summary());
    eprintln!(
        "bench: a validate for an unknown tenant (no I/O): p50 {:.3} ms",
        stats(&mut no_io).p50
    );
}

/// Call times split at the SDK's boundary.
#[derive(Default)]
struct Split {
    total: Vec<f64>,
    inside: Vec<f64>,
    outside: Vec<f64>,
}

impl Split {
    fn push(&mut self, total: f64, inside: f64) {
        self.total.push(total);
        self.inside.push(inside);
        self.outside.push(total - inside);
    }

    fn summary(&mut self) -> String {
        format!(
            "p50 {:.3} ms, inside DynamoDB operations p50 {:.3} ms, outside them p50 {:.3} ms",
            stats(&mut self.total).p50,
            stats(&mut self.inside).p50,
            stats(&mut self.outside).p50
        )
    }
}

/// The license API section of the report.
#[allow(clippy::too_many_arguments)]
pub async fn section(
    report: &mut Report,
    app: &Api,
    ddb: &aws_sdk_dynamodb::Client,
    ddb_count: &Counter,
    tables: &Tables,
    tenant: &str,
    key: &str,
    n: usize,
) {
    let (status, body) = invoke(
        app,
        &call(
            tenant,
            "activate",
            json!({"key": key, "machine_id": "bench-held"}),
        ),
    )
    .await
    .parts();
    assert!(
        lease_ok(status, &body),
        "bench: activate answered {status} {body}"
    );
    let cases = cases(tenant, key);
    // Calls measured together, in order, each round: a new machine's activation is followed by its deactivation,
    // so the seats never run out.
    let rounds: [&[usize]; 5] = [&[0], &[1], &[2], &[3, 4], &[5]];
    // Warm-up: the tenant cache and the signing key (one KMS Decrypt per process), connections.
    for round in rounds {
        for i in 0..50 {
            for &which in round {
                invoke(app, &(cases[which].request)(1_000_000 + i)).await;
            }
        }
    }
    let floor = Floor {
        ddb,
        tables,
        tenant: tenant.to_owned(),
        key_hash: keystead::domain::sha256_hex(key),
        activated: audit_item(ddb, tables, tenant, "license.machine_activated").await,
        deactivated: audit_item(ddb, tables, tenant, "license.machine_deactivated").await,
    };
    report.line(format!(
        "### License API in-process, {n} sequential calls each, against its floor (the same DynamoDB calls straight from the SDK, the audit events of the outbox included)"
    ));
    report.line("");
    report.line("| call | p50 ms | p99 ms | floor p50 ms | p50 / floor | DynamoDB requests per call | wrong answers |");
    report.line("|---|---:|---:|---:|---:|---|---:|");
    for round in rounds {
        let mut samples = vec![Vec::with_capacity(n); round.len()];
        let mut floors = vec![Vec::with_capacity(n); round.len()];
        let mut wrong = vec![0usize; round.len()];
        let mut requests =
            vec![(0u64, std::collections::BTreeMap::<String, u64>::new()); round.len()];
        for i in 0..n {
            for (slot, &which) in round.iter().enumerate() {
                let case = &cases[which];
                let event = (case.request)(i);
                ddb_count.take();
                let started = Instant::now();
                let answered = invoke(app, &event).await;
                samples[slot].push(ms(started.elapsed()));
                let (status, body) = answered.parts();
                let (count, ops) = ddb_count.take();
                requests[slot].0 += count;
                for (op, c) in ops {
                    *requests[slot].1.entry(op).or_default() += c;
                }
                if !(case.ok)(status, &body) {
                    wrong[slot] += 1;
                    if wrong[slot] <= 2 {
                        eprintln!("bench: {} answered {status} {body}", case.label);
                    }
                }
            }
            // The floor's round right after keystead's, so both meet DynamoDB Local in the same state (its
            // JIT, its garbage collector, the table's size) and drift cannot favour either.
            for (slot, &which) in round.iter().enumerate() {
                floors[slot].push(floor.round(which, i).await);
            }
        }
        ddb_count.take();
        for (slot, &which) in round.iter().enumerate() {
            let (s, f) = (stats(&mut samples[slot]), stats(&mut floors[slot]));
            let ops: Vec<String> = requests[slot]
                .1
                .iter()
                .map(|(op, c)| format!("{op} × {}", *c as f64 / n as f64))
                .collect();
            report.line(format!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2}× | {} ({}) | {} |",
                cases[which].label,
                s.p50,
                s.p99,
                f.p50,
                s.p50 / f.p50,
                requests[slot].0 as f64 / n as f64,
                ops.join(", "),
                wrong[slot]
            ));
        }
    }
    report.line("");

    // What signing a lease costs by itself, once the key is open: no AWS call. The license API's signer (AWS-LC),
    // and ed25519-dalek's (`keystead_verify::sign`, what it signed with before run 13) on the same claims.
    let seed = [7u8; 32];
    let signer = keystead::signing::Signer::from_seed("kbench", &seed).unwrap();
    let dalek = keystead_verify::ed25519_dalek::SigningKey::from_bytes(&seed);
    let claims = keystead_verify::LeaseClaims {
        iss: tenant.to_owned(),
        sub: "lic_bench".to_owned(),
        product_id: "myapp".to_owned(),
        machine_id: "bench-held".to_owned(),
        status: "active".to_owned(),
        entitlements: vec!["export".to_owned()],
        license_expires_at: None,
        iat: 1_777_923_536,
        exp: 1_780_515_536,
        nonce: Some("n".to_owned()),
    };
    let (mut ours, mut theirs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        std::hint::black_box(signer.sign(&claims).unwrap());
        ours.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        std::hint::black_box(keystead_verify::sign("kbench", &claims, &dalek).unwrap());
        theirs.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let (s, d) = (stats(&mut ours), stats(&mut theirs));
    report.line(format!(
        "Signing one lease in memory (Ed25519, JWS compact): p50 {:.1} µs, p99 {:.1} µs over {n} (ed25519-dalek, \
         interleaved: p50 {:.1} µs, p99 {:.1} µs): the lease itself adds no DynamoDB or KMS request once the \
         tenant's key is open (one KMS Decrypt per key and process).",
        s.p50, s.p99, d.p50, d.p99
    ));
    report.line("");
}
