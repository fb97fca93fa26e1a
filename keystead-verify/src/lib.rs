//! Offline verification of keystead license leases.
//!
//! keystead's license API answers `activate` and `validate` with a signed *lease*: a JWS compact token
//! (a JWT) signed with the tenant's Ed25519 key. A desktop app keeps the lease and checks it with
//! [`verify`] (or [`verify_now`]) against the tenant's published public keys ([`PublicKeys`]), so it can
//! run offline until the lease's `exp`.
//!
//! The format is fixed:
//!
//! * header `{"alg":"EdDSA","kid":"<kid>","typ":"keystead-lease+jwt"}`;
//! * claims [`LeaseClaims`]: `iss` (tenant id), `sub` (license id), `product_id`, `machine_id`, `status`,
//!   `entitlements`, `license_expires_at`, `iat`, `exp` and an optional `nonce`;
//! * signature: Ed25519 over the ASCII bytes `base64url(header) "." base64url(claims)`, all three parts
//!   base64url without padding (RFC 7515);
//! * public keys: a JWKS (RFC 7517) of OKP/Ed25519 keys (RFC 8037), see [`Jwks`] and [`Jwk`].
//!
//! The algorithm is pinned to EdDSA: the token's `alg` is compared with it and never used to pick one,
//! so `none` and `HS256` tokens are refused before any key is touched.
//!
//! The server builds leases with [`signing_input`] and [`assemble`] (or [`sign`] with the `sign` feature),
//! so the format is defined in this crate only.
//!
//! # Example
//!
//! ```
//! use keystead_verify::ed25519_dalek::{Signer, SigningKey};
//! use keystead_verify::{Error, Expected, Jwk, Jwks, LeaseClaims, PublicKeys, assemble, signing_input, verify};
//!
//! // Server side: sign a lease with the tenant's key (normally done by keystead).
//! let signing_key = SigningKey::from_bytes(&[7; 32]);
//! let claims = LeaseClaims {
//!     iss: "acme".into(),
//!     sub: "lic_123".into(),
//!     product_id: "myapp".into(),
//!     machine_id: "studio-mac".into(),
//!     status: "active".into(),
//!     entitlements: vec!["pro".into()],
//!     license_expires_at: None,
//!     iat: 1_700_000_000,
//!     exp: 1_700_000_000 + 7 * 24 * 3600,
//!     nonce: Some("n-42".into()),
//! };
//! let input = signing_input("2024-01", &claims).unwrap();
//! let token = assemble(&input, &signing_key.sign(input.as_bytes()).to_bytes());
//! let jwks = Jwks {
//!     keys: vec![Jwk::ed25519("2024-01", signing_key.verifying_key().as_bytes())],
//! };
//! let jwks_json = serde_json::to_string(&jwks).unwrap();
//!
//! // App side: the JWKS is shipped with the app; the lease comes from `activate`/`validate`.
//! let keys = PublicKeys::from_jwks_json(&jwks_json)?;
//! let expected = Expected::new("acme", "myapp", "studio-mac").nonce("n-42");
//! let lease = verify(&token, &keys, &expected, 1_700_000_100)?;
//! assert!(lease.entitlements.iter().any(|e| e == "pro"));
//!
//! // Another machine's lease, or one past its `exp`, is refused.
//! let other = Expected::new("acme", "myapp", "laptop").nonce("n-42");
//! assert_eq!(verify(&token, &keys, &other, 1_700_000_100), Err(Error::WrongMachine));
//! assert_eq!(verify(&token, &keys, &expected, claims.exp + 3600), Err(Error::Expired));
//! # Ok::<(), Error>(())
//! ```

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The `ed25519-dalek` version this crate uses, re-exported so the server signs with the same types.
pub use ed25519_dalek;

/// The only JWS algorithm accepted (and produced).
pub const ALG: &str = "EdDSA";

/// The JWS `typ` header of a lease.
pub const LEASE_TYP: &str = "keystead-lease+jwt";

/// The only `status` a usable lease carries.
pub const STATUS_ACTIVE: &str = "active";

