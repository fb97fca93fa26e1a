//! The model-based test of issue 22. Random histories of one subscription (its first sale and renewals, refunds
//! of any charge, disputes and won disputes, cancellations, ends, restarts and seat changes, then the seller's
//! revocations, reinstatements, suspensions and resumptions, then machines activating) run against the local stack: each Gumroad event is
//! delivered one to three times, all deliveries shuffled and sent in small concurrent groups, while DynamoDB
//! refuses requests and loses answers and SES refuses sends at random; a delivery answered 5xx is delivered again,
//! as Gumroad does. After each history the license, its payments, seats and emails are compared with a small pure
//! model of the same facts, written here independently of the code's own fold.
//!
//! `KEYSTEAD_MODEL_HISTORIES` (default 200) histories run, from seed `KEYSTEAD_MODEL_SEED` (default 1) on; each
//! failure names its seed and history, so `KEYSTEAD_MODEL_SEED=<seed> KEYSTEAD_MODEL_HISTORIES=1` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::faults::Faults;
use common::*;
use keystead::domain::{FactKind, LicenseStatus, TenantId};
use keystead::storage::Store;

/// SplitMix64: the histories' only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What Gumroad says in a history. Days count from 2026-01-01; charge `i` happens at 00:00 of day 30·i, every
/// other event at 12:00 of its day, so only events of the same kind of moment can tie.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Charge(usize),
    Refund {
        charge: usize,
        full: bool,
    },
    Dispute(usize),
    DisputeWon(usize),
    Cancel {
        day: u32,
        with_purchase: bool,
    },
    End {
        day: u32,
        failed_payment: bool,
    },
    Restart {
        day: u32,
    },
    Seats {
        day: u32,
        quantity: u32,
    },
    /// `keystead gumroad import` reading charge `i` from Gumroad's sales API, in the state Gumroad has it in (the
    /// history's refunds and disputes are what Gumroad knows).
    Import(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seller {
    Revoke,
    Reinstate,
    Suspend,
    Resume,
}

#[derive(Debug, Clone)]
struct History {
    seed: u64,
    charges: usize,
    events: Vec<Event>,
    /// Indexes into `events`, in delivery order (each event one to three times).
    deliveries: Vec<usize>,
    /// The seller's actions after Gumroad's events.
    seller: Vec<Seller>,
    machines: u32,
}

fn generate(seed: u64) -> History {
    let mut rng = Rng(seed);
    let charges = 1 + rng.below(3) as usize;
    let mut events: Vec<Event> = (0..charges).map(Event::Charge).collect();
    let mut seat_days = BTreeSet::new();
    for _ in 0..rng.below(7) {
        let charge = rng.below(charges as u64) as usize;
        let day = 5 * rng.below(20) as u32 + 1;
        let event = match rng.below(8) {
            0 => Event::Refund {
                charge,
                full: rng.chance(700),
            },
            1 => Event::Dispute(charge),
            2 => Event::DisputeWon(charge),
            3 => Event::Cancel {
                day,
                with_purchase: rng.chance(700),
            },
            4 => Event::End {
                day,
                failed_payment: rng.chance(500),
            },
            5 => Event::Restart { day },
            6 if rng.chance(500) => Event::Import(charge),
            _ if seat_days.insert(day) => Event::Seats {
                day,
                quantity: 1 + rng.below(4) as u32,
            },
            _ => continue,
        };
        if !events.contains(&event) {
            events.push(event);
        }
    }
    let mut deliveries: Vec<usize> = Vec::new();
    for (i, _) in events.iter().enumerate() {
        for _ in 0..1 + rng.below(3) {
            deliveries.push(i);
        }
    }
    for i in (1..deliveries.len()).rev() {
        deliveries.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let seller = (0..rng.below(3))
        .map(|_| match rng.below(4) {
            0 => Seller::Revoke,
            1 => Seller::Reinstate,
            2 => Seller::Suspend,
            _ => Seller::Resume,
        })
        .collect();
    History {
        seed,
        charges,
        events,
        deliveries,
        seller,
        machines: rng.below(5) as u32,
    }
}

/// RFC 3339 of a history's day, at midnight or noon.
fn time(day: u32, noon: bool) -> String {
    let at = time::macros::datetime!(2026-01-01 00:00 UTC)
        + Duration::from_secs(u64::from(day) * 24 * 3600 + if noon { 12 * 3600 } else { 0 });
    keystead::domain::rfc3339(at)
}

fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

struct Names {
    buyer: String,
    subscription: String,
    sales: Vec<String>,
}

fn body(event: &Event, names: &Names) -> String {
    let sale = |i: usize| names.sales[i].as_str();
    let first = sale(0);
    let subscription = |resource: &str, with_purchase: bool, extra: String| {
        let purchases: &[&str] = if with_purchase { &[first] } else { &[] };
        subscription_event(resource, &names.subscription, purchases, &extra)
    };
    match event {
        Event::Charge(i) => subscription_sale(sale(*i), &names.buyer, &names.subscription, *i > 0)
            .replace(
                "sale_timestamp=2026-05-04T19%3A38%3A56Z",
                &format!("sale_timestamp={}", enc(&time(30 * *i as u32, false))),
            ),
        Event::Refund { charge, full } => sale_event("refund", sale(*charge), &names.buyer, *full),
        Event::Dispute(i) => sale_event("dispute", sale(*i), &names.buyer, false),
        Event::DisputeWon(i) => sale_event("dispute_won", sale(*i), &names.buyer, false),
        Event::Cancel { day, with_purchase } => subscription(
            "cancellation",
            *with_purchase,
            format!(
                "cancelled=true&cancelled_at={}&cancelled_by_buyer=true",
                enc(&time(*day, true))
            ),
        ),
        Event::End {
            day,
            failed_payment,
        } => subscription(
            "subscription_ended",
            true,
            format!(
                "ended_at={}&ended_reason={}",
                enc(&time(*day, true)),
                if *failed_payment {
                    "failed_payment"
                } else {
                    "cancelled"
                }
            ),
        ),
        Event::Restart { day } => subscription(
            "subscription_restarted",
            true,
            format!("restarted_at={}", enc(&time(*day, true))),
        ),
        Event::Import(_) => unreachable!("an import is not a ping"),
        Event::Seats { day, quantity } => subscription(
            "subscription_updated",
            true,
            format!(
                "type=upgrade&effective_as_of={}&old_plan%5Btier%5D%5Bname%5D=Pro&new_plan%5Btier%5D%5Bname%5D=Pro&new_plan%5Bquantity%5D={quantity}",
                enc(&time(*day, true))
            ),
        ),
    }
}

/// What the license should be: the model's own reading of the lifecycle table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    status: LicenseStatus,
    refunded: bool,
    chargebacked: bool,
    disabled: bool,
    cancelled_at: Option<String>,
    ended_at: Option<String>,
    failed_at: Option<String>,
    activation_limit: u32,
    expires_at: Option<String>,
}

/// `period_from` of each charge, as the stack recorded when it came (the one thing the model reads back).
fn expected(history: &History, period_from: &BTreeMap<usize, time::OffsetDateTime>) -> Expected {
    let events = &history.events;
    let full_refund = events
        .iter()
        .any(|e| matches!(e, Event::Refund { full: true, .. }));
    let open_dispute = events.iter().any(|e| match e {
        Event::Dispute(i) => !events.contains(&Event::DisputeWon(*i)),
        _ => false,
    });
    // Moments as (day, noon): a charge is at midnight of day 30·i.
    let charge_moments: Vec<(u32, bool)> = (0..history.charges)
        .map(|i| (30 * i as u32, false))
        .collect();
    let latest_end = events
        .iter()
        .filter_map(|e| match e {
            Event::End {
                day,
                failed_payment,
            } => Some((*day, *failed_payment)),
            _ => None,
        })
        // At one moment, a failed-payment end and another: the model cannot say which stands; the generator
        // makes them rare, and the check below accepts either reason then.
        .max_by_key(|(day, _)| *day);
    let restarts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Restart { day } => Some(*day),
            _ => None,
        })
        .collect();
    let ended = latest_end.filter(|(day, _)| {
        !restarts.iter().any(|r| r >= day) && !charge_moments.iter().any(|(c, _)| c > day)
    });
    let latest_cancel = events
        .iter()
        .filter_map(|e| match e {
            Event::Cancel { day, .. } => Some(*day),
            _ => None,
        })
        .max();
    let cancelled = latest_cancel.filter(|day| !restarts.iter().any(|r| r >= day));
    // The seller acts after every Gumroad event: a reinstatement waives every refund and dispute.
    let last_of = |kinds: &[Seller]| {
        history
            .seller
            .iter()
            .rev()
            .find(|s| kinds.contains(s))
            .copied()
    };
    let disabled = last_of(&[Seller::Revoke, Seller::Reinstate]) == Some(Seller::Revoke);
    let held =
        last_of(&[Seller::Suspend, Seller::Resume, Seller::Reinstate]) == Some(Seller::Suspend);
    let reinstated = history.seller.contains(&Seller::Reinstate);
    let status = if disabled || (full_refund && !reinstated) {
        LicenseStatus::Revoked
    } else if held || (open_dispute && !reinstated) {
        LicenseStatus::Suspended
    } else if ended.is_some() {
        LicenseStatus::Expired
    } else {
        LicenseStatus::Active
    };
    // The plan: the latest statement, a charge's (one seat) or a seat change's.
    let mut statements: Vec<((u32, bool), u32)> = charge_moments.iter().map(|m| (*m, 1)).collect();
    for e in events {
        if let Event::Seats { day, quantity } = e {
            statements.push(((*day, true), *quantity));
        }
    }
    statements.sort();
    let quantity = statements.last().map_or(1, |(_, q)| *q);
    // Expiry: each charge, in the order they happened, pays 30 days from when it came or from what was paid.
    let mut expires: Option<time::OffsetDateTime> = None;
    for i in 0..history.charges {
        let from = period_from[&i];
        let base = expires.map_or(from, |paid| paid.max(from));
        expires = Some(base + Duration::from_secs(30 * 24 * 3600));
    }
    Expected {
        status,
        refunded: full_refund,
        chargebacked: open_dispute,
        disabled,
        cancelled_at: cancelled.map(|day| time(day, true)),
        ended_at: ended.map(|(day, _)| time(day, true)),
        failed_at: ended
            .filter(|(_, failed)| *failed)
            .map(|(day, _)| time(day, true)),
        activation_limit: 3 * quantity,
        expires_at: expires.map(keystead::domain::rfc3339),
    }
}

