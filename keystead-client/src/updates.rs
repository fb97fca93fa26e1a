//! Updates from the license-gated JSON feed: the newest release this license may have, its download (resumed
//! with HTTP `Range`, checked against its size and SHA-256 before anything else sees it), and a published patch
//! from the installed version when there is one (checked the same way, the full file when it does not verify).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Client, Error};

/// One file of a release, as the JSON feed lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReleaseFile {
    /// The file name.
    pub name: String,
    /// Its download route (answers `303` to the file).
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    #[serde(default)]
    /// `installer`, `blockmap`, `sparkle_delta`; `None` for a patch.
    pub kind: Option<String>,
    /// Patches: the version and file (by SHA-256) they apply to, and the file they give.
    #[serde(default)]
    /// The version a patch applies to.
    pub from_version: Option<String>,
    #[serde(default)]
    /// The SHA-256 of the file a patch applies to.
    pub from_sha256: Option<String>,
    #[serde(default)]
    /// The file a patch gives.
    pub target: Option<String>,
}

/// A release the license may have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Release {
    /// Its version (SemVer).
    pub version: String,
    /// Its channel.
    pub channel: String,
    /// `darwin`, `windows` or `linux`.
    pub platform: String,
    /// `aarch64`, `x86_64` or `universal`.
    pub arch: String,
    #[serde(default)]
    /// The release notes.
    pub notes: Option<String>,
    #[serde(default)]
    /// An update the user should not skip.
    pub critical: bool,
    /// Its files, the installer first.
    pub files: Vec<ReleaseFile>,
    #[serde(default)]
    /// Patches to the installer from earlier versions.
    pub patches: Vec<ReleaseFile>,
}

impl Release {
    /// The file updaters install.
    pub fn installer(&self) -> Option<&ReleaseFile> {
        self.files
            .iter()
            .find(|f| f.kind.as_deref().is_none_or(|k| k == "installer"))
    }
}

/// How a download was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloaded {
    /// The whole file (resumed if a part was there).
    Full,
    /// A patch applied to the installed file.
    Patched,
}

