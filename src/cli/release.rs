//! `keystead release …` (issue 26): publish a version of a product for one platform and arch into the stack's
//! bucket (each file's size, SHA-256 and SHA-512 recorded, the seller's own Sparkle and Tauri signatures kept and,
//! when the product pins a public key, checked first), with binary patches from the previous releases; list
//! them; publish a draft; yank one.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};
use time::OffsetDateTime;

use super::s3::S3;
use super::tenant::load;
use super::{CliError, Output, store};
use crate::domain::audit::{EventType, Recorder};
use crate::domain::releases::{
    Arch, Asset, AssetKind, Channel, Platform, Release, ReleaseStatus, Version,
};
use crate::domain::{ProductFile, ProductId, TenantId, parse_entitlements, rfc3339};
use crate::files::patch::{apply_patch, make_patch};
use crate::storage::{DynamoStore, ReleaseStore, StoreError};

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Upload a version's files for one platform and arch and record the release (published unless --draft).
    Publish(Box<PublishArgs>),
    /// The product's releases, newest first, drafts and yanked ones included.
    List {
        tenant_id: String,
        product_id: String,
    },
    /// Publish a draft (every platform of the version, or the one named).
    PublishDraft(Versions),
    /// Withdraw a release from every feed and download (every platform of the version, or the one named).
    Yank(Versions),
}

/// The releases of one version a status change applies to: every platform and arch, or those named.
#[derive(Debug, clap::Args)]
pub struct Versions {
    pub(crate) tenant_id: String,
    product_id: String,
    version: String,
    #[arg(long, value_parser = ["darwin", "windows", "linux"])]
    platform: Option<String>,
    #[arg(long, value_parser = ["aarch64", "x86_64", "universal"])]
    arch: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    pub(crate) tenant_id: String,
    product_id: String,
    /// SemVer, e.g. 1.4.0 or 2.0.0-beta.1.
    version: String,
    /// A file of the release (repeat for more). The first one that is not a `.delta` or `.blockmap` is what
    /// updaters install; `.delta` files are Sparkle deltas (`--delta-from`), `.blockmap` files electron's.
    #[arg(long = "file", required = true)]
    files: Vec<PathBuf>,
    #[arg(long, value_parser = ["darwin", "windows", "linux"])]
    platform: String,
    #[arg(long, value_parser = ["aarch64", "x86_64", "universal"])]
    arch: String,
    #[arg(long, default_value = "stable", value_parser = ["stable", "rc", "beta", "alpha", "dev"])]
    channel: String,
    /// Sparkle's `sparkle:version` (the app's CFBundleVersion); default: the version.
    #[arg(long)]
    build: Option<String>,
    /// A file whose text is the release notes.
    #[arg(long)]
    notes: Option<PathBuf>,
    /// `sign_update`'s `sparkle:edSignature` (base64), once per installer and `.delta` file, in file order.
    #[arg(long = "sparkle-signature")]
    sparkle_signatures: Vec<String>,
    /// The `.sig` file `tauri build` wrote for the installer.
    #[arg(long)]
    tauri_signature: Option<PathBuf>,
    /// The oldest OS version it runs on (Sparkle's minimumSystemVersion, e.g. 12.0.0).
    #[arg(long)]
    min_os: Option<String>,
    /// An update the user may not skip (Sparkle's criticalUpdate).
    #[arg(long)]
    critical: bool,
    /// Record it unpublished: in no feed until `release publish-draft`.
    #[arg(long)]
    draft: bool,
    /// The build each `.delta` file patches from, in the order of the `.delta` files.
    #[arg(long = "delta-from")]
    delta_from: Vec<String>,
    /// Entitlements a license's product must grant to get this release, comma-separated.
    #[arg(long)]
    entitlements: Option<String>,
}

fn invalid(e: impl std::fmt::Display) -> CliError {
    CliError::Invalid(e.to_string())
}

/// `--sparkle-public-key`: base64 of a raw 32-byte Ed25519 key (`SUPublicEDKey`).
pub fn sparkle_public_key(raw: &str) -> Result<String, CliError> {
    sparkle_key(raw)?;
    Ok(raw.trim().to_owned())
}

fn sparkle_key(raw: &str) -> Result<ed25519_dalek::VerifyingKey, CliError> {
    let bytes: [u8; 32] = STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            invalid("invalid Sparkle public key: expected SUPublicEDKey, base64 of 32 bytes")
        })?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("invalid Sparkle public key: not an Ed25519 key"))
}

