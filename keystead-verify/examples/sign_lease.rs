//! Makes a demo JWKS and a lease signed with a fixed, public demo key (never use it for real leases),
//! to try `verify_lease` or a JWT library against.
//!
//! ```text
//! cargo run --features sign --example sign_lease -- <jwks-out.json> <tenant_id> <machine_id> <product_id> [nonce]
//! ```
//!
//! Writes the JWKS to the file and prints the lease (valid for one hour) on standard output.

use std::process::ExitCode;

use keystead_verify::ed25519_dalek::SigningKey;
use keystead_verify::{Jwk, Jwks, LeaseClaims, sign, unix_now};

const DEMO_SEED: [u8; 32] = *b"keystead-verify demo key, public";
const DEMO_KID: &str = "demo-1";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!(
            "usage: sign_lease <jwks-out.json> <tenant_id> <machine_id> <product_id> [nonce]"
        );
        return ExitCode::from(2);
    }
    let key = SigningKey::from_bytes(&DEMO_SEED);
    let jwks = Jwks {
        keys: vec![Jwk::ed25519(DEMO_KID, key.verifying_key().as_bytes())],
    };
    let written = serde_json::to_string_pretty(&jwks)
        .map_err(|e| e.to_string())
        .and_then(|json| std::fs::write(&args[0], json).map_err(|e| format!("{}: {e}", args[0])));
    if let Err(message) = written {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    let now = unix_now();
    let claims = LeaseClaims {
        iss: args[1].clone(),
        sub: "lic_demo".to_owned(),
        product_id: args[3].clone(),
        machine_id: args[2].clone(),
        status: "active".to_owned(),
        entitlements: vec!["pro".to_owned()],
        license_expires_at: None,
        iat: now,
        exp: now + 3600,
        nonce: args.get(4).cloned(),
    };
    match sign(DEMO_KID, &claims, &key) {
        Ok(lease) => {
            println!("{lease}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sign_lease: {e}");
            ExitCode::FAILURE
        }
    }
}
