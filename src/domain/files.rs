//! The file a product is delivered as: uploaded by the seller (`keystead product file`) into the stack's bucket,
//! downloaded by buyers whose license is active through short-lived presigned URLs.

use serde::{Deserialize, Serialize};

/// Where a product's file lives and what a buyer can check it against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductFile {
    /// The object key in the stack's bucket: `products/<tenant>/<product>/<sha256>/<name>`.
    pub s3_key: String,
    /// The file name buyers save it as: letters, digits, `.`, `-` and `_` only.
    pub name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file, shown next to every download link.
    pub sha256: String,
    pub uploaded_at: String,
}

impl ProductFile {
    /// A file name safe in an object key and a `Content-Disposition` header: other characters become `_`.
    pub fn safe_name(raw: &str) -> String {
        let name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .take(128)
            .collect();
        let name = name.trim_start_matches('.').to_owned();
        if name.is_empty() {
            "download".to_owned()
        } else {
            name
        }
    }

    pub fn object_key(tenant: &str, product: &str, sha256: &str, name: &str) -> String {
        format!("products/{tenant}/{product}/{sha256}/{name}")
    }

    /// `12.3 MB`, `512 KB`, `80 bytes`.
    pub fn human_size(&self) -> String {
        Self::human_size_of(self.size)
    }

    pub fn human_size_of(size: u64) -> String {
        let bytes = size as f64;
        if size >= 1_000_000 {
            format!("{:.1} MB", bytes / 1_000_000.0)
        } else if size >= 1_000 {
            format!("{:.0} KB", bytes / 1_000.0)
        } else {
            format!("{size} bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_keys_and_headers() {
        assert_eq!(ProductFile::safe_name("MyApp 2.0.dmg"), "MyApp_2.0.dmg");
        assert_eq!(ProductFile::safe_name("../etc/passwd"), "_etc_passwd");
        assert_eq!(ProductFile::safe_name("a\"b;c\r\n.zip"), "a_b_c__.zip");
        assert_eq!(ProductFile::safe_name(""), "download");
        assert_eq!(ProductFile::safe_name("..."), "download");
    }
}
