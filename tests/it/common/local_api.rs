//! The function served over HTTP on a local port, as API Gateway would serve it: for tests whose subject talks to
//! the API by URL (the CLI's `doctor`). It runs on a thread of its own with its own runtime and application, so a
//! test may block on a child process meanwhile.

use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;

pub struct LocalApi {
    /// `http://127.0.0.1:<port>`, with no trailing slash.
    pub url: String,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl LocalApi {
    pub fn start() -> Self {
        Self::serve(false)
    }

    /// The function with the portal's settings and the local bucket, so that downloads redirect to moto's S3;
    /// links point to this server.
    pub fn start_with_downloads() -> Self {
        Self::serve(true)
    }

    fn serve(downloads: bool) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let serving = Arc::clone(&server);
        let base = format!("http://{addr}");
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let app = runtime.block_on(async {
                let stack = super::stack().await;
                if !downloads {
                    return stack.app;
                }
                let settings = keystead::portal::PortalSettings {
                    public_url: Some(base),
                    ..super::portal::settings()
                };
                super::portal::portal_app(&stack, settings).await
            });
            for mut request in serving.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let event = event(&request, &body);
                let response = runtime.block_on(app.handle(&event.to_string())).unwrap();
                let status = response.status.as_u16();
                let headers: Vec<tiny_http::Header> = response
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        tiny_http::Header::from_bytes(name.as_str(), value.as_bytes()).ok()
                    })
                    .collect();
                let mut reply =
                    tiny_http::Response::from_data(response.body.to_vec()).with_status_code(status);
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

/// The API Gateway HTTP API (payload 2.0) event for a request, built as the tests build theirs.
fn event(request: &tiny_http::Request, body: &[u8]) -> Value {
    let (path, raw_query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let query: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let ping = super::Ping {
        method: request.method().as_str(),
        path: path.to_owned(),
        query: query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect(),
        body: body.to_vec(),
        base64: false,
        source_ip: "127.0.0.1".to_owned(),
    };
    ping.event()
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
