//! Releases and the license-gated update feeds (issue 26), against the local stack (moto's S3): the seller
//! publishes with the CLI; each feed is read the way its updater reads it (a namespace-aware XML parser for
//! Sparkle's appcast, electron-updater's own `parseUpdateInfo`/`resolveFiles` under Node, Tauri's fields, 204 and
//! its own signature check `minisign-verify`); downloads redirect to S3 and resume from a Range.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli_support;
use crate::common::portal::{portal_app, request, settings};
use crate::common::{self, Reply, Seed, Seeded, buyer, sale_body, sale_id, seed, send, stack};
use keystead::app::App;

/// The seller's signing keys: Sparkle's Ed25519 key and Tauri's minisign key (both the seller's, never ours).
struct Keys {
    sparkle: SigningKey,
    tauri: SigningKey,
    tauri_id: [u8; 8],
}

impl Keys {
    fn new() -> Self {
        Self {
            sparkle: SigningKey::from_bytes(&[7; 32]),
            tauri: SigningKey::from_bytes(&[9; 32]),
            tauri_id: *b"tauri-id",
        }
    }

    /// `SUPublicEDKey`.
    fn sparkle_public(&self) -> String {
        STANDARD.encode(self.sparkle.verifying_key().as_bytes())
    }

    /// What `sign_update` prints as `sparkle:edSignature`.
    fn sparkle_sign(&self, file: &[u8]) -> String {
        STANDARD.encode(self.sparkle.sign(file).to_bytes())
    }

    /// `plugins.updater.pubkey`: base64 of minisign's public key file.
    fn tauri_public(&self) -> String {
        let mut blob = b"Ed".to_vec();
        blob.extend_from_slice(&self.tauri_id);
        blob.extend_from_slice(self.tauri.verifying_key().as_bytes());
        STANDARD.encode(format!(
            "untrusted comment: minisign public key\n{}\n",
            STANDARD.encode(blob)
        ))
    }

    /// The `.sig` file `tauri build` writes: base64 of a prehashed (`ED`) minisign signature.
    fn tauri_sign(&self, file: &[u8]) -> String {
        use blake2::Digest as _;
        let signature = self
            .tauri
            .sign(&blake2::Blake2b512::digest(file))
            .to_bytes();
        let mut blob = b"ED".to_vec();
        blob.extend_from_slice(&self.tauri_id);
        blob.extend_from_slice(&signature);
        let trusted = "timestamp:1780000000\tfile:MyApp.app.tar.gz";
        let mut global = signature.to_vec();
        global.extend_from_slice(trusted.as_bytes());
        let global = self.tauri.sign(&global).to_bytes();
        STANDARD.encode(format!(
            "untrusted comment: signature from tauri secret key\n{}\ntrusted comment: {trusted}\n{}\n",
            STANDARD.encode(blob),
            STANDARD.encode(global)
        ))
    }
}

/// A binary-looking file of `size` bytes that differs from `seed`'s other versions in a few places.
fn build(size: usize, version: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for spot in 0..usize::from(version) {
        let at = (spot * 7919 + 100) % size;
        bytes[at..at + 8].copy_from_slice(&[version; 8]);
    }
    bytes
}

struct Seller {
    t: Seeded,
    dir: tempfile::TempDir,
    keys: Keys,
}

impl Seller {
    async fn new(stack: &common::Stack) -> Self {
        Self {
            t: seed(stack, Seed::default()).await,
            dir: tempfile::tempdir().unwrap(),
            keys: Keys::new(),
        }
    }

