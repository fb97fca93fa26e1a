//! The function served over HTTP on a local port, as API Gateway would serve it: for tests whose subject talks to
//! the API by URL (the CLI's `doctor`). It runs on a thread of its own with its own runtime and application, so a
//! test may block on a child process meanwhile.

use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine;
use serde_json::{Value, json};

pub struct LocalApi {
    /// `http://127.0.0.1:<port>`, with no trailing slash.
    pub url: String,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl LocalApi {
    pub fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let app = runtime.block_on(super::stack()).app;
            for mut request in serving.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let event = event(&request, &body);
                let lambda_request = lambda_http::request::from_str(&event.to_string()).unwrap();
                let response = runtime.block_on(app.handle(lambda_request));
                let status = response.status().as_u16();
                let headers: Vec<tiny_http::Header> = response
                    .headers()
                    .iter()
                    .filter_map(|(name, value)| {
                        tiny_http::Header::from_bytes(name.as_str(), value.as_bytes()).ok()
                    })
                    .collect();
                let bytes = match response.into_body() {
                    lambda_http::Body::Text(text) => text.into_bytes(),
                    lambda_http::Body::Binary(bytes) => bytes,
                    _ => Vec::new(),
                };
                let mut reply = tiny_http::Response::from_data(bytes).with_status_code(status);
                for header in headers {
                    reply.add_header(header);
                }
                let _ = request.respond(reply);
            }
        });
        Self {
            url: format!("http://{addr}"),
            server,
            thread: Some(thread),
        }
    }
}

/// The API Gateway HTTP API (payload 2.0) event for a request.
fn event(request: &tiny_http::Request, body: &[u8]) -> Value {
    let (path, raw_query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let query: serde_json::Map<String, Value> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), json!(v)))
        .collect();
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                json!(h.value.as_str()),
            )
        })
        .collect();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let method = request.method().as_str().to_owned();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "keymint-test"},
            "requestId": super::unique("req"), "routeKey": "$default", "stage": "$default",
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

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
