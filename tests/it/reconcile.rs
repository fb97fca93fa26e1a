//! No sale is lost even if every ping was (issue 24): the scheduled reconciliation reads a tenant's recent sales
//! from Gumroad's sales API and mints each one no ping brought, exactly once, through the ping's path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support::{FakeGumroad, SALES_PAGE};
use crate::common::*;
use keystead::app::reconcile::reconcile_tenant;
use keystead::domain::TenantId;
use serde_json::{Value, json};

/// A sale as Gumroad's `GET /v2/sales` lists it.
fn listed(id: &str, email: &str) -> Value {
    json!({"id": id, "email": email, "seller_id": "kL0psVL2admJSYRNs-OCMg==",
           "product_id": "32-nPAicqbLj8B_WswVlMw==", "product_name": "MyApp Pro",
           "product_permalink": "https://acme.gumroad.com/l/myapp-pro", "price": 2900, "quantity": 1,
           "currency": "usd", "created_at": "2026-05-04T19:38:56Z", "full_name": "Jane Doe",
           "variants": {"Tier": "Pro"}, "refunded": false, "recurring_charge": false,
           "is_gift_receiver_purchase": false})
}

#[tokio::test]
async fn sales_whose_pings_were_all_lost_are_minted_once_by_the_reconciliation() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let gumroad = FakeGumroad::start();
    // The seller's token, stored sealed (the reconciliation runs for tenants that have one).
    gumroad.read_back_on(&t.tenant_id);
    let app = stack.app.clone().with_gumroad_api(&gumroad.url);
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();

    // Seven sales at Gumroad (more than one page); the ping of one arrived, the other six were lost.
    let sales: Vec<(String, String)> = (0..7).map(|_| (sale_id(), buyer())).collect();
    gumroad.set_sales(sales.iter().map(|(s, b)| listed(s, b)).collect());
    assert!(sales.len() > SALES_PAGE);
    let (pinged, pinged_buyer) = &sales[0];
    let ping = send(
        &app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(pinged, pinged_buyer),
        ),
    )
    .await;
    assert_eq!(ping.status, 200, "{}", ping.body);

    let first = reconcile_tenant(&app, &tenant_id).await.unwrap();
    assert_eq!(first.tenants, 1);
    assert_eq!(first.read, 7);
    assert_eq!(first.minted, 6, "{first:?}");
    assert_eq!(first.already_recorded, 1);
    assert_eq!(first.failed, 0);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 7);
    for (sale, buyer) in &sales {
        let mails = emails_to(buyer);
        assert_eq!(
            mails.len(),
            1,
            "{sale}: one key email, the ping's or the reconciliation's"
        );
    }

    // Again, and a late ping of a reconciled sale: nothing new, no second email.
    let again = reconcile_tenant(&app, &tenant_id).await.unwrap();
    assert_eq!((again.minted, again.already_recorded), (0, 7));
    let (late, late_buyer) = &sales[3];
    let replay = send(
        &app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(late, late_buyer)),
    )
    .await;
    assert_eq!(replay.json()["duplicate"], true, "{}", replay.body);
    assert_eq!(emails_to(late_buyer).len(), 1);
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        7
    );

    // The listing was read with the token as a bearer header, never in the URL.
    let listings: Vec<_> = gumroad
        .received()
        .into_iter()
        .filter(|r| r.path == "/v2/sales")
        .collect();
    assert!(listings.len() >= 4, "every page, twice");
    assert!(listings.iter().all(|r| {
        r.authorization.as_deref() == Some("Bearer tok-good")
            && !r.query.contains_key("access_token")
    }));
    assert!(listings.iter().all(|r| r.query.contains_key("after")));

    // Gumroad down: the run says so and changes nothing; the next run catches up.
    gumroad.fail_sales_requests(1);
    let down = reconcile_tenant(&app, &tenant_id).await.unwrap();
    assert_eq!((down.failed, down.minted), (1, 0));
}

#[tokio::test]
async fn a_tenant_without_a_gumroad_token_is_not_reconciled() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let gumroad = FakeGumroad::start();
    gumroad.set_sales(vec![listed(&sale_id(), &buyer())]);
    let app = stack.app.clone().with_gumroad_api(&gumroad.url);
    let done = reconcile_tenant(&app, &TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap();
    assert_eq!(done.tenants, 0);
    assert!(gumroad.received().is_empty());
    assert!(payments(&stack, &t.tenant_id).await.is_empty());
}
