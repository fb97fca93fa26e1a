//! The update feeds' formats (issue 26; `../shared/UPDATES.md` has each with its source): Sparkle's appcast,
//! Tauri's dynamic-server answer, electron-updater's `latest*.yml` (generic provider), and our JSON. Each takes
//! the releases a license may have, already filtered and newest first, and where their files download from.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::domain::releases::{Asset, AssetKind, Channel, Platform, Release, released_at};

/// Where a release's files download from: the download route, with the key when the updater sent it in the URL.
pub struct Links {
    /// `https://<api>/v1/<tenant>/products/<product>` (or the path alone when the API's domain is unknown).
    pub product_base: String,
    /// `?key=…` when the feed was asked for with the key in its URL, so the updater's download carries it too.
    pub key_query: String,
}

impl Links {
    pub fn download(&self, release: &Release, asset: &Asset) -> String {
        format!(
            "{}/releases/{}/{}{}",
            self.product_base,
            encode(&release.version),
            encode(&asset.name),
            self.key_query
        )
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

fn parsed(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at, &Rfc3339).ok()
}

/// Sparkle's appcast: one `<item>` per macOS release, newest first, with its deltas. Sparkle picks among them
/// itself (version, channel, minimum system version).
pub fn appcast(title: &str, releases: &[Release], links: &Links) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\" xmlns:sparkle=\"http://www.andymatuschak.org/xml-namespaces/sparkle\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n<channel>\n",
    );
    let _ = writeln!(xml, "<title>{}</title>", xml_escape(title));
    for release in releases.iter().filter(|r| r.platform == Platform::Darwin) {
        let Some(installer) = release.installer() else {
            continue;
        };
        xml.push_str("<item>\n");
        let _ = writeln!(xml, "<title>{}</title>", xml_escape(&release.version));
        if let Some(at) = parsed(released_at(release)).and_then(|at| at.format(&Rfc2822).ok()) {
            let _ = writeln!(xml, "<pubDate>{at}</pubDate>");
        }
        let _ = writeln!(
            xml,
            "<sparkle:version>{}</sparkle:version>\n<sparkle:shortVersionString>{}</sparkle:shortVersionString>",
            xml_escape(release.build_number()),
            xml_escape(&release.version)
        );
        if release.channel != Channel::Stable {
            let _ = writeln!(
                xml,
                "<sparkle:channel>{}</sparkle:channel>",
                release.channel
            );
        }
        if let Some(min_os) = &release.min_os {
            let _ = writeln!(
                xml,
                "<sparkle:minimumSystemVersion>{}</sparkle:minimumSystemVersion>",
                xml_escape(min_os)
            );
        }
        if release.arch == crate::domain::releases::Arch::Aarch64 {
            xml.push_str("<sparkle:hardwareRequirements>arm64</sparkle:hardwareRequirements>\n");
        }
        if release.critical {
            xml.push_str("<sparkle:criticalUpdate/>\n");
        }
        if let Some(notes) = &release.notes {
            let _ = writeln!(
                xml,
                "<description sparkle:format=\"plain-text\">{}</description>",
                xml_escape(notes)
            );
        }
        let _ = writeln!(xml, "<enclosure {}/>", enclosure(release, installer, links));
        let deltas: Vec<String> = release
            .files
            .iter()
            .filter_map(|asset| match &asset.kind {
                AssetKind::SparkleDelta { from_build } => Some(format!(
                    "<enclosure sparkle:deltaFrom=\"{}\" {}/>",
                    xml_escape(from_build),
                    enclosure(release, asset, links)
                )),
                _ => None,
            })
            .collect();
        if !deltas.is_empty() {
            let _ = writeln!(
                xml,
                "<sparkle:deltas>\n{}\n</sparkle:deltas>",
                deltas.join("\n")
            );
        }
        xml.push_str("</item>\n");
    }
    xml.push_str("</channel>\n</rss>\n");
    xml
}

fn enclosure(release: &Release, asset: &Asset, links: &Links) -> String {
    let mut attributes = format!(
        "url=\"{}\" length=\"{}\" type=\"application/octet-stream\"",
        xml_escape(&links.download(release, asset)),
        asset.size
    );
    if let Some(signature) = &asset.sparkle_signature {
        let _ = write!(
            attributes,
            " sparkle:edSignature=\"{}\"",
            xml_escape(signature)
        );
    }
    attributes
}

