//! The few S3 requests the CLI makes (a product file's upload, in parts when it is large; the local bucket),
//! signed with the same SigV4 code the function presigns downloads with, sent with `ureq`. The seller's own
//! credentials sign them.

use std::io::Read;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::SignableBody;

use super::{CliError, first_line};
use crate::files::{Bucket, s3_settings, sign_request};

/// Files up to this size go up in one request; larger ones in parts of this size (S3's minimum part is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

pub struct S3 {
    pub bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

/// What S3 answered: status, the headers we read, and the body.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: String,
}

fn failed(what: &str, detail: &str) -> CliError {
    CliError::Aws(format!("S3 {what}: {}", first_line(detail)))
}

impl S3 {
    /// The bucket from `KEYSTEAD_FILES_BUCKET` (or `name`), signed with the SDK's credential chain.
    pub async fn connect(name: Option<&str>) -> Result<Self, CliError> {
        let sdk = crate::config::aws().await;
        let region = sdk.region().map(|r| r.as_ref().to_owned());
        let mut bucket = Bucket::from_env(region.as_deref());
        if let Some(name) = name {
            bucket = Some(Bucket {
                name: name.to_owned(),
                region: region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
                endpoint: std::env::var("AWS_ENDPOINT_URL_S3")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| v.trim_end_matches('/').to_owned()),
            });
        }
        let bucket = bucket.ok_or_else(|| {
            CliError::Config(format!(
                "missing environment variable {}: the stack's bucket for product files (the CliEnvironment output; `eval \"$(infra/local/up)\"` locally)",
                Bucket::ENV
            ))
        })?;
        let credentials = crate::files::credentials(&sdk)
            .await
            .map_err(|e| CliError::Config(e.0))?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Ok(Self {
            bucket,
            credentials,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// Signs and sends one request; the answer's body is the caller's to read.
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, CliError> {
        let url = self.bucket.url(key, query);
        let instructions = sign_request(
            &self.bucket.region,
            &self.credentials,
            SystemTime::now(),
            s3_settings(),
            (method, &url),
            &[],
            SignableBody::Bytes(body),
        )
        .map_err(|e| CliError::Config(e.0))?;
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let request = request
            .body(body.to_vec())
            .map_err(|e| failed(method, &e.to_string()))?;
        self.agent
            .run(request)
            .map_err(|e| failed(method, &e.to_string()))
    }

    fn send(&self, method: &str, key: &str, query: &str, body: &[u8]) -> Result<Answer, CliError> {
        let mut response = self.call(method, key, query, body)?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Ok(Answer { status, etag, body })
    }

    /// The size of the object at `key`, or `None` when there is none.
    pub fn object_size(&self, key: &str) -> Result<Option<u64>, CliError> {
        let response = self.call("HEAD", key, "", b"")?;
        match response.status().as_u16() {
            404 | 403 => Ok(None),
            200 => Ok(response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            status => Err(failed("HeadObject", &format!("HTTP {status}"))),
        }
    }

    /// The whole object at `key` (an earlier release's file, to make a patch from).
    pub fn get(&self, key: &str) -> Result<Vec<u8>, CliError> {
        let mut response = self.call("GET", key, "", b"")?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(failed("GetObject", &format!("HTTP {status} for {key}")));
        }
        response
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| failed("GetObject", &e.to_string()))
    }

    fn expect(&self, what: &str, answer: Answer) -> Result<Answer, CliError> {
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let code = xml_value(&answer.body, "Code").unwrap_or_default();
        let detail = match answer.status {
            403 => {
                format!("access denied ({code}): check the credentials' s3:PutObject on the bucket")
            }
            404 => format!("{code}: does the bucket {} exist?", self.bucket.name),
            status => format!("HTTP {status} {code}"),
        };
        Err(failed(what, &detail))
    }

    /// Creates the bucket (local stack only) with the template's settings; an existing bucket is kept.
    pub fn create_bucket(
        &self,
        versioned: bool,
        encrypted: bool,
        private: bool,
    ) -> Result<(), CliError> {
        let answer = self.send("PUT", "", "", b"")?;
        let exists = matches!(
            xml_value(&answer.body, "Code").as_deref(),
            Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
        );
        if !exists {
            self.expect("CreateBucket", answer)?;
        }
        if versioned {
            let body = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
            let answer = self.send("PUT", "", "versioning=", body.as_bytes())?;
            self.expect("PutBucketVersioning", answer)?;
        }
        if encrypted {
            let body = "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>";
            let answer = self.send("PUT", "", "encryption=", body.as_bytes())?;
            self.expect("PutBucketEncryption", answer)?;
        }
        if private {
            let body = "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls><BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets></PublicAccessBlockConfiguration>";
            let answer = self.send("PUT", "", "publicAccessBlock=", body.as_bytes())?;
            self.expect("PutPublicAccessBlock", answer)?;
        }
        Ok(())
    }

    /// Uploads `reader` (`size` bytes) to `key`: one request for a small file, parts otherwise; `progress` hears
    /// the bytes sent so far after each part.
    pub fn upload(
        &self,
        key: &str,
        mut reader: impl Read,
        size: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), CliError> {
        let read_part = |reader: &mut dyn Read| -> Result<Vec<u8>, CliError> {
            let mut part = Vec::with_capacity(PART_SIZE);
            reader
                .take(PART_SIZE as u64)
                .read_to_end(&mut part)
                .map_err(|e| CliError::Invalid(format!("cannot read the file: {e}")))?;
            Ok(part)
        };
        if size <= PART_SIZE as u64 {
            let body = read_part(&mut reader)?;
            let answer = self.send("PUT", key, "", &body)?;
            self.expect("PutObject", answer)?;
            progress(body.len() as u64);
            return Ok(());
        }
        let started = self.send("POST", key, "uploads=", b"")?;
        let started = self.expect("CreateMultipartUpload", started)?;
        let upload_id = xml_value(&started.body, "UploadId")
            .ok_or_else(|| failed("CreateMultipartUpload", "no UploadId in the answer"))?;
        let id = form_urlencoded::byte_serialize(upload_id.as_bytes()).collect::<String>();
        let result = (|| {
            let mut parts = Vec::new();
            let mut sent = 0u64;
            for number in 1.. {
                let body = read_part(&mut reader)?;
                if body.is_empty() {
                    break;
                }
                let answer = self.send(
                    "PUT",
                    key,
                    &format!("partNumber={number}&uploadId={id}"),
                    &body,
                )?;
                let answer = self.expect("UploadPart", answer)?;
                let etag = answer
                    .etag
                    .ok_or_else(|| failed("UploadPart", "no ETag in the answer"))?;
                parts.push(format!(
                    "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
                ));
                sent += body.len() as u64;
                progress(sent);
            }
            let complete = format!(
                "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</CompleteMultipartUpload>",
                parts.concat()
            );
            let answer = self.send("POST", key, &format!("uploadId={id}"), complete.as_bytes())?;
            let answer = self.expect("CompleteMultipartUpload", answer)?;
            // S3 can answer 200 with an error in the body.
            match xml_value(&answer.body, "Code") {
                Some(code) => Err(failed("CompleteMultipartUpload", &code)),
                None => Ok(()),
            }
        })();
        if result.is_err() {
            // Parts of an unfinished upload are billed until aborted.
            let _ = self.send("DELETE", key, &format!("uploadId={id}"), b"");
        }
        result
    }
}

/// The text of the first `<name>…</name>` in an S3 XML answer.
fn xml_value(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_from_s3_answers() {
        let xml = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>a&amp;b</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(xml_value(xml, "UploadId").as_deref(), Some("a&b"));
        assert_eq!(xml_value(xml, "Code"), None);
    }
}
