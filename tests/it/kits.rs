//! The app kits (issue 27) against the real service: the function served on a local port with the local stack
//! behind it (moto's S3 for downloads), a product with two releases (the second with a patch from the first), a
//! license sold by a ping. Each kit goes through the same three phases: online (activate, the lease, an update
//! check, a download interrupted and resumed, the patch), offline (the server stopped: the stored lease answers),
//! revoked (after a refund ping: validate says so). The Rust kit runs in-process; the Python and TypeScript kits'
//! own integration tests (`kits/python/tests/test_service.py`, `kits/typescript/test/service.test.mjs`) run as
//! child processes, one phase each, told where everything is through `KEYSTEAD_KIT_*`.

use std::path::{Path, PathBuf};
use std::process::Command;

use keystead_client::{Client, Downloaded, Error, FileLeaseStore};
use sha2::{Digest, Sha256};

use crate::cli_support;
use crate::common::local_api::LocalApi;
use crate::common::{self, Seed, Seeded, buyer, sale_body, sale_id, seed, send, stack};

/// What the phases share: the service's data, the license, the installed 1.0.0 file, a state directory.
struct Setup {
    stack: common::Stack,
    t: Seeded,
    key: String,
    sale: String,
    customer: String,
    old_file: PathBuf,
    new_bytes: Vec<u8>,
    dir: tempfile::TempDir,
}

/// An executable-like file: `version` changes a few places of the same bytes (so a patch is small).
fn build(version: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for spot in 0..usize::from(version) * 3 {
        let at = (spot * 7919 + 100) % 299_000;
        bytes[at..at + 8].copy_from_slice(&[version; 8]);
    }
    bytes
}

async fn setup() -> Setup {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let publish = |version: &str, bytes: &[u8]| {
        let path = dir.path().join(format!("myapp-{version}.AppImage"));
        std::fs::write(&path, bytes).unwrap();
        cli_support::ok(&[
            "release",
            "publish",
            &t.tenant_id,
            "myapp",
            version,
            "--file",
            path.to_str().unwrap(),
            "--platform",
            "linux",
            "--arch",
            "x86_64",
        ]);
        path
    };
    let old_file = publish("1.0.0", &build(1));
    let new_bytes = build(2);
    publish("1.1.0", &new_bytes);
    let (sale, customer) = (sale_id(), buyer());
    let reply = send(
        &stack.app,
        &common::Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &customer)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    Setup {
        stack,
        t,
        key,
        sale,
        customer,
        old_file,
        new_bytes,
        dir,
    }
}

