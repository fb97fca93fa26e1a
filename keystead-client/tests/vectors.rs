//! The shared test vectors (`kits/vectors/`, made by keystead's own signing and patching code): every lease
//! checked offline by `Client::status_at`, the patch applied.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use keystead_client::{Client, LeaseStore, MemoryLeaseStore, Stored, apply_patch};
use serde_json::Value;

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kits/vectors")
}

#[test]
fn every_lease_vector_is_judged_as_the_service_means_it() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors().join("leases.json")).unwrap())
            .unwrap();
    let expected = &doc["expected"];
    let now = doc["now"].as_i64().unwrap();
    let jwks = doc["jwks"].to_string();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let store = MemoryLeaseStore::default();
        store
            .save(&Stored {
                key: "ACME-KEY".to_owned(),
                lease: Some(case["lease"].as_str().unwrap().to_owned()),
                jwks: None,
            })
            .unwrap();
        let client = Client::builder(
            "http://127.0.0.1:9",
            expected["tenant_id"].as_str().unwrap(),
            expected["product_id"].as_str().unwrap(),
        )
        .machine_id(expected["machine_id"].as_str().unwrap())
        .store(store)
        .pinned_keys(jwks.clone())
        .build()
        .unwrap();
        let judged = client.status_at(now);
        match case["error"].as_str() {
            None | Some("") => {
                let claims = judged.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(claims.sub, doc["claims"]["sub"], "{name}");
            }
            Some(kind) => {
                let err = judged.err().unwrap_or_else(|| panic!("{name} verified"));
                assert_eq!(err.kind(), kind, "{name}: {err}");
            }
        }
    }
}

#[test]
fn the_patch_vector_gives_the_new_file() {
    let old = std::fs::read(vectors().join("patch-old.bin")).unwrap();
    let new = std::fs::read(vectors().join("patch-new.bin")).unwrap();
    let patch = std::fs::read(vectors().join("patch.zst")).unwrap();
    assert_eq!(apply_patch(&old, &patch).unwrap(), new);
    // Another old file (every byte changed): the patch does not give the new file from it.
    let other: Vec<u8> = old.iter().map(|b| b ^ 0x55).collect();
    assert!(apply_patch(&other, &patch).map_or(true, |out| out != new));
}
