//! The fuzzers' smoke run in CI, without cargo-fuzz: every committed corpus seed and every regression input in
//! `fuzz/` goes through the same checks the fuzz targets run (`fuzz/checks.rs`), and then through the real
//! handler against the local stack, where no input may earn a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::checks;
use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use keystead::gumroad::{Form, GumroadEvent, Ping as Kind, SalePing};

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

/// The files in `fuzz/<dir>/<target>/`, sorted; an absent folder has none.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(Path::new(FUZZ).join(dir).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    inputs("corpus", target)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect()
}

fn all_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    ["corpus", "regressions"]
        .iter()
        .flat_map(|dir| inputs(dir, target))
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect()
}

#[test]
fn every_committed_fuzz_input_passes_its_target() {
    for (target, check) in checks::TARGETS {
        let inputs = all_inputs(target);
        assert!(
            inputs.len() >= 8,
            "{target}: only {} committed inputs",
            inputs.len()
        );
        for (path, data) in inputs {
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                panic!("{target}: {} fails: {message}", path.display());
            }
        }
    }
}

/// The ping seeds are what Gumroad really sends: each parses, and reads as the sale or event its name says.
#[test]
fn the_ping_seeds_are_pings_gumroad_would_send() {
    let seeds = seeds("ping_body");
    assert!(seeds.len() >= 20);
    for (path, data) in &seeds {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (content_type, body) = checks::split_ping_input(data);
        let form =
            Form::parse(content_type.as_deref(), body).unwrap_or_else(|e| panic!("{name}: {e}"));
        match Kind::classify(&form) {
            Kind::Test => assert!(name.starts_with("test_"), "{name}"),
            Kind::Sale => {
                let sale = SalePing::from_form(&form).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    sale.sale_id.as_str(),
                    "FO8TXN-dbxYaBdahG97Y-Q==",
                    "{name}: Gumroad's own sale_id wins"
                );
                assert_eq!(sale.email.as_str(), "jane.doe+gr@example.com", "{name}");
                assert_eq!(sale.product_refs[0].as_str(), "myapp-pro", "{name}");
            }
            Kind::Event(resource) => {
                let event = GumroadEvent::from_form(&resource, &form)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .unwrap_or_else(|| panic!("{name}: unknown resource {resource}"));
                assert!(
                    name.contains(event.kind.name()),
                    "{name} read as {}",
                    event.kind.name()
                );
            }
        }
    }
}

/// The last line of defence: the real handler, a real tenant and its token, every committed input. Whatever the
/// input, the answer is a 2xx or a 4xx with a JSON error, never a 5xx or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_committed_fuzz_input_gets_a_5xx_from_the_handler() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let mut answered = 0;
    for (path, data) in all_inputs("ping_body") {
        let (content_type, body) = checks::split_ping_input(&data);
        let mut ping = Ping::new(&t.tenant_id, Some(&t.token), body.to_vec());
        ping.headers.retain(|(name, _)| *name != "content-type");
        // API Gateway only passes header values that are visible ASCII.
        if let Some(ct) = content_type.filter(|ct| ct.bytes().all(|b| (b' '..=b'~').contains(&b))) {
            ping.headers.push(("content-type", ct));
        }
        let reply = send(&stack.app, &ping).await;
        assert!(
            matches!(reply.status, 200 | 204 | 400 | 413 | 415),
            "{}: {} {}",
            path.display(),
            reply.status,
            reply.body
        );
        if reply.status >= 400 {
            assert!(
                reply.json()["error"].is_string(),
                "{}: {}",
                path.display(),
                reply.body
            );
        }
        answered += 1;
    }
    for (path, data) in all_inputs("license_json") {
        for action in ["validate", "activate", "deactivate"] {
            let mut request = Ping::new(&t.tenant_id, None, data.clone());
            request.path = format!("/v1/{}/licenses/{action}", t.tenant_id);
            request = request.header("content-type", "application/json");
            let reply = send(&stack.app, &request).await;
            // The seeds' keys are not this tenant's: 404, or 400 for a body the API cannot read.
            assert!(
                matches!(reply.status, 400 | 404),
                "{} {action}: {} {}",
                path.display(),
                reply.status,
                reply.body
            );
            answered += 1;
        }
    }
    assert!(answered > 40);
}