/// `--tauri-public-key`: base64 of a minisign public key file (what `tauri signer generate` prints).
pub fn tauri_public_key(raw: &str) -> Result<String, CliError> {
    Minisign::public_key(raw)?;
    Ok(raw.trim().to_owned())
}

/// The two halves of minisign that Tauri's updater checks, written from minisign's format (UPDATES.md B3).
struct Minisign;

impl Minisign {
    /// The text inside a base64 wrapper (Tauri's key and `.sig` files), and its base64 lines.
    fn lines(raw: &str, what: &str) -> Result<Vec<String>, CliError> {
        let text = STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "invalid Tauri {what}: expected base64 of a minisign file"
                ))
            })?;
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// (key id, Ed25519 key) of a public key.
    fn public_key(raw: &str) -> Result<([u8; 8], ed25519_dalek::VerifyingKey), CliError> {
        let bad =
            || invalid("invalid Tauri public key: expected base64 of a minisign public key file");
        let lines = Self::lines(raw, "public key")?;
        let blob = lines
            .iter()
            .find(|l| !l.starts_with("untrusted comment:") && !l.trim().is_empty())
            .and_then(|l| STANDARD.decode(l.trim()).ok())
            .filter(|b| b.len() == 42 && &b[..2] == b"Ed")
            .ok_or_else(bad)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&blob[2..10]);
        let key: [u8; 32] = blob[10..].try_into().map_err(|_| bad())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad())?;
        Ok((id, key))
    }

    /// Whether `signature` (a `.sig` file's content) signs `file` with `public_key`: the file's signature
    /// (prehashed with BLAKE2b-512 for `ED`, over the raw bytes for the legacy `Ed`), then the global signature
    /// over it and the trusted comment.
    fn verify(public_key: &str, signature: &str, file: &[u8]) -> Result<bool, CliError> {
        use blake2::Digest as _;
        use ed25519_dalek::Verifier;
        let (key_id, key) = Self::public_key(public_key)?;
        let bad = || invalid("invalid Tauri signature: expected the .sig file tauri build wrote");
        let lines = Self::lines(signature, "signature")?;
        let [_, sig_line, comment_line, global_line, ..] = lines.as_slice() else {
            return Err(bad());
        };
        let blob = STANDARD.decode(sig_line.trim()).map_err(|_| bad())?;
        if blob.len() != 74 {
            return Err(bad());
        }
        let signature = ed25519_dalek::Signature::from_slice(&blob[10..]).map_err(|_| bad())?;
        let trusted = comment_line
            .strip_prefix("trusted comment: ")
            .ok_or_else(bad)?;
        let global = STANDARD
            .decode(global_line.trim())
            .ok()
            .and_then(|g| ed25519_dalek::Signature::from_slice(&g).ok())
            .ok_or_else(bad)?;
        if blob[2..10] != key_id {
            return Ok(false);
        }
        let signed = match &blob[..2] {
            b"ED" => key.verify(&blake2::Blake2b512::digest(file), &signature),
            b"Ed" => key.verify(file, &signature),
            _ => return Err(bad()),
        };
        let mut global_message = blob[10..].to_vec();
        global_message.extend_from_slice(trusted.as_bytes());
        Ok(signed.is_ok() && key.verify(&global_message, &global).is_ok())
    }
}

/// A file read once: its bytes, digests and the name it downloads as.
struct Local {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    sha256: String,
    sha512: String,
}

