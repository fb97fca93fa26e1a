use super::*;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const NOW: i64 = 1_750_000_000;
const KID: &str = "k1";
const TENANT: &str = "acme";
const PRODUCT: &str = "myapp";
const MACHINE: &str = "studio-mac";
const NONCE: &str = "c2b1e0f4a9";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn claims() -> LeaseClaims {
    LeaseClaims {
        iss: TENANT.to_owned(),
        sub: "lic_01".to_owned(),
        product_id: PRODUCT.to_owned(),
        machine_id: MACHINE.to_owned(),
        status: "active".to_owned(),
        entitlements: vec!["pro".to_owned(), "export".to_owned()],
        license_expires_at: Some("2026-06-01T00:00:00Z".to_owned()),
        iat: NOW - 10,
        exp: NOW + 3600,
        nonce: Some(NONCE.to_owned()),
    }
}

/// The server's path: `signing_input`, Ed25519, `assemble`.
fn lease(kid: &str, claims: &LeaseClaims, key: &SigningKey) -> String {
    let input = signing_input(kid, claims).unwrap();
    assemble(&input, &key.sign(input.as_bytes()).to_bytes())
}

fn keys() -> PublicKeys {
    let mut keys = PublicKeys::new();
    keys.insert(KID, key(1).verifying_key().to_bytes()).unwrap();
    keys
}

fn expected() -> Expected<'static> {
    Expected::new(TENANT, PRODUCT, MACHINE).nonce(NONCE)
}

fn check(claims: &LeaseClaims, now: i64) -> Result<LeaseClaims, Error> {
    verify(&lease(KID, claims, &key(1)), &keys(), &expected(), now)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[test]
fn a_valid_lease_verifies() {
    assert_eq!(check(&claims(), NOW), Ok(claims()));
}

#[test]
fn a_stored_lease_verifies_without_a_nonce() {
    let token = lease(KID, &claims(), &key(1));
    let expected = Expected::new(TENANT, PRODUCT, MACHINE);
    assert_eq!(verify(&token, &keys(), &expected, NOW), Ok(claims()));
}

#[test]
fn wire_format_is_the_contract() {
    let mut c = claims();
    c.nonce = None;
    c.license_expires_at = None;
    c.entitlements = vec![];
    let token = lease("2025-01", &c, &key(1));
    let parts = segments(&token);
    assert_eq!(parts.len(), 3);
    let header = URL_SAFE_NO_PAD.decode(&parts[0]).unwrap();
    assert_eq!(
        std::str::from_utf8(&header).unwrap(),
        r#"{"alg":"EdDSA","kid":"2025-01","typ":"keystead-lease+jwt"}"#
    );
    let body = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"iss":"acme","sub":"lic_01","product_id":"myapp","machine_id":"studio-mac","status":"active","entitlements":[],"license_expires_at":null,"iat":1749999990,"exp":1750003600}"#
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&parts[2]).unwrap().len(), 64);
    assert!(!token.contains('='));
    // No padding, URL alphabet.
    assert!(
        token
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    );
}

#[test]
fn claims_deserialize_with_missing_nonce_and_extra_members() {
    let json = r#"{"iss":"a","sub":"s","product_id":"p","machine_id":"m","status":"active",
        "entitlements":[],"license_expires_at":null,"iat":1,"exp":2,"future_claim":true}"#;
    let c: LeaseClaims = serde_json::from_str(json).unwrap();
    assert_eq!(c.nonce, None);
    assert_eq!(c.license_expires_at, None);
}

#[test]
fn tampered_claims_fail() {
    let token = lease(KID, &claims(), &key(1));
    let parts = segments(&token);
    let mut forged = claims();
    forged.entitlements.push("enterprise".to_owned());
    let forged_b64 = b64(&serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged_b64, parts[2]);
    assert_eq!(
        verify(&tampered, &keys(), &expected(), NOW),
        Err(Error::BadSignature)
    );
}

#[test]
fn tampered_header_or_signature_fail() {
    let token = lease(KID, &claims(), &key(1));
    let parts = segments(&token);
    // Same header semantics, different bytes (a space): the signature covers the bytes.
    let header = b64(br#"{"alg":"EdDSA", "kid":"k1","typ":"keystead-lease+jwt"}"#);
    let respaced = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(
        verify(&respaced, &keys(), &expected(), NOW),
        Err(Error::BadSignature)
    );

    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(
        verify(&flipped, &keys(), &expected(), NOW),
        Err(Error::BadSignature)
    );

    let short = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..63]));
    assert_eq!(
        verify(&short, &keys(), &expected(), NOW),
        Err(Error::BadSignature)
    );
}

