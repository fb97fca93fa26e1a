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