/// How far the app's clock may be behind (for `iat`) or ahead (for `exp`) of the server's, in seconds.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// Why a lease (or a key set) was refused. Each check of [`verify`] has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a JWS compact token: wrong number of segments, bad base64url, header or claims that do not
    /// decode. The text says which part.
    #[error("malformed lease: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `EdDSA` (for example `none` or `HS256`).
    #[error("unsupported algorithm {0:?}: only EdDSA is accepted")]
    UnsupportedAlgorithm(String),
    /// The header's `typ` is missing or not `keystead-lease+jwt`.
    #[error("not a keystead lease (typ is not {LEASE_TYP})")]
    WrongType,
    /// No public key has the header's `kid`: refresh the JWKS.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The Ed25519 signature does not verify: the token was altered or signed by another key.
    #[error("bad signature")]
    BadSignature,
    /// `iss` is not the expected tenant.
    #[error("lease issued by another tenant")]
    WrongIssuer,
    /// `product_id` is not the expected product.
    #[error("lease is for another product")]
    WrongProduct,
    /// `machine_id` is not this machine.
    #[error("lease is for another machine")]
    WrongMachine,
    /// The app sent a nonce and the lease does not carry that nonce (or none).
    #[error("lease does not answer this request (nonce mismatch)")]
    WrongNonce,
    /// `iat` is later than now plus the clock-skew allowance.
    #[error("lease issued in the future (check the system clock)")]
    NotYetValid,
    /// `exp` has passed, beyond the clock-skew allowance.
    #[error("lease expired")]
    Expired,
    /// The license is not active (revoked, suspended, expired…); the status is given.
    #[error("license is not active (status {0:?})")]
    NotActive(String),
    /// A JWKS that does not parse, or an Ed25519 entry in it that is unusable.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
    /// A public key that is not a valid Ed25519 point (or is a weak, small-order one).
    #[error("invalid Ed25519 public key")]
    InvalidKey,
}

/// The claims of a lease. Field names are the wire names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClaims {
    /// The tenant id (the seller's account on keystead).
    pub iss: String,
    /// The license id.
    pub sub: String,
    /// The product the license is for.
    pub product_id: String,
    /// The machine the lease was issued to.
    pub machine_id: String,
    /// The license status, `"active"` for a usable lease.
    pub status: String,
    /// What the license unlocks; may be empty.
    pub entitlements: Vec<String>,
    /// When the license itself ends (RFC 3339), `null` for a perpetual license. Informational: the
    /// lease's `exp` is what [`verify`] enforces.
    pub license_expires_at: Option<String>,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// The nonce the app sent with its request, echoed; absent when it sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// One public key of a JWKS: an OKP/Ed25519 key (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, `"OKP"`.
    pub kty: String,
    /// Curve, `"Ed25519"`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Key id, matched against the lease header's `kid`.
    pub kid: String,
    /// Public key use, `"sig"`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Algorithm, `"EdDSA"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl Jwk {
    /// The JWK publishing an Ed25519 public key under `kid`.
    pub fn ed25519(kid: &str, public_key: &[u8; 32]) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(public_key),
            kid: kid.to_owned(),
            use_: Some("sig".to_owned()),
            alg: Some(ALG.to_owned()),
        }
    }
}