/// Tauri's dynamic-server answer for one release: `version`, `notes`, `pub_date` (RFC 3339), `url`, `signature`.
pub fn tauri(release: &Release, links: &Links) -> Option<serde_json::Value> {
    let installer = release.installer()?;
    let signature = installer.tauri_signature.as_deref()?;
    Some(serde_json::json!({
        "version": release.version,
        "notes": release.notes.clone().unwrap_or_default(),
        "pub_date": released_at(release),
        "url": links.download(release, installer),
        "signature": signature,
    }))
}

/// One line of YAML: a double-quoted scalar (JSON's string escapes are YAML's).
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// electron-updater's channel file: the newest release's installers (every arch of the platform, as
/// electron-builder writes `latest-mac.yml` with both zips), with base64 SHA-512 and size. URLs are relative
/// to the feed (`../releases/<version>/<file>`), so the base URL's `?key=` goes with them.
pub fn electron(releases: &[Release]) -> Option<String> {
    let newest = releases.first()?;
    let same_version: Vec<&Release> = releases
        .iter()
        .filter(|r| r.version == newest.version)
        .collect();
    let installers: Vec<(&Release, &Asset)> = same_version
        .iter()
        .filter_map(|r| r.installer().map(|a| (*r, a)))
        .collect();
    let (_, first) = installers.first()?;
    let url = |release: &Release, asset: &Asset| {
        format!(
            "../releases/{}/{}",
            encode(&release.version),
            encode(&asset.name)
        )
    };
    let mut yaml = format!("version: {}\nfiles:\n", yaml_string(&newest.version));
    for (release, asset) in &installers {
        let _ = write!(
            yaml,
            "  - url: {}\n    sha512: {}\n    size: {}\n",
            yaml_string(&url(release, asset)),
            yaml_string(&asset.sha512),
            asset.size
        );
        if let Some(blockmap) = release.files.iter().find(|f| {
            matches!(f.kind, AssetKind::Blockmap) && f.name == format!("{}.blockmap", asset.name)
        }) {
            let _ = writeln!(yaml, "    blockMapSize: {}", blockmap.size);
        }
    }
    let _ = write!(
        yaml,
        "path: {}\nsha512: {}\nreleaseDate: {}\n",
        yaml_string(&first.name),
        yaml_string(&first.sha512),
        yaml_string(released_at(newest))
    );
    if let Some(notes) = &newest.notes {
        let _ = writeln!(yaml, "releaseNotes: {}", yaml_string(notes));
    }
    if let Some(min_os) = &newest.min_os {
        let _ = writeln!(yaml, "minimumSystemVersion: {}", yaml_string(min_os));
    }
    Some(yaml)
}

/// The JSON feed's view of a release: every file with its URL and digests, patches listed apart.
pub fn release_json(release: &Release, links: &Links) -> serde_json::Value {
    let file = |asset: &Asset| {
        let mut file = serde_json::json!({
            "name": asset.name,
            "url": links.download(release, asset),
            "size": asset.size,
            "sha256": asset.sha256,
            "sha512": asset.sha512,
        });
        match &asset.kind {
            AssetKind::Installer => file["kind"] = "installer".into(),
            AssetKind::Blockmap => file["kind"] = "blockmap".into(),
            AssetKind::SparkleDelta { from_build } => {
                file["kind"] = "sparkle_delta".into();
                file["delta_from"] = from_build.as_str().into();
            }
            AssetKind::Patch {
                from_version,
                from_sha256,
                target,
            } => {
                file["from_version"] = from_version.as_str().into();
                file["from_sha256"] = from_sha256.as_str().into();
                file["target"] = target.as_str().into();
                file["format"] = "zstd-ref-prefix".into();
            }
        }
        if let Some(signature) = &asset.sparkle_signature {
            file["sparkle_signature"] = signature.as_str().into();
        }
        if let Some(signature) = &asset.tauri_signature {
            file["tauri_signature"] = signature.as_str().into();
        }
        file
    };
    let (patches, files): (Vec<&Asset>, Vec<&Asset>) = release
        .files
        .iter()
        .partition(|a| matches!(a.kind, AssetKind::Patch { .. }));
    serde_json::json!({
        "version": release.version,
        "build": release.build_number(),
        "channel": release.channel,
        "platform": release.platform,
        "arch": release.arch,
        "notes": release.notes,
        "min_os": release.min_os,
        "critical": release.critical,
        "entitlements": release.entitlements,
        "created_at": release.created_at,
        "published_at": release.published_at,
        "files": files.into_iter().map(file).collect::<Vec<_>>(),
        "patches": patches.into_iter().map(file).collect::<Vec<_>>(),
    })
}
