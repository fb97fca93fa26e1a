//! Releases (issue 26): a version of a product for one platform and architecture, its files in the stack's
//! bucket, and who may have it. The rules are Keygen's: channels are cumulative, a release may require
//! entitlements, an expired license keeps what was released before it expired ("perpetual fallback") unless the
//! product says otherwise, and suspended or revoked licenses see nothing.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{InvalidValue, License, LicenseStatus, effective_status, one_line};

/// A release channel. Channels are cumulative: a license following `beta` also gets `rc` and `stable`
/// releases; `dev` gets only `dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stable,
    Rc,
    Beta,
    Alpha,
    Dev,
}

impl Channel {
    pub const ALL: [Channel; 5] = [Self::Stable, Self::Rc, Self::Beta, Self::Alpha, Self::Dev];

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == raw.trim())
            .ok_or_else(|| {
                InvalidValue(format!(
                    "invalid channel '{}': use stable, rc, beta, alpha or dev",
                    one_line(raw)
                ))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Rc => "rc",
            Self::Beta => "beta",
            Self::Alpha => "alpha",
            Self::Dev => "dev",
        }
    }

    /// Whether a client following `self` is offered a release of `release`.
    pub fn sees(self, release: Channel) -> bool {
        match (self, release) {
            (Self::Dev, release) => release == Self::Dev,
            (_, Self::Dev) => false,
            (following, release) => release <= following,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operating system a release is for, in Tauri's words (`{{target}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Darwin,
    Windows,
    Linux,
}

impl Platform {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.trim() {
            "darwin" | "macos" => Ok(Self::Darwin),
            "windows" => Ok(Self::Windows),
            "linux" => Ok(Self::Linux),
            _ => Err(InvalidValue(format!(
                "invalid platform '{}': use darwin, windows or linux",
                one_line(raw)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Darwin => "darwin",
            Self::Windows => "windows",
            Self::Linux => "linux",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The architecture a release runs on; `universal` (a macOS universal binary) runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Aarch64,
    #[serde(rename = "x86_64")]
    X86_64,
    Universal,
}

impl Arch {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.trim() {
            "aarch64" | "arm64" => Ok(Self::Aarch64),
            "x86_64" | "x64" => Ok(Self::X86_64),
            "universal" => Ok(Self::Universal),
            _ => Err(InvalidValue(format!(
                "invalid arch '{}': use aarch64, x86_64 or universal",
                one_line(raw)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64",
            Self::X86_64 => "x86_64",
            Self::Universal => "universal",
        }
    }

    /// Whether a release built for `self` runs on a machine of `machine`.
    pub fn runs_on(self, machine: Arch) -> bool {
        self == machine || self == Self::Universal
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A semantic version (`1.2.3`, `2.0.0-beta.1`, `1.0.0+build.5`; no `v` prefix, as Keygen and Tauri want),
/// ordered by SemVer's precedence: build metadata is ignored, a pre-release sorts before its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    raw: String,
    core: [u64; 3],
    pre: Vec<String>,
}

impl Version {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue(format!(
                "invalid version '{}': use SemVer, e.g. 1.4.0 or 2.0.0-beta.1",
                one_line(raw)
            ))
        };
        let raw = raw.trim();
        let raw = raw.strip_prefix('v').unwrap_or(raw);
        if raw.is_empty() || raw.len() > 64 {
            return Err(invalid());
        }
        let (rest, build) = raw.split_once('+').unwrap_or((raw, ""));
        let (core, pre) = rest.split_once('-').unwrap_or((rest, ""));
        let identifiers_ok = |part: &str| {
            part.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        };
        if (raw.contains('+') && !identifiers_ok(build))
            || (rest.contains('-') && !identifiers_ok(pre))
        {
            return Err(invalid());
        }
        let numbers: Vec<&str> = core.split('.').collect();
        if numbers.len() != 3 {
            return Err(invalid());
        }
        let mut parsed = [0u64; 3];
        for (slot, number) in parsed.iter_mut().zip(&numbers) {
            if number.is_empty()
                || !number.bytes().all(|b| b.is_ascii_digit())
                || (number.len() > 1 && number.starts_with('0'))
            {
                return Err(invalid());
            }
            *slot = number.parse().map_err(|_| invalid())?;
        }
        Ok(Self {
            raw: raw.to_owned(),
            core: parsed,
            pre: if pre.is_empty() {
                Vec::new()
            } else {
                pre.split('.').map(str::to_owned).collect()
            },
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(a), Ok(b)) => a.cmp(&b),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where a release stands: drafts and yanked releases are in no feed and give no download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    Draft,
    Published,
    Yanked,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Yanked => "yanked",
        }
    }
}

/// What a file of a release is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssetKind {
    /// What the updater installs (the first `--file` is the one Tauri and Sparkle are given).
    Installer,
    /// A Sparkle `.delta` from the build `from_build` (`--delta-from`).
    SparkleDelta { from_build: String },
    /// An electron-builder `.blockmap`, fetched beside its installer for differential downloads.
    Blockmap,
    /// A binary patch made at publish (zstd with the old file as its reference prefix): applied to the file of
    /// `from_version` whose SHA-256 is `from_sha256`, it gives `target` (this release's file of that name).
    Patch {
        from_version: String,
        from_sha256: String,
        target: String,
    },
}

/// One file of a release in the stack's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// The name the file is downloaded as (unique within a version): `ProductFile::safe_name`.
    pub name: String,
    pub s3_key: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// Standard base64, as electron-updater's `sha512` field wants it.
    pub sha512: String,
    #[serde(flatten)]
    pub kind: AssetKind,
    /// Sparkle's `sparkle:edSignature`: base64 Ed25519 over the file, made by the seller's `sign_update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparkle_signature: Option<String>,
    /// Tauri's `signature`: the `.sig` file's content (base64 of a minisign signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tauri_signature: Option<String>,
}

impl Asset {
    /// `releases/<tenant>/<product>/<version>/<platform>-<arch>/<sha256>/<name>`.
    pub fn object_key(
        tenant: &str,
        product: &str,
        version: &str,
        target: (Platform, Arch),
        sha256: &str,
        name: &str,
    ) -> String {
        format!(
            "releases/{tenant}/{product}/{version}/{}-{}/{sha256}/{name}",
            target.0, target.1
        )
    }
}

/// A version of a product for one platform and architecture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub product_id: super::ProductId,
    pub version: String,
    pub platform: Platform,
    pub arch: Arch,
    pub channel: Channel,
    /// Sparkle's `sparkle:version` (`CFBundleVersion`); the version itself when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The oldest OS version it runs on (`sparkle:minimumSystemVersion`, electron's `minimumSystemVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_os: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// Entitlements a license's product must grant (all of them) to see the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    pub status: ReleaseStatus,
    /// When the release was made: what "released before the license expired" compares (as Keygen does).
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    pub files: Vec<Asset>,
}

impl Release {
    pub fn parsed_version(&self) -> Option<Version> {
        Version::parse(&self.version).ok()
    }

    /// The file the updaters install: the first installer.
    pub fn installer(&self) -> Option<&Asset> {
        self.files
            .iter()
            .find(|f| matches!(f.kind, AssetKind::Installer))
    }

    pub fn build_number(&self) -> &str {
        self.build.as_deref().unwrap_or(&self.version)
    }

    pub fn file(&self, name: &str) -> Option<&Asset> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// When a release came out: its publication, else its creation.
pub fn released_at(release: &Release) -> &str {
    release
        .published_at
        .as_deref()
        .unwrap_or(&release.created_at)
}

/// What a license keeps once it has expired (`product set --after-expiry`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterExpiry {
    /// The releases made before it expired ("perpetual fallback").
    #[default]
    KeepReleased,
    Nothing,
    Everything,
}

impl AfterExpiry {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.trim() {
            "keep-released" => Ok(Self::KeepReleased),
            "nothing" => Ok(Self::Nothing),
            "everything" => Ok(Self::Everything),
            _ => Err(InvalidValue(format!(
                "invalid --after-expiry '{}': use keep-released, nothing or everything",
                one_line(raw)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepReleased => "keep-released",
            Self::Nothing => "nothing",
            Self::Everything => "everything",
        }
    }
}

/// A product's release settings: what expired and perpetual licenses get, and the public keys its apps pin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSettings {
    #[serde(default)]
    pub after_expiry: AfterExpiry,
    /// A license without an expiry gets the releases made within this many days of its purchase; `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates_for_days: Option<u32>,
    /// `SUPublicEDKey`: base64 of the raw 32-byte Ed25519 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparkle_public_key: Option<String>,
    /// `plugins.updater.pubkey`: base64 of the minisign public key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tauri_public_key: Option<String>,
}

/// Why a license gets a release or not; what the download route answers (`403` for all but `Granted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Suspended or revoked: nothing at all.
    NotActive(LicenseStatus),
    /// Not published, or yanked.
    Unlisted,
    OtherChannel,
    MissingEntitlement,
    /// Expired, and the release came after (or the product keeps nothing after expiry).
    Expired,
    /// Made after the update window of a perpetual license.
    OutsideUpdateWindow,
}

fn unix(at: &str) -> Option<i64> {
    OffsetDateTime::parse(at, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// A license's end: its `expires_at`, or the `ended_at` Gumroad reported for a subscription that ended.
pub fn license_expiry(license: &License) -> Option<i64> {
    [&license.expires_at, &license.subscription_ended_at]
        .into_iter()
        .flatten()
        .filter_map(|at| unix(at))
        .min()
}

/// Whether `license`, whose product grants `entitlements`, may have `release` at `now` when following
/// `channel`. The release's platform and arch are the caller's filter, not a right.
pub fn access(
    license: &License,
    entitlements: &[String],
    settings: &ReleaseSettings,
    release: &Release,
    channel: Channel,
    now: OffsetDateTime,
) -> Access {
    match effective_status(license, now) {
        status @ (LicenseStatus::Suspended | LicenseStatus::Revoked) => {
            return Access::NotActive(status);
        }
        LicenseStatus::Active | LicenseStatus::Expired => {}
    }
    if release.status != ReleaseStatus::Published {
        return Access::Unlisted;
    }
    if !channel.sees(release.channel) {
        return Access::OtherChannel;
    }
    if !release
        .entitlements
        .iter()
        .all(|e| entitlements.contains(e))
    {
        return Access::MissingEntitlement;
    }
    let created = unix(&release.created_at).unwrap_or(i64::MAX);
    match license_expiry(license) {
        Some(expiry) if expiry <= now.unix_timestamp() => match settings.after_expiry {
            AfterExpiry::Everything => Access::Granted,
            AfterExpiry::Nothing => Access::Expired,
            AfterExpiry::KeepReleased if created <= expiry => Access::Granted,
            AfterExpiry::KeepReleased => Access::Expired,
        },
        Some(_) => Access::Granted,
        None => match (settings.updates_for_days, unix(&license.created_at)) {
            (Some(days), Some(bought)) if created > bought + i64::from(days) * 86_400 => {
                Access::OutsideUpdateWindow
            }
            _ => Access::Granted,
        },
    }
}

/// Why a release's file is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRefused {
    /// No published release of that version.
    UnknownVersion,
    /// The version has no file of that name.
    UnknownFile,
    Refused(Access),
}

/// The file `name` of a published release of `version` (any platform) that `access` grants; the right to a file is
/// the right to its release. Used by the feeds' download and by the portal's.
pub fn granted_file<'r>(
    releases: &'r [Release],
    version: &str,
    name: &str,
    access: impl Fn(&Release) -> Access,
) -> Result<&'r Asset, FileRefused> {
    let mut refused = FileRefused::UnknownVersion;
    for release in releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Published && r.version == version)
    {
        let Some(asset) = release.file(name) else {
            if refused == FileRefused::UnknownVersion {
                refused = FileRefused::UnknownFile;
            }
            continue;
        };
        match access(release) {
            Access::Granted => return Ok(asset),
            other => refused = FileRefused::Refused(other),
        }
    }
    Err(refused)
}

/// The newest of `releases` by version (then by creation), if any.
pub fn newest<'r>(releases: impl IntoIterator<Item = &'r Release>) -> Option<&'r Release> {
    releases
        .into_iter()
        .filter_map(|r| r.parsed_version().map(|v| (v, r)))
        .max_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| ra.created_at.cmp(&rb.created_at)))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(raw: &str) -> Version {
        Version::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn versions_order_by_semver_precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0.0+build.5").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("v1.2.3").as_str(), "1.2.3");
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-",
            "1.2.3-a..b",
            "a.b.c",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn channels_are_cumulative_and_dev_stands_alone() {
        use Channel::*;
        assert!(Beta.sees(Stable) && Beta.sees(Rc) && Beta.sees(Beta));
        assert!(!Beta.sees(Alpha) && !Beta.sees(Dev));
        assert!(!Stable.sees(Rc) && Stable.sees(Stable));
        assert!(Alpha.sees(Stable) && !Alpha.sees(Dev));
        assert!(Dev.sees(Dev) && !Dev.sees(Stable));
    }

    #[test]
    fn universal_builds_run_on_both_architectures() {
        assert!(Arch::Universal.runs_on(Arch::Aarch64));
        assert!(Arch::Universal.runs_on(Arch::X86_64));
        assert!(!Arch::X86_64.runs_on(Arch::Aarch64));
    }

    fn license(status: &str, created: &str, expires: Option<&str>) -> License {
        let doc = serde_json::json!({
            "license_id": "lic_1", "tenant_id": "acme", "product_id": "myapp", "product_name": "MyApp",
            "key": "ACME-00000-00000-00000-00000-00000-00000", "key_hash": "h", "status": status,
            "activation_limit": 3, "buyer_email": "jane@example.com", "sale_id": "s1", "source": "gumroad",
            "created_at": created, "email_status": "sent", "expires_at": expires,
        });
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn release(created: &str, channel: Channel, entitlements: &[&str]) -> Release {
        Release {
            product_id: crate::domain::ProductId::parse("myapp").unwrap_or_else(|e| panic!("{e}")),
            version: "1.0.0".to_owned(),
            platform: Platform::Linux,
            arch: Arch::X86_64,
            channel,
            build: None,
            notes: None,
            min_os: None,
            critical: false,
            entitlements: entitlements.iter().map(|e| (*e).to_owned()).collect(),
            status: ReleaseStatus::Published,
            created_at: created.to_owned(),
            published_at: None,
            files: Vec::new(),
        }
    }

    fn at(raw: &str) -> OffsetDateTime {
        OffsetDateTime::parse(raw, &Rfc3339).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn access_follows_keygens_rules() {
        let now = at("2027-01-01T00:00:00Z");
        let settings = ReleaseSettings::default();
        let stable = Channel::Stable;
        let active = license("active", "2026-01-01T00:00:00Z", None);
        let before = release("2026-03-01T00:00:00Z", stable, &[]);
        let after = release("2026-09-01T00:00:00Z", stable, &[]);
        let grant =
            |l: &License, r: &Release, s: &ReleaseSettings| access(l, &[], s, r, stable, now);
        assert_eq!(grant(&active, &after, &settings), Access::Granted);
        // Expired in June: keeps what was made before (inclusive), by default.
        let expired = license(
            "active",
            "2026-01-01T00:00:00Z",
            Some("2026-06-01T00:00:00Z"),
        );
        assert_eq!(grant(&expired, &before, &settings), Access::Granted);
        assert_eq!(grant(&expired, &after, &settings), Access::Expired);
        let on_the_day = release("2026-06-01T00:00:00Z", stable, &[]);
        assert_eq!(grant(&expired, &on_the_day, &settings), Access::Granted);
        let nothing = ReleaseSettings {
            after_expiry: AfterExpiry::Nothing,
            ..settings.clone()
        };
        assert_eq!(grant(&expired, &before, &nothing), Access::Expired);
        let everything = ReleaseSettings {
            after_expiry: AfterExpiry::Everything,
            ..settings.clone()
        };
        assert_eq!(grant(&expired, &after, &everything), Access::Granted);
        // Not yet expired: everything, whatever the setting.
        let later = license(
            "active",
            "2026-01-01T00:00:00Z",
            Some("2028-01-01T00:00:00Z"),
        );
        assert_eq!(grant(&later, &after, &nothing), Access::Granted);
        // A perpetual license with a 100-day update window: what came within it.
        let window = ReleaseSettings {
            updates_for_days: Some(100),
            ..settings.clone()
        };
        assert_eq!(grant(&active, &before, &window), Access::Granted);
        assert_eq!(grant(&active, &after, &window), Access::OutsideUpdateWindow);
        // Suspended and revoked: nothing; drafts and yanked releases: never.
        for status in ["suspended", "revoked"] {
            let l = license(status, "2026-01-01T00:00:00Z", None);
            assert!(
                matches!(grant(&l, &before, &settings), Access::NotActive(_)),
                "{status}"
            );
        }
        let mut yanked = before.clone();
        yanked.status = ReleaseStatus::Yanked;
        assert_eq!(grant(&active, &yanked, &settings), Access::Unlisted);
        // Channels and entitlements.
        let beta = release("2026-03-01T00:00:00Z", Channel::Beta, &[]);
        assert_eq!(grant(&active, &beta, &settings), Access::OtherChannel);
        assert_eq!(
            access(&active, &[], &settings, &beta, Channel::Alpha, now),
            Access::Granted
        );
        let pro = release("2026-03-01T00:00:00Z", stable, &["pro", "cloud"]);
        assert_eq!(grant(&active, &pro, &settings), Access::MissingEntitlement);
        let some = ["pro".to_owned()];
        assert_eq!(
            access(&active, &some, &settings, &pro, stable, now),
            Access::MissingEntitlement
        );
        let both = ["cloud".to_owned(), "pro".to_owned()];
        assert_eq!(
            access(&active, &both, &settings, &pro, stable, now),
            Access::Granted
        );
    }
}
