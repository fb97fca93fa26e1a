//! What a desktop app needs from keystead, in Rust: activate a license on this machine, keep the signed lease it
//! answers with, check it offline ([`Client::status`]), validate online, free the seat, and find, download and
//! install updates from the license-gated JSON feed.
//!
//! ```no_run
//! use keystead_client::{Client, Error};
//!
//! let client = Client::builder("https://licenses.example.com", "acme", "myapp").build()?;
//! match client.status() {
//!     Ok(lease) => println!("licensed: {:?}", lease.entitlements),
//!     Err(_) => {
//!         let answer = client.activate("ACME-…", Some("Jane's laptop"))?;
//!         println!("activated: {}", answer.valid);
//!     }
//! }
//! if let Some(update) = client.check_update("1.4.0", "linux", "x86_64", "stable")? {
//!     client.download(&update, "/tmp/myapp-update.tar.gz".as_ref(), None)?;
//! }
//! # Ok::<(), Error>(())
//! ```
//!
//! Leases are verified by [`keystead_verify`] (EdDSA pinned, the tenant's JWKS, `exp` with a 60-second skew
//! allowance, the tenant, product and machine). The client is blocking; with the `async` feature every call has
//! an `_async` twin that runs it on tokio's blocking pool.

mod machine;
mod store;
mod updates;

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keystead_verify::{Expected, LeaseClaims, PublicKeys};
use serde::{Deserialize, Serialize};

pub use machine::machine_id;
pub use store::{FileLeaseStore, LeaseStore, MemoryLeaseStore, Stored};
pub use updates::{Downloaded, Release, ReleaseFile, apply_patch};

/// Everything a call can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key names no license of this product (or none was activated on this machine).
    #[error("invalid license key")]
    Invalid,
    #[error("license expired")]
    /// The license has expired.
    Expired,
    #[error("license suspended")]
    /// The seller suspended the license.
    Suspended,
    #[error("license revoked")]
    /// The license was revoked (a refund, a dispute, the seller).
    Revoked,
    /// Every seat of the license is taken: deactivate another machine first.
    #[error("every seat of this license is in use")]
    SeatsFull,
    /// keystead could not be reached, but the stored lease is good until its `exp`: keep working.
    #[error("offline; the stored lease is valid until {}", .0.exp)]
    OfflineWithValidLease(Box<LeaseClaims>),
    /// keystead could not be reached and there is no usable lease.
    #[error("offline and no valid lease")]
    OfflineWithoutLease,
    /// The stored (or answered) lease does not verify: the kind says why (see [`Error::kind`]).
    #[error("lease refused: {0}")]
    Lease(#[from] keystead_verify::Error),
    /// keystead answered something else (a 4xx this client did not expect, a 5xx): the message says what.
    #[error("keystead answered {status}: {message}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// keystead's `error`, or what was wrong with the answer.
        message: String,
    },
    /// A download that does not match its published size or SHA-256, or a patch that does not apply.
    #[error("download: {0}")]
    Download(String),
    #[error(transparent)]
    /// The lease store or a downloaded file could not be read or written.
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable name for the error (the shared test vectors' kinds for lease errors).
    pub fn kind(&self) -> &'static str {
        use keystead_verify::Error as V;
        match self {
            Self::Invalid => "invalid",
            Self::Expired | Self::Lease(V::Expired) => "expired",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
            Self::SeatsFull => "seats_full",
            Self::OfflineWithValidLease(_) => "offline_with_valid_lease",
            Self::OfflineWithoutLease => "offline_without_lease",
            Self::Lease(V::NotYetValid) => "not_yet_valid",
            Self::Lease(V::WrongMachine) => "wrong_machine",
            Self::Lease(V::WrongProduct) => "wrong_product",
            Self::Lease(V::WrongIssuer) => "wrong_tenant",
            Self::Lease(V::NotActive(_)) => "not_active",
            Self::Lease(V::UnknownKey(_)) => "unknown_kid",
            Self::Lease(V::UnsupportedAlgorithm(_) | V::WrongType) => "bad_algorithm",
            Self::Lease(V::BadSignature) => "bad_signature",
            Self::Lease(V::WrongNonce) => "wrong_nonce",
            Self::Lease(_) => "malformed",
            Self::Service { .. } => "service",
            Self::Download(_) => "download",
            Self::Io(_) => "io",
        }
    }
}