impl Setup {
    /// Gumroad's refund of the sale: the license is revoked.
    async fn refund(&self) {
        let refund = common::sale_event("refund", &self.sale, &self.customer, true);
        let reply = send(
            &self.stack.app,
            &common::Ping::new(&self.t.tenant_id, Some(&self.t.token), refund),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    fn state(&self, kit: &str) -> PathBuf {
        let state = self.dir.path().join(kit);
        std::fs::create_dir_all(&state).unwrap();
        state
    }
}

fn rust_client(setup: &Setup, api: &str) -> Client {
    Client::builder(api, &setup.t.tenant_id, "myapp")
        .store(FileLeaseStore::new(setup.state("rust").join("lease.json")))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_kit_activates_works_offline_updates_and_hears_of_the_refund() {
    let setup = setup().await;
    let api = LocalApi::start_with_downloads();
    let url = api.url.clone();
    // The kit is blocking: it runs on a thread of its own.
    let online = {
        let (client, key, old, new) = (
            rust_client(&setup, &url),
            setup.key.clone(),
            setup.old_file.clone(),
            setup.new_bytes.clone(),
        );
        let downloads = setup.state("rust").join("downloads");
        std::thread::spawn(move || {
            let answer = client.activate(&key, Some("rust kit test")).unwrap();
            assert!(answer.valid && answer.lease.is_some(), "{answer:?}");
            let lease = client.status().unwrap();
            assert_eq!(lease.machine_id, client.machine());
            let update = client
                .check_update("1.0.0", "linux", "x86_64", "stable")
                .unwrap()
                .expect("1.1.0 is newer");
            assert_eq!(update.version, "1.1.0");
            assert_eq!(update.patches.len(), 1);
            std::fs::create_dir_all(&downloads).unwrap();
            // An interrupted download: a third of the file is there already; the rest comes from a Range.
            let dest = downloads.join("myapp-1.1.0.AppImage");
            std::fs::write(downloads.join("myapp-1.1.0.AppImage.part"), &new[..100_000]).unwrap();
            assert_eq!(
                client.download(&update, &dest, None).unwrap(),
                Downloaded::Full
            );
            assert_eq!(std::fs::read(&dest).unwrap(), new);
            // From the installed 1.0.0: the patch.
            let patched = downloads.join("patched.AppImage");
            assert_eq!(
                client.download(&update, &patched, Some(&old)).unwrap(),
                Downloaded::Patched
            );
            assert_eq!(std::fs::read(&patched).unwrap(), new);
        })
    };
    online.join().unwrap();
    drop(api);

    // Offline: the stored lease answers; an online call says it is offline with a valid lease.
    let client = rust_client(&setup, &url);
    let offline = std::thread::spawn(move || {
        let lease = client.status().unwrap();
        assert_eq!(lease.status, "active");
        match client.validate() {
            Err(Error::OfflineWithValidLease(claims)) => assert_eq!(claims.sub, lease.sub),
            other => panic!("{other:?}"),
        }
    });
    offline.join().unwrap();

    // Refunded: validate says revoked and the lease is gone.
    setup.refund().await;
    let api = LocalApi::start_with_downloads();
    let client = rust_client(&setup, &api.url);
    let revoked = std::thread::spawn(move || {
        assert!(matches!(client.validate(), Err(Error::Revoked)));
        assert!(client.status().is_err());
    });
    revoked.join().unwrap();
}

/// Runs a kit's own integration test for one phase.
fn run_phase(setup: &Setup, kit: &str, api: &str, phase: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = match kit {
        "python" => {
            let mut c = Command::new(root.join(".venv/bin/python"));
            c.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
                .arg(root.join("kits/python/tests/test_service.py"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg("--test")
                .arg(root.join("kits/typescript/test/service.test.mjs"));
            c
        }
    };
    let output = command
        .env("KEYSTEAD_KIT_API", api)
        .env("KEYSTEAD_KIT_TENANT", &setup.t.tenant_id)
        .env("KEYSTEAD_KIT_PRODUCT", "myapp")
        .env("KEYSTEAD_KIT_KEY", &setup.key)
        .env("KEYSTEAD_KIT_STATE", setup.state(kit))
        .env("KEYSTEAD_KIT_OLD_FILE", &setup.old_file)
        .env("KEYSTEAD_KIT_PHASE", phase)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{kit} {phase}:\n{text}");
    // The phase ran (not skipped): pytest says "1 passed", node's runner "# pass 1".
    assert!(
        text.contains("1 passed") || text.contains("# pass 1"),
        "{kit} {phase} did not run:\n{text}"
    );
}

async fn three_phases(kit: &str) {
    let setup = setup().await;
    let api = LocalApi::start_with_downloads();
    let url = api.url.clone();
    run_phase(&setup, kit, &url, "online");
    drop(api);
    run_phase(&setup, kit, &url, "offline");
    setup.refund().await;
    let api = LocalApi::start_with_downloads();
    run_phase(&setup, kit, &api.url, "revoked");
    // What the kit downloaded is what was published.
    let downloaded: Vec<_> = walk(&setup.state(kit))
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == setup.new_bytes))
        .collect();
    assert!(!downloaded.is_empty(), "{kit} downloaded no verified 1.1.0");
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&downloaded[0]).unwrap())),
        hex::encode(Sha256::digest(&setup.new_bytes))
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_kit_runs_its_service_test_in_three_phases() {
    three_phases("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_kit_runs_its_service_test_in_three_phases() {
    three_phases("typescript").await;
}

/// The committed vectors mean what they say to keystead's own verifier (`keystead-verify`) and patcher.
#[test]
fn the_shared_vectors_are_judged_by_keysteads_own_code_as_they_say() {
    use keystead_verify::{Error as V, Expected, PublicKeys, verify};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("kits/vectors");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("leases.json")).unwrap()).unwrap();
    let keys = PublicKeys::from_jwks_json(&doc["jwks"].to_string()).unwrap();
    let e = &doc["expected"];
    let expected = Expected::new(
        e["tenant_id"].as_str().unwrap(),
        e["product_id"].as_str().unwrap(),
        e["machine_id"].as_str().unwrap(),
    );
    let now = doc["now"].as_i64().unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let judged = verify(case["lease"].as_str().unwrap(), &keys, &expected, now);
        let kind = match &judged {
            Ok(_) => None,
            Err(V::Expired) => Some("expired"),
            Err(V::NotYetValid) => Some("not_yet_valid"),
            Err(V::WrongMachine) => Some("wrong_machine"),
            Err(V::WrongProduct) => Some("wrong_product"),
            Err(V::WrongIssuer) => Some("wrong_tenant"),
            Err(V::NotActive(_)) => Some("not_active"),
            Err(V::UnknownKey(_)) => Some("unknown_kid"),
            Err(V::UnsupportedAlgorithm(_)) => Some("bad_algorithm"),
            Err(V::BadSignature) => Some("bad_signature"),
            Err(_) => Some("malformed"),
        };
        let want = case["error"].as_str().filter(|k| !k.is_empty());
        assert_eq!(kind, want, "{}: {judged:?}", case["name"]);
    }
    // The one that verifies only thanks to the skew allowance fails without it.
    let skewed = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["error"] == "")
        .unwrap();
    let late = verify(
        skewed["lease"].as_str().unwrap(),
        &keys,
        &expected,
        now + 60,
    );
    assert_eq!(late.err(), Some(V::Expired));
    let patched = keystead::files::patch::apply_patch(
        &std::fs::read(root.join("patch-old.bin")).unwrap(),
        &std::fs::read(root.join("patch.zst")).unwrap(),
    )
    .unwrap();
    assert_eq!(patched, std::fs::read(root.join("patch-new.bin")).unwrap());
}