#[test]
fn signed_by_another_key_fails() {
    let token = lease(KID, &claims(), &key(2));
    assert_eq!(
        verify(&token, &keys(), &expected(), NOW),
        Err(Error::BadSignature)
    );
}

#[test]
fn expiry_honours_the_clock_skew() {
    let c = claims();
    assert!(check(&c, c.exp - 1).is_ok());
    assert!(check(&c, c.exp).is_ok());
    assert!(check(&c, c.exp + CLOCK_SKEW_SECONDS - 1).is_ok());
    assert_eq!(check(&c, c.exp + CLOCK_SKEW_SECONDS), Err(Error::Expired));
    assert_eq!(check(&c, c.exp + 86_400), Err(Error::Expired));
}

#[test]
fn iat_in_the_future_fails_beyond_the_skew() {
    let mut c = claims();
    c.iat = NOW + CLOCK_SKEW_SECONDS;
    assert!(check(&c, NOW).is_ok());
    c.iat = NOW + CLOCK_SKEW_SECONDS + 1;
    assert_eq!(check(&c, NOW), Err(Error::NotYetValid));
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut c = claims();
    c.exp = i64::MAX;
    assert!(check(&c, NOW).is_ok());
    c.exp = i64::MIN;
    assert_eq!(check(&c, NOW), Err(Error::Expired));
    let mut c = claims();
    c.iat = i64::MAX;
    assert_eq!(check(&c, NOW), Err(Error::NotYetValid));
    assert_eq!(check(&claims(), i64::MAX), Err(Error::Expired));
}

#[test]
fn wrong_machine_fails() {
    let mut c = claims();
    c.machine_id = "laptop".to_owned();
    assert_eq!(check(&c, NOW), Err(Error::WrongMachine));
}

#[test]
fn another_product_fails_unless_the_app_accepts_it_too() {
    let mut c = claims();
    c.product_id = "otherapp".to_owned();
    assert_eq!(check(&c, NOW), Err(Error::WrongProduct));
    let token = lease(KID, &c, &key(1));
    let tiers = ["myapp-team", "otherapp"];
    let tiered = Expected::new(TENANT, PRODUCT, MACHINE)
        .or_products(&tiers)
        .nonce(NONCE);
    assert!(verify(&token, &keys(), &tiered, NOW).is_ok());
    let others = ["myapp-team"];
    let not_it = Expected::new(TENANT, PRODUCT, MACHINE)
        .or_products(&others)
        .nonce(NONCE);
    assert_eq!(
        verify(&token, &keys(), &not_it, NOW),
        Err(Error::WrongProduct)
    );
}

#[test]
fn wrong_tenant_fails() {
    let mut c = claims();
    c.iss = "evilcorp".to_owned();
    assert_eq!(check(&c, NOW), Err(Error::WrongIssuer));
}

#[test]
fn wrong_or_missing_nonce_fails() {
    let mut c = claims();
    c.nonce = Some("replayed".to_owned());
    assert_eq!(check(&c, NOW), Err(Error::WrongNonce));
    c.nonce = None;
    assert_eq!(check(&c, NOW), Err(Error::WrongNonce));
    // A nonce in the lease is fine when the app checks a stored lease without one.
    let token = lease(KID, &claims(), &key(1));
    assert!(
        verify(
            &token,
            &keys(),
            &Expected::new(TENANT, PRODUCT, MACHINE),
            NOW
        )
        .is_ok()
    );
}

#[test]
fn non_active_status_fails() {
    for status in ["revoked", "suspended", "expired", "Active", ""] {
        let mut c = claims();
        c.status = status.to_owned();
        assert_eq!(check(&c, NOW), Err(Error::NotActive(status.to_owned())));
    }
}

#[test]
fn unknown_kid_fails() {
    let token = lease("k9", &claims(), &key(1));
    assert_eq!(
        verify(&token, &keys(), &expected(), NOW),
        Err(Error::UnknownKey("k9".to_owned()))
    );
}