/// A JWK set, `{"keys":[…]}`, as served at `GET <API>/v1/<tenant_id>/jwks.json`.
///
/// For publishing. To read a set that may hold other kinds of keys, use [`PublicKeys::from_jwks_json`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// The verifying keys an app trusts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl PublicKeys {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key` (32 bytes) under `kid`, replacing a key of the same `kid`.
    ///
    /// Fails with [`Error::InvalidKey`] for bytes that are not an Ed25519 point or are a weak key.
    pub fn insert(&mut self, kid: impl Into<String>, public_key: [u8; 32]) -> Result<(), Error> {
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| Error::InvalidKey)?;
        if key.is_weak() {
            return Err(Error::InvalidKey);
        }
        self.keys.insert(kid.into(), key);
        Ok(())
    }

    /// Reads a JWKS document.
    ///
    /// Keys that are not `kty` `OKP` with `crv` `Ed25519`, or whose `alg` is present and not `EdDSA`, or
    /// whose `use` is present and not `sig`, are ignored (a set may publish other keys). The Ed25519
    /// signing keys that remain must each have a `kid` (unique in the set) and a valid 32-byte `x`, and
    /// there must be at least one: otherwise [`Error::InvalidJwks`].
    pub fn from_jwks_json(json: &str) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet =
            serde_json::from_str(json).map_err(|e| Error::InvalidJwks(e.to_string()))?;
        let mut keys = PublicKeys::new();
        for raw in set.keys {
            let member = |name: &str| raw.get(name).and_then(serde_json::Value::as_str);
            let absent_or =
                |name: &str, wanted: &str| raw.get(name).is_none_or(|v| v.as_str() == Some(wanted));
            if member("kty") != Some("OKP")
                || member("crv") != Some("Ed25519")
                || !absent_or("alg", ALG)
                || !absent_or("use", "sig")
            {
                continue;
            }
            let jwk: Jwk = serde_json::from_value(raw)
                .map_err(|e| Error::InvalidJwks(format!("Ed25519 key: {e}")))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .ok()
                .and_then(|x| <[u8; 32]>::try_from(x).ok())
                .ok_or_else(|| {
                    Error::InvalidJwks(format!("key {:?}: x is not 32 base64url bytes", jwk.kid))
                })?;
            if keys.keys.contains_key(&jwk.kid) {
                return Err(Error::InvalidJwks(format!("duplicate kid {:?}", jwk.kid)));
            }
            keys.insert(jwk.kid.clone(), bytes).map_err(|_| {
                Error::InvalidJwks(format!("key {:?}: not a valid Ed25519 key", jwk.kid))
            })?;
        }
        if keys.is_empty() {
            return Err(Error::InvalidJwks("no Ed25519 signing key".to_owned()));
        }
        Ok(keys)
    }

    /// Whether a key has this `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key ids, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What the app expects of a lease. The product is required: an app that accepted any product of the seller
/// would accept a license for the seller's cheapest product.
///
/// ```
/// # use keystead_verify::Expected;
/// let expected = Expected::new("acme", "myapp", "studio-mac").nonce("8f3c…");
/// assert_eq!(expected.product_id, "myapp");
/// // An app sold in tiers that are products of their own accepts each of them.
/// let tiered = Expected::new("acme", "myapp", "studio-mac").or_products(&["myapp-team", "myapp-studio"]);
/// assert!(tiered.accepts_product("myapp-team") && !tiered.accepts_product("otherapp"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The seller's tenant id, compared with `iss`.
    pub tenant_id: &'a str,
    /// The product id, compared with `product_id`.
    pub product_id: &'a str,
    /// Other product ids this app accepts too (tiers the seller set up as products of their own).
    pub other_products: &'a [&'a str],
    /// This machine's id, compared with `machine_id`.
    pub machine_id: &'a str,
    /// The nonce the app sent with the request that returned this lease, compared with `nonce` when
    /// given (a lease without a nonce is then refused). `None` for a stored lease checked at startup.
    pub nonce: Option<&'a str>,
}

impl<'a> Expected<'a> {
    /// Expects a lease of `tenant_id` for `product_id` and `machine_id`, without a nonce check.
    pub fn new(tenant_id: &'a str, product_id: &'a str, machine_id: &'a str) -> Self {
        Expected {
            tenant_id,
            product_id,
            other_products: &[],
            machine_id,
            nonce: None,
        }
    }

    /// Also accepts leases of these products (an app sold in tiers that are products of their own).
    pub fn or_products(mut self, product_ids: &'a [&'a str]) -> Self {
        self.other_products = product_ids;
        self
    }

    /// Whether a lease of `product_id` is one this app accepts.
    pub fn accepts_product(&self, product_id: &str) -> bool {
        self.product_id == product_id || self.other_products.contains(&product_id)
    }

    /// Also expects this `nonce` (the one just sent to `activate`/`validate`).
    pub fn nonce(mut self, nonce: &'a str) -> Self {
        self.nonce = Some(nonce);
        self
    }
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// The header as read from a token: every member optional so each check reports its own error.
#[derive(Deserialize)]
struct ReadHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

fn b64_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(value)?))
}