/// The sale as Gumroad's sales API reports it when the seller imports: its refund and dispute state included.
fn api_sale(history: &History, names: &Names, i: usize) -> serde_json::Value {
    let has = |event: Event| history.events.contains(&event);
    serde_json::json!({
        "id": names.sales[i], "email": names.buyer, "seller_id": "kL0psVL2admJSYRNs-OCMg==",
        "product_id": "32-nPAicqbLj8B_WswVlMw==", "product_name": "MyApp Pro",
        "product_permalink": "https://acme.gumroad.com/l/myapp-pro", "price": 2900, "currency": "usd",
        "quantity": 1, "order_id": 524459935, "created_at": time(30 * i as u32, false), "full_name": "Jane Doe",
        "variants": {"Tier": "Pro"}, "custom_fields": {},
        "refunded": has(Event::Refund { charge: i, full: true }),
        "disputed": has(Event::Dispute(i)), "dispute_won": has(Event::DisputeWon(i)), "chargedback": false,
        "subscription_id": names.subscription, "recurring_charge": i > 0,
    })
}

/// Imports one sale the way `keystead gumroad import` does (without `--send-email`), through `store`;
/// `false` when a fault stopped it (the seller runs the import again).
async fn import(
    store: keystead::storage::DynamoStore,
    mailer: std::sync::Arc<keystead::mail::SesMailer>,
    t: &Seeded,
    sale: serde_json::Value,
) -> Result<bool, String> {
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let tenant = store.load_tenant(&tenant_id).await.unwrap().unwrap();
    let ping = keystead::gumroad::SalePing::from_form(&keystead::cli::sale_form(&sale))
        .map_err(|e| e.to_string())?;
    let (product, permalink) =
        keystead::app::record_sale::resolve_product(&tenant, &ping).map_err(|e| e.to_string())?;
    let order = keystead::cli::imported_order(ping, product, permalink, &sale, false);
    match keystead::app::record_sale::issue(&store, mailer.as_ref(), &tenant, order).await {
        Ok(_) => Ok(true),
        Err(keystead::app::record_sale::SaleError::Storage(_)) => Ok(false),
        Err(err) => Err(format!("import failed: {err}")),
    }
}