/// The license API's answer to `activate` and `validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// True only for an active, unexpired license.
    pub valid: bool,
    /// `active`, `expired`, `suspended` or `revoked`.
    pub status: String,
    /// The license's own product (a tier's, for a license of a tier).
    pub product_id: String,
    /// When the license ends (RFC 3339), `None` for a perpetual license.
    pub expires_at: Option<String>,
    /// How many machines may hold a seat.
    pub activation_limit: u32,
    /// How many hold one now.
    pub activations: u32,
    #[serde(default)]
    /// Whether this machine holds a seat.
    pub activated: Option<bool>,
    #[serde(default)]
    /// What the license unlocks.
    pub entitlements: Vec<String>,
    #[serde(default)]
    /// When this machine's seat ends unless renewed (products with a seat lease).
    pub seat_expires_at: Option<String>,
    #[serde(default)]
    /// The signed lease for this machine.
    pub lease: Option<String>,
}

/// Builds a [`Client`].
pub struct Builder {
    api: String,
    tenant: String,
    product: String,
    machine: Option<String>,
    store: Option<Box<dyn LeaseStore>>,
    keys: Option<String>,
    timeout: Duration,
}

impl Builder {
    /// This machine's id (default: [`machine_id`] of the product).
    pub fn machine_id(mut self, machine: impl Into<String>) -> Self {
        self.machine = Some(machine.into());
        self
    }

    /// Where the key and the last good lease are kept (default: [`FileLeaseStore::default_for`]).
    pub fn store(mut self, store: impl LeaseStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// A pinned key set (the tenant's JWKS as JSON, shipped with the app): never fetched nor refreshed.
    pub fn pinned_keys(mut self, jwks_json: impl Into<String>) -> Self {
        self.keys = Some(jwks_json.into());
        self
    }

    /// How long one request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client; fails on a malformed pinned key set or when no data directory can be found.
    pub fn build(self) -> Result<Client, Error> {
        let pinned = self
            .keys
            .as_deref()
            .map(PublicKeys::from_jwks_json)
            .transpose()?;
        let store = match self.store {
            Some(store) => store,
            None => Box::new(FileLeaseStore::default_for(&self.tenant, &self.product)?),
        };
        let machine = self.machine.unwrap_or_else(|| machine_id(&self.product));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(self.timeout))
            .build();
        Ok(Client {
            api: self.api.trim_end_matches('/').to_owned(),
            tenant: self.tenant,
            product: self.product,
            machine,
            store,
            pinned: pinned.is_some(),
            keys: Mutex::new(pinned),
            jwks: Mutex::new(None),
            agent: ureq::Agent::new_with_config(config),
        })
    }
}

/// A license on this machine, as keystead sees it and as the stored lease says offline.
pub struct Client {
    api: String,
    tenant: String,
    product: String,
    machine: String,
    store: Box<dyn LeaseStore>,
    pinned: bool,
    keys: Mutex<Option<PublicKeys>>,
    /// The key set's JSON as last fetched, kept beside the lease so that `status` works offline.
    jwks: Mutex<Option<String>>,
    agent: ureq::Agent,
}

/// An answer read off the wire: its status and body (or no answer at all).
enum Reply {
    Answered(u16, String),
    Unreachable,
}

