//! The portal's sign-in answers (issue 24): a request for a link, for addresses that bought and addresses that did
//! not, interleaved, in-process and without the router's answer floor, so the handler's own time shows. Mailed
//! before answering (no queue: the lookup, the limits and SES in the answer) and queued (the stack's sign-in
//! queue: the caller's budget and one SQS message in the answer, whatever the address).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keystead::app::App;
use keystead::mail::SesMailer;
use keystead::portal::{PortalSettings, SqsLinkQueue};
use keystead::storage::DynamoStore;

use super::{Report, Seeded, event, invoke, ms, sale_body, stats, unique};

/// Distinct buyers, so no address meets its daily cap of portal mails (10) while links are mailed inline.
const BUYERS: usize = 50;

fn link_event(tenant: &str, email: &str) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("email", email)
        .finish();
    super::api_event(
        "POST",
        &format!("/portal/{tenant}/link"),
        "",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "portal.bench"),
        ],
        &body,
    )
}

/// The portal's application over the bench's store and mailer: limits out of the way, no answer floor.
fn portal(
    store: &DynamoStore,
    ses: &aws_sdk_ses::Client,
    sdk: &aws_config::SdkConfig,
    queue: Option<SqsLinkQueue>,
) -> keystead::http::Api {
    let settings = PortalSettings {
        public_url: Some("https://portal.bench".to_owned()),
        per_address: u32::MAX,
        per_tenant: u32::MAX,
        per_ip: u32::MAX,
        answer_floor: Duration::ZERO,
    };
    let app = App::with_portal(
        Arc::new(store.clone()),
        Arc::new(SesMailer::new(ses.clone())),
        Arc::new(keystead::config::kms_vault(sdk).expect("KEYSTEAD_SIGNING_KEY_ID")),
        settings,
        None,
    );
    keystead::http::router(match queue {
        Some(queue) => app.with_link_queue(Arc::new(queue)),
        None => app,
    })
}

pub async fn section(
    report: &mut Report,
    router: &keystead::http::Api,
    store: &DynamoStore,
    ses: &aws_sdk_ses::Client,
    sdk: &aws_config::SdkConfig,
    seeded: &Seeded,
    n: usize,
) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let buyers: Vec<String> = (0..BUYERS)
        .map(|_| format!("{}@example.com", unique("buyer")))
        .collect();
    for buyer in &buyers {
        let sale = event(
            &seeded.tenant_id,
            &seeded.token,
            &sale_body(&unique("sale"), buyer, false),
        );
        let (status, body) = invoke(router, &sale).await.parts();
        assert_eq!(status, 200, "bench: a sale answered {status} {body}");
    }
    let url = sqs
        .create_queue()
        .queue_name(unique("bench-signin"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queued = SqsLinkQueue::new(sqs.clone(), url.clone());
    report.line(format!(
        "### Sign-in answers: `POST /portal/{{tenant}}/link`, in-process without the answer floor, {n} of each, buyers and strangers interleaved"
    ));
    report.line("");
    report.line("| the link is mailed | address | p50 ms | p95 ms | max ms |");
    report.line("|---|---|---:|---:|---:|");
    let inline_n = n.min(BUYERS * 8);
    for (label, queue, rounds) in [
        ("before the answer (no queue)", None, inline_n),
        ("after the answer (queued)", Some(queued), n),
    ] {
        let router = portal(store, ses, sdk, queue);
        // Warm-up: the tenant, the connections.
        for i in 0..10 {
            invoke(&router, &link_event(&seeded.tenant_id, &buyers[i % BUYERS])).await;
        }
        let (mut to_buyers, mut to_strangers) =
            (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        for i in 0..rounds {
            let stranger = format!("{}@example.com", unique("nobody"));
            for (email, samples) in [
                (&buyers[i % BUYERS], &mut to_buyers),
                (&stranger, &mut to_strangers),
            ] {
                let request = link_event(&seeded.tenant_id, email);
                let started = Instant::now();
                let answered = invoke(&router, &request).await;
                samples.push(ms(started.elapsed()));
                let (status, _) = answered.parts();
                assert_eq!(status, 200, "bench: a sign-in request answered {status}");
            }
        }
        for (who, samples) in [
            ("bought", &mut to_buyers),
            ("never bought", &mut to_strangers),
        ] {
            let s = stats(samples);
            report.line(format!(
                "| {label} | {who} (n {}) | {:.2} | {:.2} | {:.2} |",
                samples.len(),
                s.p50,
                s.p95,
                s.max
            ));
        }
    }
    report.line("");
    report.line(
        "Queued, the answer is the caller's budget (one DynamoDB UpdateItem) and one SQS SendMessage for every \
         address; the lookup and the mail happen after it, in the SQS-fed worker. The router's answer floor \
         (400 ms by default) comes on top of both in a deployment.",
    );
    report.line("");
    let _ = sqs.delete_queue().queue_url(&url).send().await;
}