fn sha256_of(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

fn part_of(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

impl Client {
    fn key(&self) -> Result<String, Error> {
        self.store.load().map(|s| s.key).ok_or(Error::Invalid)
    }

    /// The newest release newer than `current` for this platform (`darwin`, `windows`, `linux`), arch
    /// (`aarch64`, `x86_64`) and channel (`stable`, `rc`, `beta`, `alpha`, `dev`), or `None`.
    pub fn check_update(
        &self,
        current: &str,
        platform: &str,
        arch: &str,
        channel: &str,
    ) -> Result<Option<Release>, Error> {
        let url = format!(
            "{}/v1/{}/products/{}/releases?platform={platform}&arch={arch}&channel={channel}&current={current}",
            self.api, self.tenant, self.product
        );
        let mut response = self
            .agent
            .get(&url)
            .header("x-license-key", self.key()?)
            .call()
            .map_err(|_| Error::OfflineWithoutLease)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(Self::refusal(status, &body));
        }
        #[derive(Deserialize)]
        struct Feed {
            update: Option<Release>,
        }
        let feed: Feed = serde_json::from_str(&body).map_err(|e| Error::Service {
            status,
            message: format!("unreadable feed: {e}"),
        })?;
        Ok(feed.update)
    }

    /// Downloads `release`'s installer to `dest`. With `installed` (the file of the version running now), a
    /// published patch from it is used when there is one, and the full file when the patch does not verify.
    pub fn download(
        &self,
        release: &Release,
        dest: &Path,
        installed: Option<&Path>,
    ) -> Result<Downloaded, Error> {
        let installer = release
            .installer()
            .ok_or_else(|| Error::Download("the release has no installer".to_owned()))?;
        if let Some(installed) = installed
            && self.patched(release, installer, installed, dest).is_ok()
        {
            return Ok(Downloaded::Patched);
        }
        self.fetch(installer, dest)?;
        Ok(Downloaded::Full)
    }

    fn patched(
        &self,
        release: &Release,
        installer: &ReleaseFile,
        installed: &Path,
        dest: &Path,
    ) -> Result<(), Error> {
        let from = sha256_of(installed)?;
        let patch = release
            .patches
            .iter()
            .find(|p| {
                p.from_sha256.as_deref() == Some(from.as_str())
                    && p.target.as_deref() == Some(installer.name.as_str())
            })
            .ok_or_else(|| Error::Download("no patch from the installed file".to_owned()))?;
        let patch_path = part_of(&dest.with_extension("patch"));
        self.fetch(patch, &patch_path)?;
        let result = apply_patch(&std::fs::read(installed)?, &std::fs::read(&patch_path)?);
        let _ = std::fs::remove_file(&patch_path);
        let bytes = result?;
        if bytes.len() as u64 != installer.size
            || hex::encode(Sha256::digest(&bytes)) != installer.sha256
        {
            return Err(Error::Download(
                "the patched file does not match".to_owned(),
            ));
        }
        let part = part_of(dest);
        std::fs::write(&part, &bytes)?;
        std::fs::rename(&part, dest)?;
        Ok(())
    }

    /// Where `file` is now: keystead answers `303` to a short-lived presigned URL (the key is not sent there).
    fn location(&self, file: &ReleaseFile) -> Result<String, Error> {
        let response = self
            .agent
            .get(&file.url)
            .header("x-license-key", self.key()?)
            .call()
            .map_err(|_| Error::OfflineWithoutLease)?;
        let status = response.status().as_u16();
        match response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
        {
            Some(location) if status == 303 => Ok(location.to_owned()),
            _ => {
                let mut response = response;
                let body = response.body_mut().read_to_string().unwrap_or_default();
                Err(Self::refusal(status, &body))
            }
        }
    }

    /// Downloads `file` to `dest` through `dest.part`, resuming what is there, then checks size and SHA-256.
    pub(crate) fn fetch(&self, file: &ReleaseFile, dest: &Path) -> Result<(), Error> {
        let part = part_of(dest);
        for _attempt in 0..3 {
            let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            if have > file.size {
                std::fs::remove_file(&part)?;
                continue;
            }
            if have < file.size {
                let location = self.location(file)?;
                let mut request = self.agent.get(&location);
                if have > 0 {
                    request = request.header("range", format!("bytes={have}-"));
                }
                let mut response = request
                    .call()
                    .map_err(|e| Error::Download(format!("the file's host: {e}")))?;
                let status = response.status().as_u16();
                let append = match status {
                    206 => true,
                    200 => false,
                    // An expired presigned URL: ask keystead again.
                    403 => continue,
                    status => {
                        return Err(Error::Download(format!(
                            "the file's host answered {status}"
                        )));
                    }
                };
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(&part)?;
                let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
                std::io::copy(&mut reader, &mut out)
                    .map_err(|e| Error::Download(format!("interrupted: {e}")))?;
                out.flush()?;
            }
            let size = std::fs::metadata(&part)?.len();
            if size == file.size && sha256_of(&part)? == file.sha256 {
                std::fs::rename(&part, dest)?;
                return Ok(());
            }
            if size >= file.size {
                // Complete but wrong: start over.
                std::fs::remove_file(&part)?;
            }
        }
        Err(Error::Download(format!(
            "{} does not match its published size and SHA-256",
            file.name
        )))
    }
}

/// Applies a `zstd-ref-prefix` patch (what `keystead release publish` makes) to `old`.
pub fn apply_patch(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, Error> {
    let failed = |e: std::io::Error| Error::Download(format!("the patch does not apply: {e}"));
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(patch, old).map_err(failed)?;
    decoder.window_log_max(31).map_err(failed)?;
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(failed)?;
    Ok(out)
}