fn nonce() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl Client {
    /// A client of the license API at `api_url` for one tenant's product.
    pub fn builder(api_url: &str, tenant_id: &str, product_id: &str) -> Builder {
        Builder {
            api: api_url.to_owned(),
            tenant: tenant_id.to_owned(),
            product: product_id.to_owned(),
            machine: None,
            store: None,
            keys: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// This machine's id as the client sends it.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    fn post(&self, action: &str, body: &serde_json::Value) -> Reply {
        let url = format!("{}/v1/{}/licenses/{action}", self.api, self.tenant);
        let sent = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string());
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                if status >= 500 {
                    Reply::Unreachable
                } else {
                    Reply::Answered(status, text)
                }
            }
            Err(_) => Reply::Unreachable,
        }
    }

    /// The refusal a 4xx answer names.
    fn refusal(status: u16, body: &str) -> Error {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.to_owned());
        match (status, message.as_str()) {
            (404, _) => Error::Invalid,
            (409, _) => Error::SeatsFull,
            (403, "License revoked") => Error::Revoked,
            (403, "License suspended") => Error::Suspended,
            (403, "License expired") => Error::Expired,
            _ => Error::Service { status, message },
        }
    }

    /// What a 200 answer means for the license: an error unless it is valid.
    fn judged(validation: &Validation) -> Result<(), Error> {
        match (validation.valid, validation.status.as_str()) {
            (true, _) => Ok(()),
            (false, "revoked") => Err(Error::Revoked),
            (false, "suspended") => Err(Error::Suspended),
            (false, "expired") => Err(Error::Expired),
            (false, _) => Err(Error::Invalid),
        }
    }

    /// Takes a seat for this machine with `key`, keeps the key and the signed lease. Offline: the stored lease
    /// when it is for this key and still good ([`Error::OfflineWithValidLease`]), else [`Error::OfflineWithoutLease`].
    pub fn activate(&self, key: &str, label: Option<&str>) -> Result<Validation, Error> {
        let nonce = nonce()?;
        let body = serde_json::json!({
            "key": key, "product_id": self.product, "machine_id": self.machine,
            "label": label, "nonce": nonce,
        });
        self.call("activate", key, &body, &nonce)
    }

    /// Asks keystead about the stored key (renewing this machine's seat and lease).
    pub fn validate(&self) -> Result<Validation, Error> {
        let key = self.store.load().map(|s| s.key).ok_or(Error::Invalid)?;
        let nonce = nonce()?;
        let body = serde_json::json!({
            "key": key, "product_id": self.product, "machine_id": self.machine, "nonce": nonce,
        });
        self.call("validate", &key, &body, &nonce)
    }

    fn call(
        &self,
        action: &str,
        key: &str,
        body: &serde_json::Value,
        nonce: &str,
    ) -> Result<Validation, Error> {
        let (status, text) = match self.post(action, body) {
            Reply::Answered(status, text) => (status, text),
            Reply::Unreachable => return Err(self.offline()),
        };
        if status != 200 {
            let refusal = Self::refusal(status, &text);
            if matches!(refusal, Error::Revoked | Error::Suspended | Error::Invalid) {
                self.store.clear()?;
            }
            return Err(refusal);
        }
        let validation: Validation = serde_json::from_str(&text).map_err(|e| Error::Service {
            status,
            message: format!("unreadable answer: {e}"),
        })?;
        if let Err(refused) = Self::judged(&validation) {
            self.store.clear()?;
            return Err(refused);
        }
        match &validation.lease {
            Some(lease) => {
                let expected =
                    Expected::new(&self.tenant, &self.product, &self.machine).nonce(nonce);
                self.verify(lease, &expected)?;
                self.store.save(&Stored {
                    key: key.to_owned(),
                    lease: Some(lease.clone()),
                    jwks: self.jwks_json(),
                })?;
            }
            None => self.store.save(&Stored {
                key: key.to_owned(),
                lease: None,
                jwks: self.jwks_json(),
            })?,
        }
        Ok(validation)
    }

    /// Frees this machine's seat and forgets the key and lease; `false` when the machine held none.
    pub fn deactivate(&self) -> Result<bool, Error> {
        let key = self.store.load().map(|s| s.key).ok_or(Error::Invalid)?;
        let body =
            serde_json::json!({"key": key, "product_id": self.product, "machine_id": self.machine});
        match self.post("deactivate", &body) {
            Reply::Answered(200, text) => {
                self.store.clear()?;
                Ok(serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["deactivated"].as_bool())
                    .unwrap_or(false))
            }
            Reply::Answered(status, text) => Err(Self::refusal(status, &text)),
            Reply::Unreachable => Err(Error::OfflineWithoutLease),
        }
    }

    /// The license as the stored lease says, verified offline (no request unless the key set must be fetched).
    pub fn status(&self) -> Result<LeaseClaims, Error> {
        self.status_at(keystead_verify::unix_now())
    }

    /// [`Client::status`] at `now` (unix seconds).
    pub fn status_at(&self, now: i64) -> Result<LeaseClaims, Error> {
        let lease = self
            .store
            .load()
            .and_then(|s| s.lease)
            .ok_or(Error::OfflineWithoutLease)?;
        let expected = Expected::new(&self.tenant, &self.product, &self.machine);
        self.verify_at(&lease, &expected, now)
    }

    /// The key set's JSON to store: as fetched by this process, else as stored before.
    fn jwks_json(&self) -> Option<String> {
        self.jwks
            .lock()
            .ok()
            .and_then(|jwks| jwks.clone())
            .or_else(|| self.store.load().and_then(|s| s.jwks))
    }

    fn offline(&self) -> Error {
        match self.status() {
            Ok(claims) => Error::OfflineWithValidLease(Box::new(claims)),
            Err(_) => Error::OfflineWithoutLease,
        }
    }

    fn verify(&self, lease: &str, expected: &Expected<'_>) -> Result<LeaseClaims, Error> {
        self.verify_at(lease, expected, keystead_verify::unix_now())
    }

    /// Verifies with the key set in memory, the stored one, or (once, on an unknown `kid`) a fresh one.
    fn verify_at(
        &self,
        lease: &str,
        expected: &Expected<'_>,
        now: i64,
    ) -> Result<LeaseClaims, Error> {
        let first = self.with_keys(false, |keys| {
            keystead_verify::verify(lease, keys, expected, now)
        })?;
        match first {
            Err(keystead_verify::Error::UnknownKey(_)) if !self.pinned => Ok(self
                .with_keys(true, |keys| {
                    keystead_verify::verify(lease, keys, expected, now)
                })??),
            other => Ok(other?),
        }
    }

    fn with_keys<T>(&self, refresh: bool, f: impl FnOnce(&PublicKeys) -> T) -> Result<T, Error> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| Error::Io(std::io::Error::other("poisoned")))?;
        if keys.is_none() && !refresh {
            *keys = self
                .store
                .load()
                .and_then(|s| s.jwks)
                .and_then(|json| PublicKeys::from_jwks_json(&json).ok());
        }
        if keys.is_none() || refresh {
            let url = format!("{}/v1/{}/jwks.json", self.api, self.tenant);
            let mut response = self
                .agent
                .get(&url)
                .call()
                .map_err(|_| Error::OfflineWithoutLease)?;
            let json = response
                .body_mut()
                .read_to_string()
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            *keys = Some(PublicKeys::from_jwks_json(&json)?);
            *self
                .jwks
                .lock()
                .map_err(|_| Error::Io(std::io::Error::other("poisoned")))? = Some(json);
        }
        match keys.as_ref() {
            Some(keys) => Ok(f(keys)),
            None => Err(Error::OfflineWithoutLease),
        }
    }
}