#[test]
fn alg_none_is_refused() {
    let c = b64(&serde_json::to_vec(&claims()).unwrap());
    for header in [
        r#"{"alg":"none","kid":"k1","typ":"keystead-lease+jwt"}"#,
        r#"{"alg":"none","typ":"keystead-lease+jwt"}"#,
        r#"{"alg":"none"}"#,
    ] {
        let token = format!("{}.{c}.", b64(header.as_bytes()));
        assert_eq!(
            verify(&token, &keys(), &expected(), NOW),
            Err(Error::UnsupportedAlgorithm("none".to_owned())),
            "{header}"
        );
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let public = key(1).verifying_key().to_bytes();
    let jwk_x = Jwk::ed25519(KID, &public).x;
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"k1","typ":"keystead-lease+jwt"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    // The classic confusion attack: HMAC keyed with the public key (raw bytes, or its JWK text).
    for secret in [&public[..], jwk_x.as_bytes()] {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(
            verify(&token, &keys(), &expected(), NOW),
            Err(Error::UnsupportedAlgorithm("HS256".to_owned()))
        );
    }
}

#[test]
fn other_algorithm_spellings_are_refused() {
    let token = lease(KID, &claims(), &key(1));
    let parts = segments(&token);
    for alg in ["eddsa", "Ed25519", "ES256", "RS256", "EdDSA "] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k1","typ":"keystead-lease+jwt"}}"#);
        let token = format!("{}.{}.{}", b64(header.as_bytes()), parts[1], parts[2]);
        assert_eq!(
            verify(&token, &keys(), &expected(), NOW),
            Err(Error::UnsupportedAlgorithm(alg.to_owned()))
        );
    }
}

#[test]
fn wrong_typ_is_refused() {
    let token = lease(KID, &claims(), &key(1));
    let parts = segments(&token);
    for header in [
        r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#,
        r#"{"alg":"EdDSA","kid":"k1"}"#,
    ] {
        let token = format!("{}.{}.{}", b64(header.as_bytes()), parts[1], parts[2]);
        assert_eq!(
            verify(&token, &keys(), &expected(), NOW),
            Err(Error::WrongType)
        );
    }
}

#[test]
fn malformed_tokens_are_refused() {
    let token = lease(KID, &claims(), &key(1));
    let parts = segments(&token);
    let cases = [
        String::new(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.extra"),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"EdDSA","alg":"none","kid":"k1","typ":"keystead-lease+jwt"}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"kid":"k1","typ":"keystead-lease+jwt"}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"EdDSA","typ":"keystead-lease+jwt"}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"EdDSA","kid":"k1","typ":"keystead-lease+jwt","crit":["exp"]}"#),
            parts[1],
            parts[2]
        ),
    ];
    for case in cases {
        assert!(
            matches!(
                verify(&case, &keys(), &expected(), NOW),
                Err(Error::Malformed(_))
            ),
            "{case}"
        );
    }
}

#[test]
fn signed_claims_that_do_not_decode_are_malformed() {
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","kid":"k1","typ":"keystead-lease+jwt"}"#),
        b64(br#"{"iss":"acme","exp":"tomorrow"}"#)
    );
    let token = assemble(&input, &key(1).sign(input.as_bytes()).to_bytes());
    assert_eq!(
        verify(&token, &keys(), &expected(), NOW),
        Err(Error::Malformed("claims do not decode"))
    );
}

#[test]
fn jwks_with_two_keys_selects_by_kid() {
    let jwks = Jwks {
        keys: vec![
            Jwk::ed25519("old", key(1).verifying_key().as_bytes()),
            Jwk::ed25519("new", key(2).verifying_key().as_bytes()),
        ],
    };
    let keys = PublicKeys::from_jwks_json(&serde_json::to_string(&jwks).unwrap()).unwrap();
    assert_eq!(keys.len(), 2);
    let old = lease("old", &claims(), &key(1));
    let new = lease("new", &claims(), &key(2));
    assert!(verify(&old, &keys, &expected(), NOW).is_ok());
    assert!(verify(&new, &keys, &expected(), NOW).is_ok());
    // The right key is used for each kid: swapping them fails.
    let swapped = lease("old", &claims(), &key(2));
    assert_eq!(
        verify(&swapped, &keys, &expected(), NOW),
        Err(Error::BadSignature)
    );
}

