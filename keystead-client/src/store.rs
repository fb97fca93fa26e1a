//! Where the key and the last good lease are kept between runs: a file in the app's data directory by default,
//! or anything implementing [`LeaseStore`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the client keeps: the key, the last lease keystead signed for this machine, and the tenant's key set
/// (so that the lease verifies offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The license key.
    pub key: String,
    /// The last good lease.
    pub lease: Option<String>,
    /// The tenant's key set (JWKS JSON) the lease verifies with.
    pub jwks: Option<String>,
}

/// A place to keep [`Stored`]; implement it to keep the lease elsewhere (the keychain, the app's settings).
pub trait LeaseStore: Send + Sync {
    /// What was saved, if anything readable.
    fn load(&self) -> Option<Stored>;
    /// Keeps `stored`, replacing what was there.
    fn save(&self, stored: &Stored) -> std::io::Result<()>;
    /// Forgets everything.
    fn clear(&self) -> std::io::Result<()>;
}

/// A JSON file, written atomically (a temporary file renamed over it), readable by the user only.
pub struct FileLeaseStore {
    path: PathBuf,
}

impl FileLeaseStore {
    /// A store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `<data dir>/<tenant>/<product>/lease.json` (as the other kits keep it): `$XDG_DATA_HOME` (or
    /// `~/.local/share`) on Linux, `~/Library/Application Support` on macOS, `%APPDATA%` on Windows.
    pub fn default_for(tenant: &str, product: &str) -> std::io::Result<Self> {
        let home = || std::env::var_os("HOME").map(PathBuf::from);
        let base = if cfg!(target_os = "windows") {
            std::env::var_os("APPDATA").map(PathBuf::from)
        } else if cfg!(target_os = "macos") {
            home().map(|h| h.join("Library/Application Support"))
        } else {
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".local/share")))
        };
        let base = base.ok_or_else(|| std::io::Error::other("no home or data directory"))?;
        Ok(Self::new(
            base.join("keystead")
                .join(tenant)
                .join(product)
                .join("lease.json"),
        ))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LeaseStore for FileLeaseStore {
    fn load(&self) -> Option<Stored> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, stored: &Stored) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string(stored).map_err(std::io::Error::other)?;
        // Readable by the user only: the file holds a license key.
        let temporary = self.path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&temporary)?, text.as_bytes())?;
        std::fs::rename(&temporary, &self.path)
    }

    fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Kept in memory only (tests, or an app that stores the lease itself).
#[derive(Default)]
pub struct MemoryLeaseStore(std::sync::Mutex<Option<Stored>>);

impl LeaseStore for MemoryLeaseStore {
    fn load(&self) -> Option<Stored> {
        self.0.lock().ok().and_then(|s| s.clone())
    }

    fn save(&self, stored: &Stored) -> std::io::Result<()> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(stored.clone());
        }
        Ok(())
    }

    fn clear(&self) -> std::io::Result<()> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
        Ok(())
    }
}
