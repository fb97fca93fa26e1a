//! Verifies a lease against a JWKS file and prints its claims, or why it was refused.
//!
//! ```text
//! cargo run --example verify_lease -- <jwks.json> <lease> <tenant_id> <machine_id> <product_id> [nonce]
//! ```
//!
//! The lease may be given as `-` to read it from standard input.

use std::io::Read as _;
use std::process::ExitCode;

use keystead_verify::{Expected, PublicKeys, verify_now};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(5..=6).contains(&args.len()) {
        eprintln!(
            "usage: verify_lease <jwks.json> <lease|-> <tenant_id> <machine_id> <product_id> [nonce]"
        );
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(claims) => {
            println!("{claims}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("refused: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let jwks = std::fs::read_to_string(&args[0]).map_err(|e| format!("{}: {e}", args[0]))?;
    let keys = PublicKeys::from_jwks_json(&jwks).map_err(|e| e.to_string())?;
    let mut lease = args[1].clone();
    if lease == "-" {
        lease.clear();
        std::io::stdin()
            .read_to_string(&mut lease)
            .map_err(|e| format!("stdin: {e}"))?;
    }
    let mut expected = Expected::new(&args[2], &args[4], &args[3]);
    if let Some(nonce) = args.get(5) {
        expected = expected.nonce(nonce);
    }
    let claims = verify_now(lease.trim(), &keys, &expected).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())
}
