//! Secret material: license keys and webhook tokens, drawn from the OS CSPRNG, hashed with SHA-256 for storage
//! and lookups, and never printed by `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{KeyHash, KeyPrefix};

/// Crockford's base32 alphabet: no I, L, O or U, so keys survive being read aloud or retyped.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Six groups of five base32 characters: 150 bits of entropy after the prefix.
const KEY_GROUPS: usize = 6;
const GROUP_LEN: usize = 5;

/// The OS CSPRNG failed: there is no key without it, so the request fails (retryably) instead of panicking.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(String);

/// `N` bytes from the OS CSPRNG: key material (signing keys, nonces).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(bytes)
}

/// Random Crockford base32 characters; each byte's low five bits pick one (256 is a multiple of 32: no bias).
fn random_base32<const N: usize>() -> Result<[u8; N], RandomnessError> {
    Ok(random_bytes::<N>()?.map(|b| CROCKFORD[usize::from(b & 31)]))
}

/// A random opaque identifier such as `lic_7q4zk0m3trxw9bdh6y2p`, with 100 bits of entropy.
pub fn random_id(prefix: &str) -> Result<String, RandomnessError> {
    let chars = random_base32::<20>()?;
    let body: String = chars
        .iter()
        .map(|&c| char::from(c.to_ascii_lowercase()))
        .collect();
    Ok(format!("{prefix}_{body}"))
}

/// Lower-case hex SHA-256 of a secret, the only form in which tokens are stored and keys are looked up.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A license key: `PREFIX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
#[derive(Clone, PartialEq, Eq)]
pub struct LicenseKey(String);

impl LicenseKey {
    pub fn generate(prefix: &KeyPrefix) -> Result<Self, RandomnessError> {
        let chars = random_base32::<{ KEY_GROUPS * GROUP_LEN }>()?;
        let mut key = String::with_capacity(prefix.as_str().len() + KEY_GROUPS * (GROUP_LEN + 1));
        key.push_str(prefix.as_str());
        for group in chars.chunks(GROUP_LEN) {
            key.push('-');
            key.extend(group.iter().map(|&c| char::from(c)));
        }
        Ok(Self(key))
    }

    /// Wraps a key received from a client or read from storage; only its hash is used to find it.
    pub fn from_string(key: String) -> Self {
        Self(key)
    }

    /// True when `key` has the shape `generate` produces.
    pub fn is_well_formed(key: &str) -> bool {
        let mut parts = key.split('-');
        let prefix_ok = parts.next().is_some_and(|p| KeyPrefix::parse(p).is_ok());
        let groups: Vec<&str> = parts.collect();
        prefix_ok
            && groups.len() == KEY_GROUPS
            && groups
                .iter()
                .all(|g| g.len() == GROUP_LEN && g.bytes().all(|b| CROCKFORD.contains(&b)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::from_stored(sha256_hex(&self.0))
    }

    /// The key as it may be shown where the key itself must not be (webhook payloads, the audit log): its first
    /// group and its last four characters, `MYAPP-…-7QXZ`. Too little to use, enough for a buyer to recognise.
    pub fn display(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "…".to_owned();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        match self.0.split_once('-') {
            Some((head, _)) if head.chars().count() <= 12 => format!("{head}-…-{tail}"),
            _ => format!("…{tail}"),
        }
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseKey(<redacted>)")
    }
}

/// A tenant's webhook token. Shown to the seller once, stored only as its SHA-256.
#[derive(Clone)]
pub struct WebhookToken(String);

impl WebhookToken {
    /// 160 random bits in lower-case base32 (32 characters), URL-safe as a query value or a password.
    pub fn generate() -> Result<Self, RandomnessError> {
        let chars = random_base32::<32>()?;
        Ok(Self(
            chars
                .iter()
                .map(|&c| char::from(c.to_ascii_lowercase()))
                .collect(),
        ))
    }

    pub fn from_string(token: String) -> Self {
        Self(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookToken(<redacted>)")
    }
}

/// The SHA-256 of a webhook token, as stored on the tenant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn from_hex(hex_digest: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut out).ok()?;
        Some(Self(out))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time equality: the time taken does not depend on where the hashes differ.
    pub fn ct_matches(&self, other: &TokenHash) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn prefix(p: &str) -> KeyPrefix {
        KeyPrefix::parse(p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let key = LicenseKey::generate(&prefix("ACME")).unwrap();
        let text = key.expose();
        assert_eq!(text.len(), 4 + 6 * 6);
        assert!(text.starts_with("ACME-"));
        assert!(LicenseKey::is_well_formed(text), "{text}");
        assert!(!text.contains(['I', 'L', 'O', 'U']));
    }

    #[test]
    fn keys_do_not_repeat() {
        let p = prefix("K");
        let keys: HashSet<String> = (0..10_000)
            .map(|_| LicenseKey::generate(&p).unwrap().expose().to_owned())
            .collect();
        assert_eq!(keys.len(), 10_000);
    }

    #[test]
    fn malformed_keys_are_recognised() {
        for bad in [
            "",
            "ACME",
            "ACME-AAAAA",
            "acme-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA",
            "ACME-AAAAI-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA",
        ] {
            assert!(!LicenseKey::is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let token = WebhookToken::generate().unwrap();
        assert!(!format!("{token:?}").contains(token.expose()));
        let key = LicenseKey::generate(&prefix("ACME")).unwrap();
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn token_hashes_round_trip_and_compare() {
        let token = WebhookToken::generate().unwrap();
        let hash = token.hash();
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert!(bool::from(hash.ct_matches(&token.hash())));
        assert!(!bool::from(
            hash.ct_matches(&WebhookToken::generate().unwrap().hash())
        ));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }
}