fn read_local(path: &Path) -> Result<Local, CliError> {
    let cannot = |e: std::io::Error| invalid(format!("cannot read {}: {e}", path.display()));
    if !path.is_file() {
        return Err(invalid(format!("{} is not a file", path.display())));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(cannot)?;
    let name = ProductFile::safe_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Ok(Local {
        path: path.to_owned(),
        name,
        sha256: hex::encode(Sha256::digest(&bytes)),
        sha512: STANDARD.encode(Sha512::digest(&bytes)),
        bytes,
    })
}

/// Patches are made from this many earlier releases of the same platform and arch.
const PATCHES_FROM: usize = 3;

pub async fn run(command: ReleaseCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        ReleaseCommand::Publish(args) => {
            let PublishArgs {
                tenant_id,
                product_id,
                version,
                files,
                platform,
                arch,
                channel,
                build,
                notes,
                sparkle_signatures,
                tauri_signature,
                min_os,
                critical,
                draft,
                delta_from,
                entitlements,
            } = *args;
            let request = Publish {
                tenant_id: TenantId::parse(&tenant_id)?,
                product_id: ProductId::parse(&product_id)?,
                version: Version::parse(&version)?,
                platform: Platform::parse(&platform)?,
                arch: Arch::parse(&arch)?,
                channel: Channel::parse(&channel)?,
                build: build
                    .map(|b| crate::domain::one_line(&b))
                    .filter(|b| !b.is_empty()),
                notes: notes
                    .map(|path| {
                        std::fs::read_to_string(&path)
                            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
                    })
                    .transpose()?,
                sparkle_signatures,
                tauri_signature: tauri_signature
                    .map(|path| {
                        std::fs::read_to_string(&path)
                            .map(|s| s.trim().to_owned())
                            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
                    })
                    .transpose()?,
                min_os: min_os.map(|m| crate::domain::one_line(&m)),
                critical,
                draft,
                delta_from,
                entitlements: parse_entitlements(entitlements.as_deref().unwrap_or_default())?,
            };
            publish(request, &files, out).await
        }
        ReleaseCommand::List {
            tenant_id,
            product_id,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let product_id = ProductId::parse(&product_id)?;
            let store = store().await?;
            known_product(&store, &tenant_id, &product_id).await?;
            let releases = sorted(store.releases(&tenant_id, &product_id).await?);
            let rows: Vec<Vec<String>> = releases
                .iter()
                .map(|r| {
                    vec![
                        r.version.clone(),
                        format!("{}-{}", r.platform, r.arch),
                        r.channel.to_string(),
                        r.status.as_str().to_owned(),
                        r.files
                            .iter()
                            .map(|f| f.name.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                        r.created_at.clone(),
                    ]
                })
                .collect();
            out.table(
                &["VERSION", "TARGET", "CHANNEL", "STATUS", "FILES", "CREATED"],
                &rows,
            );
            out.document(
                json!({"tenant_id": tenant_id, "product_id": product_id, "releases": releases}),
            );
            Ok(())
        }
        ReleaseCommand::PublishDraft(versions) => {
            change_status(
                versions,
                ReleaseStatus::Draft,
                ReleaseStatus::Published,
                out,
            )
            .await
        }
        ReleaseCommand::Yank(versions) => {
            change_status(
                versions,
                ReleaseStatus::Published,
                ReleaseStatus::Yanked,
                out,
            )
            .await
        }
    }
}

/// Newest version first.
fn sorted(mut releases: Vec<Release>) -> Vec<Release> {
    releases.sort_by(|a, b| {
        b.parsed_version()
            .cmp(&a.parsed_version())
            .then_with(|| (a.platform, a.arch).cmp(&(b.platform, b.arch)))
    });
    releases
}

async fn known_product(
    store: &DynamoStore,
    tenant_id: &TenantId,
    product_id: &ProductId,
) -> Result<crate::domain::Product, CliError> {
    let tenant = load(store, tenant_id).await?;
    tenant.product(product_id).cloned().ok_or_else(|| {
        CliError::NotFound(format!(
            "product '{product_id}' does not exist for tenant '{tenant_id}'"
        ))
    })
}

struct Publish {
    tenant_id: TenantId,
    product_id: ProductId,
    version: Version,
    platform: Platform,
    arch: Arch,
    channel: Channel,
    build: Option<String>,
    notes: Option<String>,
    sparkle_signatures: Vec<String>,
    tauri_signature: Option<String>,
    min_os: Option<String>,
    critical: bool,
    draft: bool,
    delta_from: Vec<String>,
    entitlements: Vec<String>,
}

/// What each local file is, checked before anything is uploaded.
fn kinds(request: &Publish, locals: &[Local]) -> Result<Vec<AssetKind>, CliError> {
    let mut deltas = request.delta_from.iter();
    let mut kinds = Vec::new();
    for local in locals {
        kinds.push(if local.name.ends_with(".delta") {
            let from_build = deltas.next().ok_or_else(|| {
                invalid(format!(
                    "{} is a Sparkle delta: name the build it patches from with --delta-from",
                    local.path.display()
                ))
            })?;
            AssetKind::SparkleDelta {
                from_build: crate::domain::one_line(from_build),
            }
        } else if local.name.ends_with(".blockmap") {
            AssetKind::Blockmap
        } else {
            AssetKind::Installer
        });
    }
    if deltas.next().is_some() {
        return Err(invalid("more --delta-from values than .delta files"));
    }
    if !kinds.iter().any(|k| matches!(k, AssetKind::Installer)) {
        return Err(invalid(
            "no installer among the files: give at least one --file that is not a .delta or .blockmap",
        ));
    }
    let mut names: Vec<&str> = locals.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("two files of the release have the same name"));
    }
    Ok(kinds)
}