/// Sends one delivery; `true` when it was taken (2xx), `false` when Gumroad would deliver it again (5xx).
async fn deliver(
    app: keystead::app::App,
    t: &Seeded,
    body: String,
    attempt: u32,
) -> Result<bool, String> {
    let body = if attempt > 0 {
        format!("{body}&retry_count={attempt}")
    } else {
        body
    };
    let reply = send(&app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
    match reply.status {
        200..=299 => Ok(true),
        500..=599 => Ok(false),
        status => Err(format!("a delivery got {status}: {}", reply.body)),
    }
}

/// What DynamoDB's and SES's clocks would have done while Gumroad waited before retrying (a minute or more):
/// every email claim has run out.
async fn let_a_minute_pass(stack: &Stack, tenant_id: &str) {
    for item in license_items(&licenses(stack, tenant_id).await) {
        if item.contains_key("email_claim_until") {
            stack
                .ddb
                .update_item()
                .table_name(&stack.tables.licenses)
                .key("tenant_id", item["tenant_id"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET email_claim_until = :past")
                .condition_expression("attribute_exists(email_claim_until)")
                .expression_attribute_values(
                    ":past",
                    aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
                )
                .send()
                .await
                .ok();
        }
    }
}

async fn run(history: &History, clean: &Stack) -> Result<(), String> {
    let faults = Faults::new();
    let faulty = faulty_stack(&faults).await;
    let t = seed(
        clean,
        Seed {
            duration_days: Some(30),
            ..Seed::default()
        },
    )
    .await;
    let names = Names {
        buyer: buyer(),
        subscription: format!("{}==", unique("sub")),
        sales: (0..history.charges).map(|_| sale_id()).collect(),
    };
    faults.at_random(history.seed, 20, 20);
    let store = faulty_store(&faults).await;
    let mailer = std::sync::Arc::new(keystead::config::ses_mailer(&sdk().await));

    let mut rng = Rng(history.seed ^ 0xA5A5);
    let mut queue: Vec<(usize, u32)> = history.deliveries.iter().map(|&i| (i, 0)).collect();
    while !queue.is_empty() {
        let take = (1 + rng.below(4) as usize).min(queue.len());
        let group: Vec<(usize, u32)> = queue.drain(..take).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (event, attempt) in group.clone() {
            if let Event::Import(i) = history.events[event] {
                let (store, mailer) = (store.clone(), mailer.clone());
                let (t, sale) = (t.clone(), api_sale(history, &names, i));
                tasks.spawn(async move { (event, attempt, import(store, mailer, &t, sale).await) });
                continue;
            }
            let (app, t) = (faulty.app.clone(), t.clone());
            let body = body(&history.events[event], &names);
            tasks.spawn(async move { (event, attempt, deliver(app, &t, body, attempt).await) });
        }
        let mut again = false;
        while let Some(done) = tasks.join_next().await {
            let (event, attempt, taken) = done.map_err(|e| e.to_string())?;
            if !taken? {
                if attempt >= 10 {
                    return Err(format!("{:?} kept failing", history.events[event]));
                }
                let at = queue.len() - rng.below(queue.len() as u64 + 1) as usize;
                queue.insert(at, (event, attempt + 1));
                again = true;
            }
        }
        if again {
            let_a_minute_pass(clean, &t.tenant_id).await;
        }
    }

    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let items = licenses(clean, &t.tenant_id).await;
    let minted = license_items(&items);
    if minted.len() != 1 {
        return Err(format!("{} licenses for one subscription", minted.len()));
    }
    let key_hash = keystead::domain::KeyHash::from_stored(s(minted[0], "key_hash"));
    for action in &history.seller {
        let kind = match action {
            Seller::Revoke => FactKind::Revoked,
            Seller::Reinstate => FactKind::Reinstated,
            Seller::Suspend => FactKind::Suspended,
            Seller::Resume => FactKind::Resumed,
        };
        clean
            .store
            .record_seller_fact(&tenant_id, &key_hash, kind)
            .await
            .map_err(|e| e.to_string())?;
    }
    let license = clean
        .store
        .get_license(&tenant_id, &key_hash)
        .await
        .unwrap()
        .unwrap();

    let mut activated = 0;
    for machine in 0..history.machines {
        let request =
            serde_json::json!({"key": license.key.expose(), "machine_id": format!("m{machine}")});
        for _ in 0..10 {
            let reply = api(&faulty, &t.tenant_id, "activate", request.clone()).await;
            match reply.status {
                200 => activated += 1,
                500..=599 => continue,
                _ => {}
            }
            break;
        }
    }

    // The stack's own record of when each charge came.
    let mut period_from = BTreeMap::new();
    for fact in &license.facts {
        if let FactKind::Charge {
            sale_id,
            period_from: Some(from),
            ..
        } = &fact.kind
        {
            let i = names
                .sales
                .iter()
                .position(|s| s == sale_id.as_str())
                .ok_or("a charge of another sale")?;
            period_from.insert(
                i,
                time::OffsetDateTime::parse(from, &time::format_description::well_known::Rfc3339)
                    .unwrap(),
            );
        }
    }
    if period_from.len() != history.charges {
        return Err(format!(
            "{} charges recorded of {}",
            period_from.len(),
            history.charges
        ));
    }
    let want = expected(history, &period_from);
    let got = Expected {
        status: license.status,
        refunded: license.refunded,
        chargebacked: license.chargebacked,
        disabled: license.disabled,
        cancelled_at: license.subscription_cancelled_at.clone(),
        ended_at: license.subscription_ended_at.clone(),
        failed_at: license.subscription_failed_at.clone(),
        activation_limit: license.activation_limit,
        expires_at: license.expires_at.clone(),
    };
    let tied_ends = {
        let ends: Vec<_> = history
            .events
            .iter()
            .filter_map(|e| match e {
                Event::End { day, .. } => Some(*day),
                _ => None,
            })
            .collect();
        ends.iter()
            .any(|d| ends.iter().filter(|e| *e == d).count() > 1)
    };
    // Two ends at one moment: which reason stands is the code's tie-break, not the model's.
    let without_failure = |e: &Expected| Expected {
        failed_at: None,
        ..e.clone()
    };
    let same = want == got || (tied_ends && without_failure(&want) == without_failure(&got));
    if !same {
        let facts: Vec<String> = keystead::domain::in_order(&license.facts)
            .iter()
            .map(|f| format!("{} {:?}", f.at, f.kind))
            .collect();
        return Err(format!(
            "license differs from the model:\n  want {want:?}\n  got  {got:?}\n  facts:\n    {}",
            facts.join("\n    ")
        ));
    }

    let payments = payments(clean, &t.tenant_id).await;
    if payments.len() != history.charges
        || payments
            .iter()
            .any(|p| s(p, "license_id") != license.license_id.as_str())
    {
        return Err(format!(
            "{} payments for {} charges",
            payments.len(),
            history.charges
        ));
    }
    let mut ids = BTreeSet::new();
    if license.facts.iter().any(|f| !ids.insert(f.id.clone())) {
        return Err("a fact recorded twice".to_owned());
    }
    audit_matches(clean, &t.tenant_id, &license).await?;
    let seats = license_table(clean, &t.tenant_id)
        .await
        .iter()
        .filter(|i| s(i, "sk").starts_with("ACTIVATION#"))
        .count();
    let fresh = clean
        .store
        .get_license(&tenant_id, &key_hash)
        .await
        .unwrap()
        .unwrap();
    let now = keystead::domain::rfc3339(time::OffsetDateTime::now_utc());
    let unexpired = want
        .expires_at
        .as_deref()
        .is_none_or(|at| at > now.as_str());
    let should_activate = if want.status == LicenseStatus::Active && unexpired {
        history.machines.min(want.activation_limit)
    } else {
        0
    };
    if activated != should_activate || seats != activated as usize || fresh.activations != activated
    {
        return Err(format!(
            "seats: {activated} activated, {seats} held, {} counted; the model says {should_activate}",
            fresh.activations
        ));
    }
    let mails = emails_to(&names.buyer).len();
    // An imported sale is never mailed: a license an import minted owes no email.
    let always_active = !history.events.iter().any(|e| {
        matches!(
            e,
            Event::Refund { full: true, .. }
                | Event::Dispute(_)
                | Event::End { .. }
                | Event::Import(_)
        )
    });
    // A second email only where SES accepted a send whose answer never arrived (and the log says so).
    let unanswered_sends = faults
        .hits()
        .iter()
        .filter(|hit| hit.starts_with("SendEmail: LoseAnswer"))
        .count();
    if mails > 1 + unanswered_sends || (always_active && mails == 0) {
        return Err(format!(
            "{mails} key emails ({unanswered_sends} sends whose answer was lost)"
        ));
    }
    Ok(())
}

/// The audit log (the webhook outbox, issue 25) says exactly what happened: one `license.created`, one event per
/// fact of the license and none for a fact it does not have (whatever was retried, duplicated or lost an answer),
/// and its last picture of what the license grants is the license as stored.
async fn audit_matches(
    clean: &Stack,
    tenant_id: &str,
    license: &keystead::domain::License,
) -> Result<(), String> {
    let items = crate::common::audit_items(clean, tenant_id).await;
    let events: Vec<serde_json::Value> = items
        .iter()
        .map(|item| serde_json::from_str(s(item, "payload")).unwrap())
        .collect();
    let of_type = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    if of_type("license.created") != 1 {
        return Err(format!(
            "{} license.created events",
            of_type("license.created")
        ));
    }
    let mut facts: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        if let Some(id) = event["data"]["fact_id"].as_str() {
            *facts.entry(id.to_owned()).or_default() += 1;
        }
    }
    let stored: BTreeMap<String, usize> = license.facts.iter().map(|f| (f.id.clone(), 1)).collect();
    if facts != stored {
        return Err(format!(
            "the audit log's facts differ from the license's:\n  events {facts:?}\n  license {stored:?}"
        ));
    }
    let last = events
        .iter()
        .rev()
        .find(|e| e["type"] == "license.created" || e["type"] == "license.updated")
        .map(|e| &e["data"]);
    let granted = |name: &str| last.map(|d| d[name].clone()).unwrap_or_default();
    let want = serde_json::json!({
        "status": license.status.as_str(),
        "expires_at": license.expires_at,
        "product_id": license.product_id.as_str(),
        "activation_limit": license.activation_limit,
        "quantity": license.quantity,
    });
    let got = serde_json::json!({
        "status": granted("status"),
        "expires_at": granted("expires_at"),
        "product_id": granted("product_id"),
        "activation_limit": granted("activation_limit"),
        "quantity": granted("quantity"),
    });
    if want != got {
        return Err(format!(
            "the last license event says {got}, the license is {want}"
        ));
    }
    Ok(())
}

/// Runs the histories of `seeds`, four at a time; the failures, described.
async fn run_all(seeds: impl IntoIterator<Item = u64>) -> Vec<String> {
    if std::env::var_os("KEYSTEAD_MODEL_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_test_writer()
            .try_init();
    }
    let clean = std::sync::Arc::new(stack().await);
    let mut failures = Vec::new();
    let mut seeds = seeds.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < 4 {
            let Some(seed) = seeds.next() else { break };
            let clean = clean.clone();
            running.spawn(async move {
                let history = generate(seed);
                let outcome = run(&history, &clean).await;
                (history, outcome)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (history, outcome) = done.unwrap();
        if let Err(why) = outcome {
            failures.push(format!(
                "seed {}: {why}\n  history: {history:?}",
                history.seed
            ));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_histories_leave_the_license_the_model_says() {
    let count: u64 = std::env::var("KEYSTEAD_MODEL_HISTORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("KEYSTEAD_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let failures = run_all(first..first + count).await;
    assert!(
        failures.is_empty(),
        "{} of {count} histories differ from the model:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The histories the 10,000-history run found failing (SECURITY.md), each several times: their failure depended on
/// how concurrent deliveries interleaved (seed 6330 failed about one run in two before its fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_histories_that_found_defects_pass() {
    let seeds = [1031, 6330]
        .into_iter()
        .flat_map(|seed| std::iter::repeat_n(seed, 6));
    let failures = run_all(seeds).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
