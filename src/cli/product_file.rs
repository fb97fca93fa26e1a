//! `keystead product file <TENANT_ID> <PRODUCT_ID> <PATH>`: uploads the file a product is delivered as into the
//! stack's bucket (in parts, with progress, when it is large) and records its name, size and SHA-256 on the
//! product. Buyers then get a download link in their key emails and on the portal.

use std::io::Read;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::s3::S3;
use super::tenant::load;
use super::{CliError, Output, store};
use crate::domain::{ProductFile, ProductId, TenantId, rfc3339};
use crate::storage::StoreError;

fn open(path: &Path) -> Result<std::fs::File, CliError> {
    std::fs::File::open(path)
        .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", path.display())))
}

/// The file's SHA-256 (hex) and size, read once.
fn digest(path: &Path) -> Result<(String, u64), CliError> {
    let mut file = open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub async fn run(
    tenant_id: &str,
    product_id: &str,
    path: &str,
    out: &mut Output,
) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(tenant_id)?;
    let product_id = ProductId::parse(product_id)?;
    let path = Path::new(path);
    if !path.is_file() {
        return Err(CliError::Invalid(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let store = store().await?;
    let tenant = load(&store, &tenant_id).await?;
    if tenant.product(&product_id).is_none() {
        return Err(CliError::NotFound(format!(
            "product '{product_id}' does not exist for tenant '{tenant_id}'"
        )));
    }
    let s3 = S3::connect(None).await?;
    let (sha256, size) = digest(path)?;
    let name = ProductFile::safe_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let key = ProductFile::object_key(tenant_id.as_str(), product_id.as_str(), &sha256, &name);
    let multipart = size > super::s3::PART_SIZE as u64;
    s3.upload(&key, open(path)?, size, |sent| {
        if multipart {
            let percent = (sent * 100).checked_div(size).unwrap_or(100);
            eprintln!(
                "keystead: uploaded {} of {} ({percent}%)",
                mib(sent),
                mib(size)
            );
        }
    })?;
    let file = ProductFile {
        s3_key: key,
        name,
        size,
        sha256,
        uploaded_at: rfc3339(OffsetDateTime::now_utc()),
    };
    store
        .set_product_file(&tenant_id, &product_id, &file)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => CliError::NotFound(format!(
                "product '{product_id}' does not exist for tenant '{tenant_id}'"
            )),
            other => other.into(),
        })?;
    out.line(format!(
        "Uploaded {} ({}) for product {product_id} of tenant {tenant_id}.",
        file.name,
        file.human_size()
    ));
    out.fields(&[
        ("SHA-256", file.sha256.clone()),
        ("Bucket", format!("s3://{}/{}", s3.bucket.name, file.s3_key)),
    ]);
    out.line("Key emails and the portal now offer it to buyers whose license is active.");
    out.document(json!({
        "tenant_id": tenant_id,
        "product_id": product_id,
        "bucket": s3.bucket.name,
        "file": file,
    }));
    Ok(())
}