/// The assets of the release, with the seller's signatures checked against the product's pinned keys.
fn assets(
    request: &Publish,
    product: &crate::domain::Product,
    locals: &[Local],
    kinds: Vec<AssetKind>,
) -> Result<Vec<Asset>, CliError> {
    let signed: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| !matches!(k, AssetKind::Blockmap))
        .map(|(i, _)| i)
        .collect();
    if request.sparkle_signatures.len() > signed.len() {
        return Err(invalid(
            "more --sparkle-signature values than installer and .delta files",
        ));
    }
    let sparkle_key = product
        .releases
        .sparkle_public_key
        .as_deref()
        .map(sparkle_key)
        .transpose()?;
    let installer = kinds.iter().position(|k| matches!(k, AssetKind::Installer));
    let mut assets = Vec::new();
    for (index, (local, kind)) in locals.iter().zip(kinds).enumerate() {
        let sparkle_signature = signed
            .iter()
            .position(|i| *i == index)
            .and_then(|n| request.sparkle_signatures.get(n))
            .map(|s| s.trim().to_owned());
        if let (Some(signature), Some(key)) = (&sparkle_signature, &sparkle_key) {
            use ed25519_dalek::Verifier;
            let verified = STANDARD
                .decode(signature)
                .ok()
                .and_then(|s| ed25519_dalek::Signature::from_slice(&s).ok())
                .is_some_and(|s| key.verify(&local.bytes, &s).is_ok());
            if !verified {
                return Err(invalid(format!(
                    "the Sparkle signature of {} does not verify with the product's --sparkle-public-key: nothing was published (sign the file with the key your app pins)",
                    local.path.display()
                )));
            }
        }
        let tauri_signature = if Some(index) == installer {
            request.tauri_signature.clone()
        } else {
            None
        };
        if let (Some(signature), Some(key)) = (&tauri_signature, &product.releases.tauri_public_key)
            && !Minisign::verify(key, signature, &local.bytes)?
        {
            return Err(invalid(format!(
                "the Tauri signature of {} does not verify with the product's --tauri-public-key: nothing was published (sign the file with the key your app pins)",
                local.path.display()
            )));
        }
        assets.push(Asset {
            s3_key: Asset::object_key(
                request.tenant_id.as_str(),
                request.product_id.as_str(),
                request.version.as_str(),
                (request.platform, request.arch),
                &local.sha256,
                &local.name,
            ),
            name: local.name.clone(),
            size: local.bytes.len() as u64,
            sha256: local.sha256.clone(),
            sha512: local.sha512.clone(),
            kind,
            sparkle_signature,
            tauri_signature,
        });
    }
    Ok(assets)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Uploads `bytes` to `key` unless an object of that size is already there (an earlier, interrupted publish:
/// keys hold the content's SHA-256, so a rerun picks up where it stopped).
fn upload(s3: &S3, key: &str, name: &str, bytes: &[u8]) -> Result<(), CliError> {
    let size = bytes.len() as u64;
    if s3.object_size(key)? == Some(size) {
        eprintln!("keystead: {name} is already uploaded");
        return Ok(());
    }
    let multipart = size > super::s3::PART_SIZE as u64;
    s3.upload(key, bytes, size, |sent| {
        if multipart {
            let percent = (sent * 100).checked_div(size).unwrap_or(100);
            eprintln!(
                "keystead: {name}: uploaded {} of {} ({percent}%)",
                mib(sent),
                mib(size)
            );
        }
    })
}

/// Patches from the newest earlier releases of the same platform and arch to this release's installer.
fn patches(
    s3: &S3,
    request: &Publish,
    earlier: &[Release],
    installer: &Local,
) -> Result<Vec<(Asset, Vec<u8>)>, CliError> {
    let mut made = Vec::new();
    let previous = sorted(
        earlier
            .iter()
            .filter(|r| {
                r.platform == request.platform
                    && r.arch == request.arch
                    && r.status != ReleaseStatus::Yanked
                    && r.parsed_version().is_some_and(|v| v < request.version)
            })
            .cloned()
            .collect(),
    );
    for old in previous.iter().take(PATCHES_FROM) {
        let Some(old_file) = old.installer() else {
            continue;
        };
        let old_bytes = s3.get(&old_file.s3_key)?;
        if hex::encode(Sha256::digest(&old_bytes)) != old_file.sha256 {
            eprintln!(
                "keystead: warning: {} of {} is not what was published; no patch from it",
                old_file.name, old.version
            );
            continue;
        }
        let patch = make_patch(&old_bytes, &installer.bytes).map_err(|e| CliError::Other(e.0))?;
        if apply_patch(&old_bytes, &patch).map_err(|e| CliError::Other(e.0))? != installer.bytes {
            return Err(CliError::Other(format!(
                "the patch from {} does not give {}: nothing was published",
                old.version, installer.name
            )));
        }
        if patch.len() >= installer.bytes.len() {
            continue;
        }
        let name = format!("{}.from-{}.patch", installer.name, old.version);
        let sha256 = hex::encode(Sha256::digest(&patch));
        made.push((
            Asset {
                s3_key: Asset::object_key(
                    request.tenant_id.as_str(),
                    request.product_id.as_str(),
                    request.version.as_str(),
                    (request.platform, request.arch),
                    &sha256,
                    &ProductFile::safe_name(&name),
                ),
                name: ProductFile::safe_name(&name),
                size: patch.len() as u64,
                sha256,
                sha512: STANDARD.encode(Sha512::digest(&patch)),
                kind: AssetKind::Patch {
                    from_version: old.version.clone(),
                    from_sha256: old_file.sha256.clone(),
                    target: installer.name.clone(),
                },
                sparkle_signature: None,
                tauri_signature: None,
            },
            patch,
        ));
    }
    Ok(made)
}

async fn publish(request: Publish, files: &[PathBuf], out: &mut Output) -> Result<(), CliError> {
    let store = store().await?;
    let product = known_product(&store, &request.tenant_id, &request.product_id).await?;
    let locals = files
        .iter()
        .map(|p| read_local(p))
        .collect::<Result<Vec<_>, _>>()?;
    let kinds = kinds(&request, &locals)?;
    let mut assets = assets(&request, &product, &locals, kinds)?;
    let earlier = store
        .releases(&request.tenant_id, &request.product_id)
        .await?;
    if earlier.iter().any(|r| {
        r.version == request.version.as_str()
            && r.platform == request.platform
            && r.arch == request.arch
    }) {
        return Err(CliError::AlreadyExists(format!(
            "release {} for {}-{} already exists: publish a new version (a published file never changes under its users)",
            request.version, request.platform, request.arch
        )));
    }
    let s3 = S3::connect(None).await?;
    for (local, asset) in locals.iter().zip(&assets) {
        upload(&s3, &asset.s3_key, &asset.name, &local.bytes)?;
    }
    let installer = locals
        .iter()
        .zip(&assets)
        .find(|(_, a)| matches!(a.kind, AssetKind::Installer))
        .map(|(l, _)| l)
        .ok_or_else(|| invalid("no installer among the files"))?;
    for (asset, bytes) in patches(&s3, &request, &earlier, installer)? {
        upload(&s3, &asset.s3_key, &asset.name, &bytes)?;
        assets.push(asset);
    }
    let now = rfc3339(OffsetDateTime::now_utc());
    let status = if request.draft {
        ReleaseStatus::Draft
    } else {
        ReleaseStatus::Published
    };
    let release = Release {
        product_id: request.product_id.clone(),
        version: request.version.as_str().to_owned(),
        platform: request.platform,
        arch: request.arch,
        channel: request.channel,
        build: request.build.clone(),
        notes: request.notes.clone(),
        min_os: request.min_os.clone(),
        critical: request.critical,
        entitlements: request.entitlements.clone(),
        status,
        published_at: (!request.draft).then(|| now.clone()),
        created_at: now,
        files: assets,
    };
    store
        .add_release(&request.tenant_id, &release)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists => CliError::AlreadyExists(format!(
                "release {} for {}-{} already exists",
                release.version, release.platform, release.arch
            )),
            other => other.into(),
        })?;
    if !request.draft {
        announce(&store, &request.tenant_id, &release).await;
    }
    let verb = if request.draft {
        "Recorded draft"
    } else {
        "Published"
    };
    out.line(format!(
        "{verb} {} {} for {}-{} ({} channel) of tenant {}.",
        release.product_id,
        release.version,
        release.platform,
        release.arch,
        release.channel,
        request.tenant_id
    ));
    let rows: Vec<Vec<String>> = release
        .files
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                match &f.kind {
                    AssetKind::Installer => "installer".to_owned(),
                    AssetKind::Blockmap => "blockmap".to_owned(),
                    AssetKind::SparkleDelta { from_build } => format!("delta from {from_build}"),
                    AssetKind::Patch { from_version, .. } => format!("patch from {from_version}"),
                },
                f.size.to_string(),
                f.sha256.clone(),
            ]
        })
        .collect();
    out.table(&["FILE", "KIND", "BYTES", "SHA-256"], &rows);
    out.document(json!({"tenant_id": request.tenant_id, "release": release}));
    Ok(())
}

