//! Writes the app kits' shared test vectors (issue 27) into `kits/vectors/` (or the directory given): leases and a
//! JWKS made by keystead's own signing code (`keystead::signing::Signer`, what the license API signs leases with), the
//! hostile ones built from them, and a release patch made by `release publish`'s own code. Every kit's unit tests
//! run all of them; `tests/it/kits.rs` checks that the committed files are what this program makes.
//!
//! `cargo run --example kit_vectors [-- <dir>]`

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keystead::signing::Signer;
use keystead_verify::{Jwk, Jwks, LeaseClaims};
use serde_json::{Value, json};

/// The instant the vectors are checked at (2027-01-15T08:00:00Z): kits pass it instead of reading the clock.
const NOW: i64 = 1_800_000_000;
const KID: &str = "k-vectors-1";

fn claims() -> LeaseClaims {
    LeaseClaims {
        iss: "acme".to_owned(),
        sub: "lic_vectors".to_owned(),
        product_id: "myapp".to_owned(),
        machine_id: "machine-1".to_owned(),
        status: "active".to_owned(),
        entitlements: vec!["pro".to_owned()],
        license_expires_at: None,
        iat: NOW - 3_600,
        exp: NOW + 7 * 86_400,
        nonce: None,
    }
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kits/vectors"));
    std::fs::create_dir_all(&dir).expect("the vectors' directory");
    let key = Signer::from_seed(KID, &[42; 32]).expect("a key");
    let other = Signer::from_seed("k-unknown", &[43; 32]).expect("a key");
    let public_key: [u8; 32] = key.public_key().try_into().expect("32 bytes");
    let jwks = Jwks {
        keys: vec![Jwk::ed25519(KID, &public_key)],
    };
    let lease = |claims: &LeaseClaims| key.sign(claims).expect("a lease");
    let valid = lease(&claims());
    let mut cases = vec![json!({"name": "valid", "lease": valid, "error": null})];
    let mut case = |name: &str, token: String, error: &str| {
        cases.push(json!({"name": name, "lease": token, "error": error}));
    };
    case(
        "expired",
        lease(&LeaseClaims {
            exp: NOW - 3_600,
            ..claims()
        }),
        "expired",
    );
    case(
        "expired_within_skew",
        lease(&LeaseClaims {
            exp: NOW - 30,
            ..claims()
        }),
        "",
    );
    case(
        "issued_in_the_future",
        lease(&LeaseClaims {
            iat: NOW + 3_600,
            ..claims()
        }),
        "not_yet_valid",
    );
    case(
        "wrong_machine",
        lease(&LeaseClaims {
            machine_id: "machine-2".to_owned(),
            ..claims()
        }),
        "wrong_machine",
    );
    case(
        "wrong_product",
        lease(&LeaseClaims {
            product_id: "otherapp".to_owned(),
            ..claims()
        }),
        "wrong_product",
    );
    case(
        "wrong_tenant",
        lease(&LeaseClaims {
            iss: "globex".to_owned(),
            ..claims()
        }),
        "wrong_tenant",
    );
    case(
        "not_active",
        lease(&LeaseClaims {
            status: "revoked".to_owned(),
            ..claims()
        }),
        "not_active",
    );
    case(
        "unknown_kid",
        other.sign(&claims()).expect("a lease"),
        "unknown_kid",
    );
    let claims_json = serde_json::to_value(claims()).expect("claims");
    let none_header = json!({"alg": "none", "kid": KID, "typ": "keystead-lease+jwt"});
    case(
        "alg_none",
        format!("{}.{}.", segment(&none_header), segment(&claims_json)),
        "bad_algorithm",
    );
    // HS256 keyed with the public key's bytes: the classic confusion attack on libraries that let `alg` choose.
    let hs_header = json!({"alg": "HS256", "kid": KID, "typ": "keystead-lease+jwt"});
    let input = format!("{}.{}", segment(&hs_header), segment(&claims_json));
    let mac = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public_key).expect("an HMAC key");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes()
    };
    case(
        "hs256_public_key_as_secret",
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac)),
        "bad_algorithm",
    );
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let mut tampered = claims_json.clone();
    tampered["entitlements"] = json!(["pro", "enterprise"]);
    parts[1] = segment(&tampered);
    case("tampered_payload", parts.join("."), "bad_signature");
    case("malformed", "not-a-lease".to_owned(), "malformed");

    let vectors = json!({
        "about": "Leases and a JWKS made by keystead's own signing code (examples/kit_vectors.rs). Check each lease at `now` against `jwks` expecting `expected`; `error` null or \"\" means it verifies (\"\": only thanks to the skew allowance), else the kit's error kind.",
        "now": NOW,
        "skew_seconds": keystead_verify::CLOCK_SKEW_SECONDS,
        "expected": {"tenant_id": "acme", "product_id": "myapp", "machine_id": "machine-1"},
        "jwks": jwks,
        "claims": claims_json,
        "cases": cases,
    });
    std::fs::write(
        dir.join("leases.json"),
        serde_json::to_string_pretty(&vectors).expect("JSON") + "\n",
    )
    .expect("leases.json");

    // A release patch as `release publish` makes it: old + patch gives new (SHA-256 of each in patch.json).
    let old: Vec<u8> = (0..64_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut new = old.clone();
    new[1_000..1_016].copy_from_slice(b"version 1.1.0 --");
    new.extend_from_slice(b"a new section at the end");
    let patch = keystead::files::patch::make_patch(&old, &new).expect("a patch");
    let sha = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    std::fs::write(dir.join("patch-old.bin"), &old).expect("patch-old.bin");
    std::fs::write(dir.join("patch-new.bin"), &new).expect("patch-new.bin");
    std::fs::write(dir.join("patch.zst"), &patch).expect("patch.zst");
    let about = json!({
        "format": "zstd-ref-prefix",
        "old": {"file": "patch-old.bin", "sha256": sha(&old), "size": old.len()},
        "new": {"file": "patch-new.bin", "sha256": sha(&new), "size": new.len()},
        "patch": {"file": "patch.zst", "sha256": sha(&patch), "size": patch.len()},
    });
    std::fs::write(
        dir.join("patch.json"),
        serde_json::to_string_pretty(&about).expect("JSON") + "\n",
    )
    .expect("patch.json");
    println!("{}", dir.display());
}