/// The JWS signing input of a lease, `base64url(header) "." base64url(claims)`, with the header
/// `{"alg":"EdDSA","kid":<kid>,"typ":"keystead-lease+jwt"}`. The server signs its ASCII bytes with Ed25519
/// and passes the signature to [`assemble`]. Serializing the header and claims (strings, integers, a list
/// of strings) does not fail in practice; the error is returned rather than assumed away, since the server
/// calls this on a request path.
pub fn signing_input(kid: &str, claims: &LeaseClaims) -> Result<String, serde_json::Error> {
    let header = Header {
        alg: ALG,
        kid,
        typ: LEASE_TYP,
    };
    Ok(format!("{}.{}", b64_json(&header)?, b64_json(claims)?))
}

/// The compact token: `signing_input "." base64url(signature)`.
pub fn assemble(signing_input: &str, signature: &[u8; 64]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Signs a lease: [`signing_input`], Ed25519 with `key`, [`assemble`]. For the server, tests and demos
/// (feature `sign`).
#[cfg(feature = "sign")]
pub fn sign(
    kid: &str,
    claims: &LeaseClaims,
    key: &ed25519_dalek::SigningKey,
) -> Result<String, serde_json::Error> {
    use ed25519_dalek::Signer as _;
    let input = signing_input(kid, claims)?;
    let signature = key.sign(input.as_bytes());
    Ok(assemble(&input, &signature.to_bytes()))
}

/// Verifies a lease at time `now_unix` (unix seconds) and returns its claims.
///
/// Checks, in order: three segments; the header decodes; `alg` is exactly `EdDSA`; `typ` is
/// `keystead-lease+jwt`; `kid` is one of `keys`; the Ed25519 signature verifies (strictly); the claims
/// decode; `iss` is the expected tenant; `product_id` is one the app accepts; `machine_id` is
/// this machine; `nonce` is the expected one (when given); `iat` is not later than `now_unix` plus
/// [`CLOCK_SKEW_SECONDS`]; `exp` plus [`CLOCK_SKEW_SECONDS`] is later than `now_unix`; `status` is
/// `active`. The first failing check gives the error.
pub fn verify(
    token: &str,
    keys: &PublicKeys,
    expected: &Expected<'_>,
    now_unix: i64,
) -> Result<LeaseClaims, Error> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("a lease has three dot-separated segments"));
    };

    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| Error::Malformed("header is not base64url"))?;
    let header: ReadHeader = serde_json::from_slice(&header_json)
        .map_err(|_| Error::Malformed("header is not a JSON object of strings"))?;
    let alg = header.alg.ok_or(Error::Malformed("header has no alg"))?;
    if alg != ALG {
        return Err(Error::UnsupportedAlgorithm(alg));
    }
    if header.typ.as_deref() != Some(LEASE_TYP) {
        return Err(Error::WrongType);
    }
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not understand must be refused; keystead uses none.
        return Err(Error::Malformed("header has crit"));
    }
    let kid = header.kid.ok_or(Error::Malformed("header has no kid"))?;
    let key = keys.keys.get(&kid).ok_or(Error::UnknownKey(kid))?;

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .ok_or(Error::BadSignature)?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| Error::BadSignature)?;

    let claims_json = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| Error::Malformed("claims are not base64url"))?;
    let claims: LeaseClaims = serde_json::from_slice(&claims_json)
        .map_err(|_| Error::Malformed("claims do not decode"))?;

    if claims.iss != expected.tenant_id {
        return Err(Error::WrongIssuer);
    }
    if !expected.accepts_product(&claims.product_id) {
        return Err(Error::WrongProduct);
    }
    if claims.machine_id != expected.machine_id {
        return Err(Error::WrongMachine);
    }
    if let Some(nonce) = expected.nonce
        && claims.nonce.as_deref() != Some(nonce)
    {
        return Err(Error::WrongNonce);
    }
    if claims.iat > now_unix.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(Error::NotYetValid);
    }
    if claims.exp.saturating_add(CLOCK_SKEW_SECONDS) <= now_unix {
        return Err(Error::Expired);
    }
    if claims.status != STATUS_ACTIVE {
        return Err(Error::NotActive(claims.status));
    }
    Ok(claims)
}

/// [`verify`] at the system clock's current time.
pub fn verify_now(
    token: &str,
    keys: &PublicKeys,
    expected: &Expected<'_>,
) -> Result<LeaseClaims, Error> {
    verify(token, keys, expected, unix_now())
}

/// The system clock in unix seconds (negative before 1970).
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests;