    /// `product set` with the public keys the seller's apps pin.
    fn pin_keys(&self) {
        cli_support::ok(&[
            "product",
            "set",
            &self.t.tenant_id,
            "myapp",
            "--sparkle-public-key",
            &self.keys.sparkle_public(),
            "--tauri-public-key",
            &self.keys.tauri_public(),
        ]);
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `keystead release publish` with `files` (the first is the installer) and `extra` flags.
    fn publish_args(
        &self,
        version: &str,
        target: (&str, &str),
        files: &[&Path],
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = ["release", "publish", &self.t.tenant_id, "myapp", version]
            .map(str::to_owned)
            .to_vec();
        for file in files {
            args.push("--file".to_owned());
            args.push(file.to_str().unwrap().to_owned());
        }
        args.extend(["--platform", target.0, "--arch", target.1].map(str::to_owned));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    fn publish(
        &self,
        version: &str,
        target: (&str, &str),
        files: &[&Path],
        extra: &[&str],
    ) -> Value {
        let args = self.publish_args(version, target, files, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_support::ok_json(&args)["release"].clone()
    }

    /// A macOS release signed for both Sparkle and Tauri.
    fn publish_mac(&self, version: &str, bytes: &[u8], extra: &[&str]) -> Value {
        let file = self.write(&format!("MyApp-{version}.app.tar.gz"), bytes);
        let sig = self.write(
            &format!("MyApp-{version}.app.tar.gz.sig"),
            self.keys.tauri_sign(bytes).as_bytes(),
        );
        let sparkle = self.keys.sparkle_sign(bytes);
        let mut flags = vec![
            "--sparkle-signature",
            &sparkle,
            "--tauri-signature",
            sig.to_str().unwrap(),
        ];
        flags.extend_from_slice(extra);
        self.publish(version, ("darwin", "universal"), &[&file], &flags)
    }
}

async fn buy(app: &App, t: &Seeded) -> String {
    let reply = send(
        app,
        &common::Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(&sale_id(), &buyer()),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["license"]["key"].as_str().unwrap().to_owned()
}

/// `GET` a feed path of the product with the key in `Authorization: Bearer`.
async fn feed(app: &App, t: &Seeded, path: &str, key: &str) -> Reply {
    feed_with(
        app,
        t,
        path,
        &[],
        &[("authorization", format!("Bearer {key}"))],
    )
    .await
}

async fn feed_with(
    app: &App,
    t: &Seeded,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&'static str, String)],
) -> Reply {
    let path = format!("/v1/{}/products/myapp/{path}", t.tenant_id);
    let mut ping = request("GET", &path, query, &[], None);
    for (name, value) in headers {
        ping = ping.header(name, value.clone());
    }
    send(app, &ping).await
}

/// The versions a JSON feed lists.
fn versions(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect()
}

fn fetch(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = ureq::get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let mut answer = request.call().unwrap();
    let status = answer.status().as_u16();
    (
        status,
        answer
            .body_mut()
            .with_config()
            .limit(50_000_000)
            .read_to_vec()
            .unwrap(),
    )
}

/// Follows a download: the `303` and then S3.
async fn download(app: &App, t: &Seeded, key: &str, version: &str, file: &str) -> Vec<u8> {
    let reply = feed(app, t, &format!("releases/{version}/{file}"), key).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    fetch(reply.header("location").unwrap(), None).1
}

/// electron-updater's own code, run under Node: `parseUpdateInfo` (js-yaml) and `resolveFiles` against the feed URL.
fn electron_updater_reads(yaml: &str, feed_url: &str) -> Value {
    let script = r#"
const { parseUpdateInfo, resolveFiles } = require("electron-updater/out/providers/Provider");
const [yaml, feedUrl] = [process.argv[1], process.argv[2]];
const url = new URL(feedUrl);
const info = parseUpdateInfo(yaml, url.pathname.split("/").pop(), url);
const base = new URL(feedUrl.replace(/[^/?]+(\?|$)/, "$1"));
const files = resolveFiles(info, base).map(f => ({ url: f.url.href, sha512: f.info.sha512, size: f.info.size }));
console.log(JSON.stringify({ version: info.version, files, releaseDate: info.releaseDate, releaseNotes: info.releaseNotes }));
"#;
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/local/node_modules");
    let output = std::process::Command::new("node")
        .env("NODE_PATH", modules)
        .args(["-e", script, yaml, feed_url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

const SPARKLE: &str = "http://www.andymatuschak.org/xml-namespaces/sparkle";

#[tokio::test]
async fn each_updater_reads_its_feed_and_gets_the_files_the_license_may_have() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let seller = Seller::new(&stack).await;
    let t = &seller.t;
    seller.pin_keys();
    // Two platforms and three channels; 1.1.0 patches from 1.0.0.
    let v100 = build(400_000, 1);
    let v110 = build(400_000, 2);
    let beta = build(400_000, 3);
    seller.publish_mac("1.0.0", &v100, &["--build", "100"]);
    let notes = seller.write("notes.txt", b"Faster & smaller <3");
    // 1.1.0 with a Sparkle delta from build 100 (each signed by the seller's sign_update, installer first).
    let installer = seller.write("MyApp-1.1.0.app.tar.gz", &v110);
    let sig = seller.write(
        "MyApp-1.1.0.app.tar.gz.sig",
        seller.keys.tauri_sign(&v110).as_bytes(),
    );
    let delta_bytes = b"BinaryDelta 100 -> 110".to_vec();
    let delta = seller.write("MyApp-110-100.delta", &delta_bytes);
    let (sparkle, sparkle_delta) = (
        seller.keys.sparkle_sign(&v110),
        seller.keys.sparkle_sign(&delta_bytes),
    );
    let published = seller.publish(
        "1.1.0",
        ("darwin", "universal"),
        &[&installer, &delta],
        &[
            "--build",
            "110",
            "--notes",
            notes.to_str().unwrap(),
            "--min-os",
            "12.0.0",
            "--critical",
            "--sparkle-signature",
            &sparkle,
            "--sparkle-signature",
            &sparkle_delta,
            "--tauri-signature",
            sig.to_str().unwrap(),
            "--delta-from",
            "100",
        ],
    );
    let files: Vec<&str> = published["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "MyApp-1.1.0.app.tar.gz",
            "MyApp-110-100.delta",
            "MyApp-1.1.0.app.tar.gz.from-1.0.0.patch"
        ]
    );
    seller.publish_mac(
        "1.2.0-beta.1",
        &beta,
        &["--build", "120", "--channel", "beta"],
    );
    let exe = build(300_000, 4);
    let blockmap = b"{\"version\":\"2\",\"files\":[]}".to_vec();
    let exe_path = seller.write("MyApp-Setup-1.1.0.exe", &exe);
    let blockmap_path = seller.write("MyApp-Setup-1.1.0.exe.blockmap", &blockmap);
    seller.publish(
        "1.1.0",
        ("windows", "x86_64"),
        &[&exe_path, &blockmap_path],
        &[],
    );
    let rc = seller.write("MyApp-Setup-1.2.0-rc.1.exe", &build(300_000, 5));
    seller.publish(
        "1.2.0-rc.1",
        ("windows", "x86_64"),
        &[&rc],
        &["--channel", "rc"],
    );
    let key = buy(&app, t).await;

    // Sparkle: an RSS document in Sparkle's namespace, newest first, stable only unless asked.
    let reply = feed(&app, t, "appcast.xml", &key).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/rss+xml")
    );
    let doc = roxmltree::Document::parse(&reply.body).unwrap();
    let items: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("item"))
        .collect();
    let sparkle = |item: &roxmltree::Node, name: &str| {
        item.children()
            .find(|c| c.has_tag_name((SPARKLE, name)))
            .and_then(|c| c.text())
            .map(str::to_owned)
    };
    let shown: Vec<_> = items
        .iter()
        .map(|i| sparkle(i, "shortVersionString").unwrap())
        .collect();
    assert_eq!(shown, ["1.1.0", "1.0.0"]);
    let newest = &items[0];
    assert_eq!(sparkle(newest, "version").as_deref(), Some("110"));
    assert_eq!(
        sparkle(newest, "minimumSystemVersion").as_deref(),
        Some("12.0.0")
    );
    assert!(
        newest
            .children()
            .any(|c| c.has_tag_name((SPARKLE, "criticalUpdate")))
    );
    let description = newest
        .children()
        .find(|c| c.has_tag_name("description"))
        .unwrap();
    assert_eq!(description.text(), Some("Faster & smaller <3"));
    let enclosure = newest
        .children()
        .find(|c| c.has_tag_name("enclosure"))
        .unwrap();
    assert_eq!(enclosure.attribute("length"), Some("400000"));
    let url = enclosure.attribute("url").unwrap();
    assert_eq!(
        url,
        format!(
            "https://portal.test/v1/{}/products/myapp/releases/1.1.0/MyApp-1.1.0.app.tar.gz",
            t.tenant_id
        )
    );
    // What Sparkle checks after downloading: Ed25519 over the whole archive, with the key the app pins.
    let signature = enclosure.attribute((SPARKLE, "edSignature")).unwrap();
    let bytes = download(&app, t, &key, "1.1.0", "MyApp-1.1.0.app.tar.gz").await;
    assert_eq!(bytes, v110);
    let signature =
        ed25519_dalek::Signature::from_slice(&STANDARD.decode(signature).unwrap()).unwrap();
    seller
        .keys
        .sparkle
        .verifying_key()
        .verify_strict(&bytes, &signature)
        .unwrap();
    // The delta, under <sparkle:deltas>, from build 100, signed for its own bytes.
    let deltas = newest
        .children()
        .find(|c| c.has_tag_name((SPARKLE, "deltas")))
        .unwrap();
    let delta = deltas
        .children()
        .find(|c| c.has_tag_name("enclosure"))
        .unwrap();
    assert_eq!(delta.attribute((SPARKLE, "deltaFrom")), Some("100"));
    assert!(
        delta
            .attribute("url")
            .unwrap()
            .ends_with("/releases/1.1.0/MyApp-110-100.delta")
    );
    let bytes = download(&app, t, &key, "1.1.0", "MyApp-110-100.delta").await;
    let signature = STANDARD
        .decode(delta.attribute((SPARKLE, "edSignature")).unwrap())
        .unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    seller
        .keys
        .sparkle
        .verifying_key()
        .verify_strict(&bytes, &signature)
        .unwrap();
    let beta_feed = feed_with(
        &app,
        t,
        "appcast.xml",
        &[("channel", "beta")],
        &[("x-license-key", key.clone())],
    )
    .await;
    let doc = roxmltree::Document::parse(&beta_feed.body).unwrap();
    let channels: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((SPARKLE, "channel")))
        .map(|n| n.text().unwrap().to_owned())
        .collect();
    assert_eq!(channels, ["beta"], "{}", beta_feed.body);

    // Tauri: the update with the seller's minisign signature, which Tauri's own verifier accepts for the file.
    let update = feed(&app, t, "tauri/darwin/aarch64/1.0.0", &key).await;
    assert_eq!(update.status, 200, "{}", update.body);
    let update = update.json();
    assert_eq!(update["version"], "1.1.0");
    assert_eq!(update["notes"], "Faster & smaller <3");
    time::OffsetDateTime::parse(
        update["pub_date"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let sig_text = String::from_utf8(
        STANDARD
            .decode(update["signature"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let pubkey_text =
        String::from_utf8(STANDARD.decode(seller.keys.tauri_public()).unwrap()).unwrap();
    let public_key = minisign_verify::PublicKey::decode(&pubkey_text).unwrap();
    let signature = minisign_verify::Signature::decode(&sig_text).unwrap();
    let url = update["url"].as_str().unwrap();
    let path = url
        .strip_prefix(&format!(
            "https://portal.test/v1/{}/products/myapp/",
            t.tenant_id
        ))
        .unwrap();
    let (version, file) = path
        .strip_prefix("releases/")
        .unwrap()
        .split_once('/')
        .unwrap();
    let bytes = download(&app, t, &key, version, file).await;
    public_key.verify(&bytes, &signature, true).unwrap();
    assert_eq!(
        feed(&app, t, "tauri/darwin/aarch64/1.1.0", &key)
            .await
            .status,
        204
    );
    let beta_update = feed_with(
        &app,
        t,
        "tauri/darwin/x86_64/1.1.0",
        &[("channel", "beta"), ("key", &key)],
        &[],
    )
    .await;
    assert_eq!(beta_update.json()["version"], "1.2.0-beta.1");
    assert!(
        beta_update.json()["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?key={key}")),
        "an updater that sends the key in the URL gets it in the download URL too"
    );
    assert_eq!(
        feed(&app, t, "tauri/darwin/aarch64/not-a-version", &key)
            .await
            .status,
        400
    );

    // electron-updater (generic provider): its own parser and URL resolution, with the key in the base URL.
    let base = format!(
        "https://portal.test/v1/{}/products/myapp/electron/",
        t.tenant_id
    );
    let latest = feed_with(&app, t, "electron/latest.yml", &[("key", &key)], &[]).await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    let read = electron_updater_reads(&latest.body, &format!("{base}latest.yml?key={key}"));
    assert_eq!(read["version"], "1.1.0");
    let resolved = read["files"][0]["url"].as_str().unwrap();
    assert_eq!(
        resolved,
        format!(
            "https://portal.test/v1/{}/products/myapp/releases/1.1.0/MyApp-Setup-1.1.0.exe?key={key}",
            t.tenant_id
        )
    );
    assert_eq!(read["files"][0]["size"], 300_000);
    let sha512 = STANDARD.encode(sha2::Sha512::digest(&exe));
    assert_eq!(read["files"][0]["sha512"], sha512.as_str());
    // The blockmap electron-updater fetches beside the installer for a differential download.
    let bytes = download(&app, t, &key, "1.1.0", "MyApp-Setup-1.1.0.exe.blockmap").await;
    assert_eq!(bytes, blockmap);
    let rc_file = feed_with(&app, t, "electron/rc.yml", &[("key", &key)], &[]).await;
    assert_eq!(
        electron_updater_reads(&rc_file.body, &format!("{base}rc.yml?key={key}"))["version"],
        "1.2.0-rc.1"
    );
    let mac = feed(&app, t, "electron/latest-mac.yml", &key).await;
    assert_eq!(
        electron_updater_reads(&mac.body, &format!("{base}latest-mac.yml"))["version"],
        "1.1.0"
    );
    assert_eq!(
        feed(&app, t, "electron/latest-linux.yml", &key)
            .await
            .status,
        404
    );

    // JSON: filtered, newest first, the patch listed; the patch applied to 1.0.0 gives 1.1.0.
    let list = feed_with(
        &app,
        t,
        "releases",
        &[
            ("platform", "darwin"),
            ("arch", "aarch64"),
            ("current", "1.0.0"),
        ],
        &[("authorization", format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(versions(&list), ["1.1.0"]);
    let doc = list.json();
    assert_eq!(doc["update"]["version"], "1.1.0");
    let patch = &doc["update"]["patches"][0];
    assert_eq!(patch["from_version"], "1.0.0");
    assert_eq!(patch["from_sha256"], hex::encode(Sha256::digest(&v100)));
    assert_eq!(patch["target"], "MyApp-1.1.0.app.tar.gz");
    assert!(patch["size"].as_u64().unwrap() < 20_000, "{patch}");
    let patch_bytes = download(&app, t, &key, "1.1.0", patch["name"].as_str().unwrap()).await;
    assert_eq!(
        hex::encode(Sha256::digest(&patch_bytes)),
        patch["sha256"].as_str().unwrap()
    );
    let mut decoder =
        zstd::stream::read::Decoder::with_ref_prefix(&patch_bytes[..], &v100[..]).unwrap();
    decoder.window_log_max(31).unwrap();
    let mut patched = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut patched).unwrap();
    assert_eq!(patched, v110);
    let everything = feed_with(
        &app,
        t,
        "releases",
        &[("channel", "beta")],
        &[("x-license-key", key.clone())],
    )
    .await;
    assert_eq!(
        versions(&everything),
        ["1.2.0-rc.1", "1.2.0-beta.1", "1.1.0", "1.1.0", "1.0.0"]
    );

    // A download resumes: S3 answers the rest of the file from a Range, and the whole matches its SHA-256.
    let reply = feed(&app, t, "releases/1.0.0/MyApp-1.0.0.app.tar.gz", &key).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("cache-control"), Some("private, no-store"));
    let location = reply.header("location").unwrap();
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"));
    let (_, first) = fetch(location, Some("bytes=0-149999"));
    let (status, rest) = fetch(location, Some("bytes=150000-"));
    assert_eq!(status, 206);
    let whole = [first, rest].concat();
    assert_eq!(
        hex::encode(Sha256::digest(&whole)),
        hex::encode(Sha256::digest(&v100))
    );

    // Bad keys, unknown versions and files: JSON errors with their statuses.
    let none = feed_with(&app, t, "releases", &[], &[]).await;
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").is_some());
    assert_eq!(none.json(), json!({"error": "Missing license key"}));
    assert_eq!(feed(&app, t, "releases", "ACME-NOPE").await.status, 401);
    assert_eq!(
        feed(&app, t, "releases/9.9.9/MyApp.zip", &key).await.status,
        404
    );
    assert_eq!(
        feed(&app, t, "releases/1.1.0/Nope.zip", &key).await.status,
        404
    );
    let bad_channel = feed_with(
        &app,
        t,
        "releases",
        &[("channel", "nightly")],
        &[("x-license-key", key.clone())],
    )
    .await;
    assert_eq!(bad_channel.status, 400, "{}", bad_channel.body);
}

#[tokio::test]
async fn a_signature_that_does_not_verify_with_the_pinned_key_publishes_nothing() {
    let stack = stack().await;
    let seller = Seller::new(&stack).await;
    let t = &seller.t;
    seller.pin_keys();
    let bytes = build(50_000, 1);
    let file = seller.write("MyApp.zip", &bytes);
    // Signed with another key (the classic way to break every user's updates).
    let stranger = Keys {
        sparkle: SigningKey::from_bytes(&[1; 32]),
        ..Keys::new()
    };
    let args = seller.publish_args(
        "1.0.0",
        ("darwin", "universal"),
        &[&file],
        &["--sparkle-signature", &stranger.sparkle_sign(&bytes)],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = cli_support::fails(&args, 2);
    assert!(
        refused.contains("does not verify with the product's --sparkle-public-key"),
        "{refused}"
    );
    // A Tauri signature of other bytes.
    let sig = seller.write(
        "MyApp.zip.sig",
        seller.keys.tauri_sign(b"other bytes").as_bytes(),
    );
    let args = seller.publish_args(
        "1.0.0",
        ("darwin", "universal"),
        &[&file],
        &["--tauri-signature", sig.to_str().unwrap()],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = cli_support::fails(&args, 2);
    assert!(
        refused.contains("does not verify with the product's --tauri-public-key"),
        "{refused}"
    );
    let listed = cli_support::ok_json(&["release", "list", &t.tenant_id, "myapp"]);
    assert_eq!(listed["releases"], json!([]));
    // A malformed key is refused when it is set.
    let bad = cli_support::fails(
        &[
            "product",
            "set",
            &t.tenant_id,
            "myapp",
            "--sparkle-public-key",
            "abc",
        ],
        2,
    );
    assert!(bad.contains("invalid Sparkle public key"), "{bad}");
    // The right signatures publish, and the same version cannot be published twice.
    let sig = seller.write("MyApp.zip.sig", seller.keys.tauri_sign(&bytes).as_bytes());
    let args = seller.publish_args(
        "1.0.0",
        ("darwin", "universal"),
        &[&file],
        &[
            "--sparkle-signature",
            &seller.keys.sparkle_sign(&bytes),
            "--tauri-signature",
            sig.to_str().unwrap(),
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli_support::ok(&args);
    let again = cli_support::fails(&args, 4);
    assert!(again.contains("already exists"), "{again}");
}

/// The JSON feed's versions for `key`, following `channel`, from `machine`.
async fn seen(
    app: &App,
    t: &Seeded,
    key: &str,
    channel: &str,
    machine: Option<&str>,
) -> Result<Vec<String>, u16> {
    let mut headers = vec![("x-license-key", key.to_owned())];
    if let Some(machine) = machine {
        headers.push(("x-machine-id", machine.to_owned()));
    }
    let reply = feed_with(app, t, "releases", &[("channel", channel)], &headers).await;
    match reply.status {
        200 => Ok(versions(&reply)),
        status => Err(status),
    }
}

#[tokio::test]
async fn access_follows_channels_entitlements_yanks_suspensions_and_seats() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let seller = Seller::new(&stack).await;
    let t = &seller.t;
    let file = |name: &str| seller.write(name, &build(20_000, 1));
    let linux = ("linux", "x86_64");
    seller.publish("1.0.0", linux, &[&file("a-1.0.0.AppImage")], &[]);
    seller.publish(
        "1.1.0-rc.1",
        linux,
        &[&file("a-1.1.0-rc.1.AppImage")],
        &["--channel", "rc"],
    );
    seller.publish(
        "1.1.0-alpha.1",
        linux,
        &[&file("a-1.1.0-alpha.1.AppImage")],
        &["--channel", "alpha"],
    );
    seller.publish(
        "2.0.0-dev.1",
        linux,
        &[&file("a-2.0.0-dev.1.AppImage")],
        &["--channel", "dev"],
    );
    seller.publish(
        "1.2.0",
        linux,
        &[&file("a-1.2.0.AppImage")],
        &["--entitlements", "pro"],
    );
    seller.publish("1.3.0", linux, &[&file("a-1.3.0.AppImage")], &["--draft"]);
    let key = buy(&app, t).await;

    // Channels are cumulative; dev stands alone; drafts are nowhere; a release needing `pro` is hidden.
    assert_eq!(
        seen(&app, t, &key, "stable", None).await,
        Ok(vec!["1.0.0".to_owned()])
    );
    assert_eq!(
        seen(&app, t, &key, "rc", None).await,
        Ok(vec!["1.1.0-rc.1".to_owned(), "1.0.0".to_owned()])
    );
    assert_eq!(
        seen(&app, t, &key, "alpha", None).await,
        Ok(["1.1.0-rc.1", "1.1.0-alpha.1", "1.0.0"]
            .map(str::to_owned)
            .to_vec())
    );
    assert_eq!(
        seen(&app, t, &key, "dev", None).await,
        Ok(vec!["2.0.0-dev.1".to_owned()])
    );
    let hidden = feed(&app, t, "releases/1.2.0/a-1.2.0.AppImage", &key).await;
    assert_eq!(hidden.status, 403);
    assert_eq!(
        hidden.json()["error"],
        "License lacks an entitlement this release requires"
    );
    assert_eq!(
        feed(&app, t, "releases/1.3.0/a-1.3.0.AppImage", &key)
            .await
            .status,
        404
    );

    // The product grants `pro`: the release appears. A published draft appears; a yanked release goes.
    cli_support::ok(&[
        "product",
        "set",
        &t.tenant_id,
        "myapp",
        "--entitlements",
        "pro",
    ]);
    cli_support::ok(&["release", "publish-draft", &t.tenant_id, "myapp", "1.3.0"]);
    assert_eq!(
        seen(&app, t, &key, "stable", None).await,
        Ok(["1.3.0", "1.2.0", "1.0.0"].map(str::to_owned).to_vec())
    );
    cli_support::ok(&["release", "yank", &t.tenant_id, "myapp", "1.3.0"]);
    // Each publication (drafts once published) is a `release.published` event for the webhooks.
    let published = common::audit_types(&stack, &t.tenant_id)
        .await
        .into_iter()
        .filter(|kind| kind == "release.published")
        .count();
    assert_eq!(
        published, 6,
        "five published at once, and the draft when it was published"
    );
    assert_eq!(
        seen(&app, t, &key, "stable", None).await,
        Ok(["1.2.0", "1.0.0"].map(str::to_owned).to_vec())
    );
    assert_eq!(
        feed(&app, t, "releases/1.3.0/a-1.3.0.AppImage", &key)
            .await
            .status,
        404
    );
    let listed = cli_support::ok_json(&["release", "list", &t.tenant_id, "myapp"]);
    let statuses: Vec<(&str, &str)> = listed["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses[..2],
        [("2.0.0-dev.1", "published"), ("1.3.0", "yanked")]
    );

    // A machine must hold a seat; once activated it reads the feed.
    assert_eq!(seen(&app, t, &key, "stable", Some("m-1")).await, Err(403));
    let activated = send(
        &app,
        &common::call(
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": "m-1"}).to_string(),
        ),
    )
    .await;
    assert_eq!(activated.status, 200, "{}", activated.body);
    assert_eq!(
        seen(&app, t, &key, "stable", Some("m-1"))
            .await
            .map(|v| v.len()),
        Ok(2)
    );

    // Suspended: nothing, not even the feed; resumed: back.
    cli_support::ok(&["license", "suspend", &t.tenant_id, &key]);
    assert_eq!(seen(&app, t, &key, "stable", None).await, Err(403));
    assert_eq!(
        feed(&app, t, "releases/1.0.0/a-1.0.0.AppImage", &key)
            .await
            .status,
        403
    );
    cli_support::ok(&["license", "resume", &t.tenant_id, &key]);
    assert_eq!(
        seen(&app, t, &key, "stable", None).await.map(|v| v.len()),
        Ok(2)
    );
    // Revoked (a refund): nothing.
    cli_support::ok(&["license", "revoke", &t.tenant_id, &key]);
    assert_eq!(seen(&app, t, &key, "stable", None).await, Err(403));
}

#[tokio::test]
async fn an_ended_subscription_keeps_what_was_released_before_it_ended_as_the_product_says() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let seller = Seller::new(&stack).await;
    let t = &seller.t;
    let file = |name: &str| seller.write(name, &build(20_000, 1));
    let subscription = common::unique("sub");
    let reply = send(
        &app,
        &common::Ping::new(
            &t.tenant_id,
            Some(&t.token),
            common::subscription_sale(&sale_id(), &buyer(), &subscription, false),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    seller.publish(
        "1.0.0",
        ("linux", "x86_64"),
        &[&file("a-1.0.0.AppImage")],
        &[],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ended_at = keystead::domain::rfc3339(time::OffsetDateTime::now_utc());
    let ended = send(
        &app,
        &common::Ping::new(
            &t.tenant_id,
            Some(&t.token),
            common::subscription_event(
                "subscription_ended",
                &subscription,
                &[],
                &format!(
                    "ended_at={}&ended_reason=cancelled",
                    ended_at.replace(':', "%3A")
                ),
            ),
        ),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    seller.publish(
        "1.1.0",
        ("linux", "x86_64"),
        &[&file("a-1.1.0.AppImage")],
        &[],
    );

    // Default (keep-released): the release made before the end, and only it.
    assert_eq!(
        seen(&app, t, &key, "stable", None).await,
        Ok(vec!["1.0.0".to_owned()])
    );
    let later = feed(&app, t, "releases/1.1.0/a-1.1.0.AppImage", &key).await;
    assert_eq!(later.status, 403);
    assert_eq!(later.json()["error"], "License expired before this release");
    assert_eq!(
        feed(&app, t, "releases/1.0.0/a-1.0.0.AppImage", &key)
            .await
            .status,
        303
    );
    cli_support::ok(&[
        "product",
        "set",
        &t.tenant_id,
        "myapp",
        "--after-expiry",
        "nothing",
    ]);
    assert_eq!(seen(&app, t, &key, "stable", None).await, Ok(vec![]));
    assert_eq!(
        feed(&app, t, "releases/1.0.0/a-1.0.0.AppImage", &key)
            .await
            .status,
        403
    );
    cli_support::ok(&[
        "product",
        "set",
        &t.tenant_id,
        "myapp",
        "--after-expiry",
        "everything",
    ]);
    assert_eq!(
        seen(&app, t, &key, "stable", None).await.map(|v| v.len()),
        Ok(2)
    );
}

#[tokio::test]
async fn the_portal_lists_the_versions_a_license_may_download_and_serves_them() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let seller = Seller::new(&stack).await;
    let t = &seller.t;
    let customer = buyer();
    let reply = send(
        &app,
        &common::Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(&sale_id(), &customer),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v1 = build(30_000, 1);
    let notes = seller.write("notes.txt", b"Dark mode.");
    let mac = seller.write("MyApp-1.0.0.dmg", &v1);
    seller.publish(
        "1.0.0",
        ("darwin", "universal"),
        &[&mac],
        &["--notes", notes.to_str().unwrap()],
    );
    let beta = seller.write("MyApp-1.1.0-beta.1.dmg", &build(30_000, 2));
    seller.publish(
        "1.1.0-beta.1",
        ("darwin", "universal"),
        &[&beta],
        &["--channel", "beta"],
    );

    let cookie = crate::common::portal::sign_in(&app, &t.tenant_id, &customer).await;
    let page = crate::common::portal::get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Versions you can download") && page.body.contains("Dark mode."),
        "{}",
        page.body
    );
    assert!(page.body.contains("Download MyApp-1.0.0.dmg"));
    assert!(
        !page.body.contains("1.1.0-beta.1"),
        "the portal lists the stable channel"
    );
    let marker = format!("https://portal.test/portal/{}/download/", t.tenant_id);
    let start = page.body.find(&marker).unwrap();
    let end = page.body[start..].find('"').unwrap() + start;
    let link = page.body[start + "https://portal.test".len()..end].to_owned();
    let download = crate::common::portal::get(&app, &link, None).await;
    assert_eq!(download.status, 302, "{}", download.body);
    assert_eq!(fetch(download.header("location").unwrap(), None).1, v1);
    // Yanked: the link gives nothing any more.
    cli_support::ok(&["release", "yank", &t.tenant_id, "myapp", "1.0.0"]);
    assert_eq!(
        crate::common::portal::get(&app, &link, None).await.status,
        404
    );
}