/// The same calls as futures (feature `async`): each runs the blocking call on tokio's blocking pool.
#[cfg(feature = "async")]
impl Client {
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
    }

    /// [`Client::activate`].
    pub async fn activate_async(
        self: std::sync::Arc<Self>,
        key: String,
        label: Option<String>,
    ) -> Result<Validation, Error> {
        Self::blocking(move || self.activate(&key, label.as_deref())).await
    }

    /// [`Client::validate`].
    pub async fn validate_async(self: std::sync::Arc<Self>) -> Result<Validation, Error> {
        Self::blocking(move || self.validate()).await
    }

    /// [`Client::deactivate`].
    pub async fn deactivate_async(self: std::sync::Arc<Self>) -> Result<bool, Error> {
        Self::blocking(move || self.deactivate()).await
    }

    /// [`Client::check_update`].
    pub async fn check_update_async(
        self: std::sync::Arc<Self>,
        current: String,
        platform: String,
        arch: String,
        channel: String,
    ) -> Result<Option<Release>, Error> {
        Self::blocking(move || self.check_update(&current, &platform, &arch, &channel)).await
    }

    /// [`Client::download`].
    pub async fn download_async(
        self: std::sync::Arc<Self>,
        release: Release,
        dest: std::path::PathBuf,
        installed: Option<std::path::PathBuf>,
    ) -> Result<Downloaded, Error> {
        Self::blocking(move || self.download(&release, &dest, installed.as_deref())).await
    }
}
