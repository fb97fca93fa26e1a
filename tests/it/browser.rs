//! The buyer, in a real browser: headless Chromium driven through WebDriver (chromedriver, Debian's
//! `chromium-driver`) against the function served over HTTP on localhost, on the local stack. The buyer asks for
//! a link, opens it from the mail moto's SES received, sees their licenses, frees a seat, replaces the key (the old
//! one then fails `validate`), and downloads the product (SHA-256 checked, and a resumed Range request). The pages
//! are photographed into docs/ for the README.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::portal::{portal_app, settings, signin_links};
use common::{Ping, Seed, api, buyer, sale_body, sale_id, seed, send, stack};
use fantoccini::{Client, ClientBuilder, Locator};
use keystead::app::App;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `app` on `127.0.0.1:port` as API Gateway would hand it requests (payload 2.0 events, cookies in
/// `cookies`), on a thread of its own; the server stops with the test process.
fn serve(app: App, port: u16, runtime: tokio::runtime::Handle) {
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
            let (path, query) = match request.url().split_once('?') {
                Some((path, query)) => (path.to_owned(), query.to_owned()),
                None => (request.url().to_owned(), String::new()),
            };
            let mut headers = serde_json::Map::new();
            let mut cookies = Vec::new();
            for header in request.headers() {
                let name = header.field.as_str().as_str().to_ascii_lowercase();
                let value = header.value.as_str().to_owned();
                if name == "cookie" {
                    cookies.extend(value.split(';').map(|c| json!(c.trim())));
                } else {
                    headers.insert(name, json!(value));
                }
            }
            let params: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), json!(v)))
                .collect();
            let mut event = json!({
                "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
                "headers": headers,
                "requestContext": {
                    "accountId": "123456789012", "apiId": "local", "domainName": format!("localhost:{port}"),
                    "domainPrefix": "localhost",
                    "http": {"method": request.method().as_str(), "path": path, "protocol": "HTTP/1.1",
                             "sourceIp": "127.0.0.1", "userAgent": "chromium"},
                    "requestId": common::unique("req"), "routeKey": "$default", "stage": "$default",
                    "time": "04/May/2026:19:38:56 +0000", "timeEpoch": 1_777_923_536_000_i64
                },
                "body": base64::engine::general_purpose::STANDARD.encode(&body),
                "isBase64Encoded": true,
            });
            if !cookies.is_empty() {
                event["cookies"] = Value::Array(cookies);
            }
            if !params.is_empty() {
                event["queryStringParameters"] = Value::Object(params);
            }
            let response = runtime.block_on(app.handle(&event.to_string())).unwrap();
            let status = response.status.as_u16();
            let mut reply_headers = Vec::new();
            for (name, value) in &response.headers {
                reply_headers.push(
                    tiny_http::Header::from_bytes(name.as_str().as_bytes(), value.as_bytes())
                        .unwrap(),
                );
            }
            let mut reply =
                tiny_http::Response::from_data(response.body.to_vec()).with_status_code(status);
            for header in reply_headers {
                reply.add_header(header);
            }
            let _ = request.respond(reply);
        }
    });
}

/// chromedriver on its own port, stopped (by its process id) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // A group of its own: the browser it starts is stopped with it, even when the test fails midway.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by infra/local/setup (Debian's chromium-driver)");
        let started = Instant::now();
        while ureq::get(&format!("http://127.0.0.1:{port}/status"))
            .call()
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver's process group: chromedriver and the Chromium it started, nothing else.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, downloads: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1500", "--hide-scrollbars", "--force-device-scale-factor=1"],
            "prefs": {
                "download.default_directory": downloads.to_str().unwrap(),
                "download.prompt_for_download": false,
                "safebrowsing.enabled": false,
            },
        }),
    );
    // WebDriver is plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// A full-page screenshot into docs/ (the README shows them).
