//! The router's own answers, in our JSON shape: a path no route has is a 404, a route asked with a method it
//! does not take is a 405 naming the methods it does take (as API Gateway routes them: no implied HEAD).

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_in_our_shape() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let mut request = Ping::new(&t.tenant_id, Some(&t.token), "test=true");

    request.path = format!("/webhooks/gumroad/{}/extra", t.tenant_id);
    let reply = send(&stack.app, &request).await;
    assert_eq!(
        (reply.status, reply.json()),
        (404, json!({"error": "Not found"}))
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));

    request.path = "/nowhere".to_owned();
    assert_eq!(send(&stack.app, &request).await.status, 404);

    request.path = format!("/webhooks/gumroad/{}", t.tenant_id);
    request.method = "GET";
    let reply = send(&stack.app, &request).await;
    assert_eq!(
        (reply.status, reply.json()),
        (405, json!({"error": "Method not allowed"}))
    );
    assert_eq!(reply.header("allow"), Some("POST"));

    request.path = format!("/portal/{}/signin", t.tenant_id);
    request.method = "PUT";
    let reply = send(&stack.app, &request).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, POST"));

    request.path = format!("/v1/{}/jwks.json", t.tenant_id);
    request.method = "POST";
    let reply = send(&stack.app, &request).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
}

#[tokio::test]
async fn behind_the_waf_edge_a_request_that_bypassed_it_is_refused_and_changes_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let app = stack.app.clone().with_edge_secret("stack-uuid-0001");
    let (sale, customer) = (sale_id(), buyer());
    let ping = || Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &customer));

    // Straight at the API's own URL: no header, or a wrong one.
    for request in [ping(), ping().header("x-keystead-edge", "stack-uuid-0002")] {
        let reply = send(&app, &request).await;
        assert_eq!(
            (reply.status, reply.json()),
            (403, json!({"error": "Forbidden"}))
        );
    }
    assert!(payments(&stack, &t.tenant_id).await.is_empty());
    assert!(emails_to(&customer).is_empty());

    // Through CloudFront, which adds the header: served as ever.
    let through = send(&app, &ping().header("x-keystead-edge", "stack-uuid-0001")).await;
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
}