/// Fuzzing findings in the license API's body parser (regression inputs in `fuzz/regressions/license_json/`): a
/// body with invalid UTF-8, a lone surrogate or an out-of-range number inside a field the API ignores, and a JSON
/// array in place of the object, were all read as requests. All are now 400s.
#[tokio::test]
async fn license_bodies_that_are_not_json_objects_are_refused() {
    let key = "ACME-7Q4ZK-0M3TR-XW9BD-H6Y2P-K8N4M-A1C3E";
    let bodies = [
        format!(r#"{{"key": "{key}", "platform": {{"os": "maco"#)
            .into_bytes()
            .into_iter()
            .chain(*b"\x8b\"}}")
            .collect(),
        format!(r#"{{"key": "{key}", "label2": "\udeee"}}"#).into_bytes(),
        format!(r#"{{"key": "{key}", "build": 475.8e5555444}}"#).into_bytes(),
        format!(r#"["{key}", null, "machine-1", null]"#).into_bytes(),
    ];
    for body in &bodies {
        let text = String::from_utf8_lossy(body);
        let error = keystead::app::licenses::parse_request(body)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        assert!(
            error.starts_with("Malformed JSON body: "),
            "{text}: {error}"
        );
    }
    assert_eq!(
        keystead::app::licenses::parse_request(bodies[3].as_slice())
            .err()
            .as_deref(),
        Some("Malformed JSON body: expected a JSON object")
    );
    // What stays accepted: whitespace around the object, unknown fields, nulls; a repeated field stays refused.
    let ok = format!(
        " \r\n\t{{\"key\": \"{key}\", \"app\": {{\"v\": [1, 2.5, null]}}, \"label\": null}} "
    );
    assert_eq!(
        keystead::app::licenses::parse_request(ok.as_bytes())
            .unwrap()
            .key
            .as_deref(),
        Some(key)
    );
    assert!(keystead::app::licenses::parse_request(br#"{"key": "a", "key": "b"}"#).is_err());

    let stack = stack().await;
    for body in bodies {
        let mut request = Ping::new("t-any", None, body).header("content-type", "application/json");
        request.path = "/v1/t-any/licenses/validate".to_owned();
        let reply = send(&stack.app, &request).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("Malformed JSON body")
        );
    }
}

/// Issue 24: a flood of pings with a wrong token at one tenant's URL costs a read each only until the tenant's
/// budget of failed authentications is used up; past it, the junk gets a retryable 503 without touching DynamoDB,
/// and a ping with the right token is served as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_tokens_costs_no_reads_past_the_budget_and_gumroad_gets_through() {
    use keystead::app::ping_budget::FAILURES_PER_MINUTE;
    use std::sync::atomic::{AtomicBool, Ordering};
    let faults = faults::Faults::new();
    let stack = faulty_stack(&faults).await;
    let t = seed(&stack, Seed::default()).await;
    let junk = || {
        Ping::new(
            &t.tenant_id,
            Some("not-the-token-at-all"),
            sale_body(&sale_id(), &buyer()),
        )
    };
    for _ in 0..FAILURES_PER_MINUTE {
        assert_eq!(send(&stack.app, &junk()).await.status, 400);
    }
    // The budget is used up: the next junk reads the tenant once (into the process's cache)...
    let over = send(&stack.app, &junk()).await;
    assert_eq!(
        (over.status, over.body.as_str()),
        (503, r#"{"error":"Temporarily unavailable"}"#)
    );
    // ...and from then on, no request of the function names the tenant.
    let touched = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&touched);
    faults.before(
        &t.tenant_id,
        Box::new(move || {
            Box::pin(async move {
                flag.store(true, Ordering::SeqCst);
            })
        }),
    );
    for _ in 0..200 {
        assert_eq!(send(&stack.app, &junk()).await.status, 503);
    }
    assert!(
        !touched.load(Ordering::SeqCst),
        "the junk made a DynamoDB request"
    );
    // Gumroad's own ping, with the right token, in the middle of the flood.
    let (sale, customer) = (sale_id(), buyer());
    let real = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &customer)),
    )
    .await;
    assert_eq!(real.status, 200, "{}", real.body);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
}