#[test]
fn jwk_shape_is_the_contract() {
    let public = key(1).verifying_key().to_bytes();
    let json = serde_json::to_string(&Jwks {
        keys: vec![Jwk::ed25519("k1", &public)],
    })
    .unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k1","use":"sig","alg":"EdDSA"}}]}}"#,
            b64(&public)
        )
    );
    let parsed: Jwks = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.keys[0], Jwk::ed25519("k1", &public));
}

#[test]
fn jwks_ignores_other_key_types_and_algorithms() {
    let x1 = b64(key(1).verifying_key().as_bytes());
    let x2 = b64(key(2).verifying_key().as_bytes());
    let json = format!(
        r#"{{"keys":[
            {{"kty":"RSA","n":"0vx7","e":"AQAB","kid":"rsa","alg":"RS256"}},
            {{"kty":"EC","crv":"P-256","x":"f83O","y":"x_FE","kid":"ec"}},
            {{"kty":"OKP","crv":"X25519","x":"{x1}","kid":"xdh"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x1}","kid":"wrong-alg","alg":"HS256"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x1}","kid":"enc","use":"enc"}},
            {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x2}","kid":"bare"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x1}","kid":"k1","use":"sig","alg":"EdDSA","ext":true}}
        ]}}"#
    );
    let keys = PublicKeys::from_jwks_json(&json).unwrap();
    let mut kids: Vec<&str> = keys.kids().collect();
    kids.sort_unstable();
    assert_eq!(kids, ["bare", "k1"]);
    assert!(verify(&lease(KID, &claims(), &key(1)), &keys, &expected(), NOW).is_ok());
    assert_eq!(
        verify(&lease("rsa", &claims(), &key(1)), &keys, &expected(), NOW),
        Err(Error::UnknownKey("rsa".to_owned()))
    );
}

#[test]
fn invalid_jwks_are_refused() {
    let x1 = b64(key(1).verifying_key().as_bytes());
    let short = b64(&[1; 31]);
    let cases = [
        "not json".to_owned(),
        "{}".to_owned(),
        r#"{"keys":{}}"#.to_owned(),
        r#"{"keys":[]}"#.to_owned(),
        r#"{"keys":[{"kty":"RSA","n":"0vx7","e":"AQAB","kid":"rsa"}]}"#.to_owned(),
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x1}"}}]}}"#),
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{short}","kid":"a"}}]}}"#),
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x1}=","kid":"a"}}]}}"#),
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x1}","kid":"a"}},{{"kty":"OKP","crv":"Ed25519","x":"{x1}","kid":"a"}}]}}"#
        ),
        // The identity point: a weak (small-order) key.
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"a"}}]}}"#,
            b64(&identity())
        ),
    ];
    for case in cases {
        assert!(
            matches!(
                PublicKeys::from_jwks_json(&case),
                Err(Error::InvalidJwks(_))
            ),
            "{case}"
        );
    }
}

fn identity() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[0] = 1;
    bytes
}

#[test]
fn insert_refuses_weak_keys() {
    let mut keys = PublicKeys::new();
    assert_eq!(keys.insert("a", identity()), Err(Error::InvalidKey));
    assert!(keys.is_empty());
    keys.insert("a", key(1).verifying_key().to_bytes()).unwrap();
    assert!(keys.contains("a"));
}

#[test]
fn verify_now_uses_the_system_clock() {
    let now = unix_now();
    assert!(now > 1_700_000_000);
    let mut c = claims();
    c.iat = now;
    c.exp = now + 600;
    let token = lease(KID, &c, &key(1));
    assert_eq!(verify_now(&token, &keys(), &expected()), Ok(c.clone()));
    c.iat = now - 7200;
    c.exp = now - 3600;
    let token = lease(KID, &c, &key(1));
    assert_eq!(
        verify_now(&token, &keys(), &expected()),
        Err(Error::Expired)
    );
}

#[cfg(feature = "sign")]
#[test]
fn sign_matches_signing_input_and_assemble() {
    let token = sign(KID, &claims(), &key(1)).unwrap();
    assert_eq!(token, lease(KID, &claims(), &key(1)));
    assert!(verify(&token, &keys(), &expected(), NOW).is_ok());
}

#[test]
fn errors_explain_themselves() {
    assert_eq!(
        Error::UnsupportedAlgorithm("none".to_owned()).to_string(),
        r#"unsupported algorithm "none": only EdDSA is accepted"#
    );
    assert_eq!(
        Error::NotActive("revoked".to_owned()).to_string(),
        r#"license is not active (status "revoked")"#
    );
}