/// `release.published` for the webhooks; a failure to record it is reported, not the publication's failure.
async fn announce(store: &DynamoStore, tenant_id: &TenantId, release: &Release) {
    let recorded = async {
        let mut recorder = Recorder::new(tenant_id, OffsetDateTime::now_utc());
        let mut data = serde_json::Map::new();
        data.insert("tenant_id".into(), json!(tenant_id.as_str()));
        data.insert("product_id".into(), json!(release.product_id));
        data.insert("version".into(), json!(release.version));
        data.insert("platform".into(), json!(release.platform));
        data.insert("arch".into(), json!(release.arch));
        data.insert("channel".into(), json!(release.channel));
        data.insert(
            "files".into(),
            json!(release.files.iter().map(|f| &f.name).collect::<Vec<_>>()),
        );
        recorder
            .push(EventType::ReleasePublished, None, data)
            .map_err(|e| CliError::Other(e.to_string()))?;
        store.record_events(recorder.finish()).await?;
        Ok::<(), CliError>(())
    };
    if let Err(err) = recorded.await {
        eprintln!("keystead: warning: the audit log did not record release.published: {err}");
    }
}

async fn change_status(
    versions: Versions,
    from: ReleaseStatus,
    to: ReleaseStatus,
    out: &mut Output,
) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(&versions.tenant_id)?;
    let product_id = ProductId::parse(&versions.product_id)?;
    let version = Version::parse(&versions.version)?;
    let platform = versions
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()?;
    let arch = versions.arch.as_deref().map(Arch::parse).transpose()?;
    let store = store().await?;
    known_product(&store, &tenant_id, &product_id).await?;
    let matching: Vec<Release> = store
        .releases(&tenant_id, &product_id)
        .await?
        .into_iter()
        .filter(|r| {
            r.version == version.as_str()
                && platform.is_none_or(|p| r.platform == p)
                && arch.is_none_or(|a| r.arch == a)
        })
        .collect();
    if matching.is_empty() {
        return Err(CliError::NotFound(format!(
            "no release {version} of product '{product_id}' matches"
        )));
    }
    let mut changed = Vec::new();
    for mut release in matching {
        if release.status == to {
            continue;
        }
        if release.status != from && to == ReleaseStatus::Published {
            return Err(CliError::Conflict(format!(
                "release {} for {}-{} is {}: only a draft can be published",
                release.version,
                release.platform,
                release.arch,
                release.status.as_str()
            )));
        }
        release.status = to;
        if to == ReleaseStatus::Published {
            release.published_at = Some(rfc3339(OffsetDateTime::now_utc()));
        }
        store.save_release(&tenant_id, &release).await?;
        if to == ReleaseStatus::Published {
            announce(&store, &tenant_id, &release).await;
        }
        changed.push(release);
    }
    let verb = match to {
        ReleaseStatus::Published => "Published",
        ReleaseStatus::Yanked => "Yanked",
        ReleaseStatus::Draft => "Drafted",
    };
    for release in &changed {
        out.line(format!(
            "{verb} {product_id} {} for {}-{}.",
            release.version, release.platform, release.arch
        ));
    }
    if changed.is_empty() {
        out.line(format!(
            "Nothing to change: release {version} is already {}.",
            to.as_str()
        ));
    }
    out.document(json!({"tenant_id": tenant_id, "product_id": product_id, "changed": changed}));
    Ok(())
}