async fn photograph(client: &Client, name: &str) {
    // The window as tall as the page's content, so the picture has no empty tail.
    let height = client
        .execute(
            "return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + window.scrollY) + 24 + (window.outerHeight - window.innerHeight)",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(1400)
        .clamp(400, 4000);
    let width = client
        .execute("return window.outerWidth", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(1100);
    client
        .set_window_size(
            u32::try_from(width).unwrap(),
            u32::try_from(height).unwrap(),
        )
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn body_text(client: &Client) -> String {
    text_of(client, "body").await
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a button that submits a form and waits for the next page (the old one's root goes stale).
async fn submit(client: &Client, css: &str) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    click(client, css).await;
    let started = Instant::now();
    while old.attr("lang").await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{css} led nowhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .wait()
        .for_element(Locator::Css("main"))
        .await
        .unwrap();
}

/// The file Chromium finished downloading into `dir` as `name` (it writes to hidden and `.crdownload` files
/// first, and renames when done).
fn downloaded(dir: &Path, name: &str) -> PathBuf {
    let started = Instant::now();
    let target = dir.join(name);
    loop {
        let busy = std::fs::read_dir(dir).unwrap().any(|e| {
            e.is_ok_and(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                file.starts_with('.') || file.ends_with(".crdownload")
            })
        });
        if target.is_file() && !busy {
            return target;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {name} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_signs_in_frees_a_seat_replaces_the_key_and_downloads_in_a_real_browser() {
    let stack = stack().await;
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let mut portal_settings = settings();
    portal_settings.public_url = Some(base.clone());
    let app = portal_app(&stack, portal_settings).await;
    serve(app.clone(), port, tokio::runtime::Handle::current());

    // The seller: a tenant, its product's file, a sale to Jane, two activated machines.
    let t = seed(&stack, Seed::default()).await;
    let files = tempfile::tempdir().unwrap();
    let upload = files.path().join("MyApp-2.4.zip");
    let content: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&upload, &content).unwrap();
    cli_support::ok_json(&[
        "product",
        "file",
        &t.tenant_id,
        "myapp",
        upload.to_str().unwrap(),
    ]);
    let sha = hex::encode(Sha256::digest(&content));
    let jane = buyer();
    let sale = send(
        &app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale_id(), &jane)),
    )
    .await;
    assert_eq!(sale.status, 200, "{}", sale.body);
    let key = sale.json()["license"]["key"].as_str().unwrap().to_owned();
    for (machine, label) in [
        ("mbp-2023", "Jane's MacBook Pro"),
        ("studio-pc", "Studio PC"),
    ] {
        let r = api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": machine, "label": label}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    let driver = Driver::start();
    let downloads = tempfile::tempdir().unwrap();
    let client = browser(&driver, downloads.path()).await;

    // Ask for a link.
    client
        .goto(&format!("{base}/portal/{}", t.tenant_id))
        .await
        .unwrap();
    let label = text_of(&client, "label[for=email]").await;
    assert_eq!(label, "Email address you bought with");
    photograph(&client, "portal-sign-in.png").await;
    client
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(&jane)
        .await
        .unwrap();
    submit(&client, "button[type=submit]").await;
    assert!(
        body_text(&client)
            .await
            .contains("If that address bought something here")
    );
    photograph(&client, "portal-link-sent.png").await;

    // The queue's worker mails the link after the answer; open it from the mail SES received, and press
    // "Sign in".
    keystead::cli::signin_worker::mail_waiting(&app)
        .await
        .unwrap();
    let links = signin_links(&jane);
    assert_eq!(links.len(), 1);
    assert!(links[0].starts_with(&base));
    client.goto(&links[0]).await.unwrap();
    submit(&client, "button[type=submit]").await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/portal/{}/licenses", t.tenant_id));

    // The licenses: product, status, machines, the download and its checksum, the key on request.
    let page = body_text(&client).await;
    for expected in [
        "MyApp",
        "Active",
        "2 of 3 in use",
        "Jane's MacBook Pro",
        "Studio PC",
        &sha,
        "Download MyApp-2.4.zip",
    ] {
        assert!(page.contains(expected), "{expected} missing in:\n{page}");
    }
    assert!(!page.contains(&key), "the key is hidden until asked for");
    click(&client, "summary").await;
    assert_eq!(text_of(&client, ".key").await, key);
    photograph(&client, "portal-licenses.png").await;

    // Free a seat: the studio PC.
    submit(&client, "button[aria-label='Free the seat of Studio PC']").await;
    let page = body_text(&client).await;
    assert!(
        page.contains("The seat is free") && page.contains("1 of 3 in use"),
        "{page}"
    );
    assert!(!page.contains("Studio PC"));

    // Replace the key: the old one fails validate at once; the new one works, with every seat freed.
    client
        .find(Locator::Css("input[name=confirm]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&client, "button.danger").await;
    let page = body_text(&client).await;
    assert!(page.contains("Your key was replaced"), "{page}");
    click(&client, "summary").await;
    let new_key = text_of(&client, ".key").await;
    assert_ne!(new_key, key);
    photograph(&client, "portal-key-replaced.png").await;
    assert_eq!(
        api(&stack, &t.tenant_id, "validate", json!({"key": key}))
            .await
            .status,
        404
    );
    let valid = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": new_key, "machine_id": "mbp-2023"}),
    )
    .await;
    assert_eq!(valid.status, 200, "{}", valid.body);
    assert_eq!(valid.json()["activated"], false);
    assert_eq!(valid.json()["activations"], 0);

    // Download: the browser follows the 302 to S3 and saves the file, whose SHA-256 is the one shown.
    let link = client
        .find(Locator::XPath(
            "//a[starts-with(normalize-space(.), 'Download MyApp-2.4.zip')]",
        ))
        .await
        .unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    link.click().await.unwrap();
    let saved = downloaded(downloads.path(), "MyApp-2.4.zip");
    let bytes = std::fs::read(&saved).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        sha,
        "{} ({} bytes): {:?}",
        saved.display(),
        bytes.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );

    // A download cut short resumes with a Range request on a fresh redirect.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .build()
        .into();
    let redirect = agent.get(&href).call().unwrap();
    assert_eq!(redirect.status().as_u16(), 302);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let cut = 600_000;
    let mut rest = ureq::get(&location)
        .header("range", format!("bytes={cut}-"))
        .call()
        .unwrap();
    assert_eq!(rest.status().as_u16(), 206);
    let mut resumed = bytes[..cut].to_vec();
    resumed.extend(
        rest.body_mut()
            .with_config()
            .limit(10_000_000)
            .read_to_vec()
            .unwrap(),
    );
    assert_eq!(hex::encode(Sha256::digest(&resumed)), sha);

    // On a phone-sized screen the page is one readable column.
    client.set_window_size(390, 844).await.unwrap();
    client
        .goto(&format!("{base}/portal/{}/licenses", t.tenant_id))
        .await
        .unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "no sideways scrolling on a phone: {overflow}"
    );
    photograph(&client, "portal-phone.png").await;

    // A revoked license's download link answers a page that says why.
    let new_key_arg = new_key.clone();
    cli_support::ok(&["license", "revoke", &t.tenant_id, &new_key_arg]);
    client.set_window_size(1100, 900).await.unwrap();
    client.goto(&href).await.unwrap();
    let page = body_text(&client).await;
    assert!(page.contains("This license was revoked"), "{page}");
    photograph(&client, "portal-download-refused.png").await;

    client.close().await.unwrap();
}
