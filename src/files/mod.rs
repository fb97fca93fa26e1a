//! Product files in the stack's S3 bucket: where an object is (`Bucket`), and SigV4 signing with `aws-sigv4`
//! alone, so the function can hand out presigned downloads without linking the S3 SDK. The CLI's uploads sign
//! their requests with the same code.

#[cfg(feature = "cli")]
pub mod patch;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningInstructions, SigningParams, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Signing failed: no credentials, or a request aws-sigv4 cannot sign. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot sign the S3 request: {0}")]
pub struct SignError(pub String);

/// The stack's bucket for product files, and how to address it: virtual-hosted on AWS, path-style on a local
/// endpoint (`AWS_ENDPOINT_URL_S3`, moto's server).
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    /// `None`: `https://<bucket>.s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
}

impl Bucket {
    /// The bucket's name comes from `KEYSTEAD_FILES_BUCKET` (set by the template, `infra/local/up` locally).
    pub const ENV: &'static str = "KEYSTEAD_FILES_BUCKET";

    /// The bucket from the environment, or `None` when no bucket is configured (downloads are then off).
    pub fn from_env(region: Option<&str>) -> Option<Self> {
        let name = std::env::var(Self::ENV).ok().filter(|v| !v.is_empty())?;
        Some(Self {
            name,
            region: region.unwrap_or("us-east-1").to_owned(),
            endpoint: std::env::var("AWS_ENDPOINT_URL_S3")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.trim_end_matches('/').to_owned()),
        })
    }

    /// The URL of an object (or of the bucket itself for `key = ""`), with `query` appended as given.
    /// Keys are made of URL-safe characters (`ProductFile::object_key`), so they are used as they are.
    pub fn url(&self, key: &str, query: &str) -> String {
        let base = match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}/{key}", self.name),
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{key}",
                self.name, self.region
            ),
        };
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// Starts a presigned `GetObject`; `.sign()` finishes it.
    pub fn presigned_get_object(&self) -> PresignedGet<'_> {
        PresignedGet {
            bucket: self,
            key: String::new(),
            expires_in: Duration::from_secs(300),
            filename: None,
        }
    }
}

/// A presigned download being built: which object, for how long, saved under which name.
pub struct PresignedGet<'a> {
    bucket: &'a Bucket,
    key: String,
    expires_in: Duration,
    filename: Option<String>,
}

impl PresignedGet<'_> {
    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_owned();
        self
    }

    pub fn expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = expires_in;
        self
    }

    /// The name the browser saves the file as (`response-content-disposition`); a `ProductFile::safe_name`.
    pub fn filename(mut self, filename: &str) -> Self {
        self.filename = Some(filename.to_owned());
        self
    }

    /// The presigned URL: anyone holding it may GET the object until it expires, at S3's speed, with Range.
    pub fn sign(self, credentials: &Credentials, now: SystemTime) -> Result<String, SignError> {
        let query = self
            .filename
            .map(|name| {
                form_urlencoded::Serializer::new(String::new())
                    .append_pair(
                        "response-content-disposition",
                        &format!("attachment; filename=\"{name}\""),
                    )
                    .finish()
                    .replace('+', "%20")
            })
            .unwrap_or_default();
        let url = self.bucket.url(&self.key, &query);
        let mut settings = s3_settings();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(self.expires_in);
        let instructions = sign_request(
            &self.bucket.region,
            credentials,
            now,
            settings,
            ("GET", &url),
            &[],
            SignableBody::UnsignedPayload,
        )?;
        let mut signed = url;
        let mut separator = if query.is_empty() { '?' } else { '&' };
        for (name, value) in instructions.params() {
            signed.push(separator);
            separator = '&';
            signed.push_str(name);
            signed.push('=');
            signed.push_str(&percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string());
        }
        Ok(signed)
    }
}

/// RFC 3986 unreserved characters stay; everything else in a query value is percent-encoded (as SigV4 does).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// S3's SigV4 variant: the path is signed as sent (no normalisation, single encoding) and the payload hash is a
/// header of its own.
pub fn s3_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings
}

/// Signs one S3 request (`(method, url)`, its headers and body) and says what to add to it: headers, or query
/// parameters for a presigned URL.
pub fn sign_request(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
    settings: SigningSettings,
    (method, url): (&str, &str),
    headers: &[(&str, &str)],
    body: SignableBody<'_>,
) -> Result<SigningInstructions, SignError> {
    let fail = |e: &dyn std::fmt::Display| SignError(e.to_string());
    let identity: Identity = credentials.clone().into();
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let request =
        SignableRequest::new(method, url, headers.iter().copied(), body).map_err(|e| fail(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| fail(&e))?.into_parts();
    Ok(instructions)
}

/// The credentials of the process (the function's role on Lambda, the seller's locally), from the SDK's chain.
pub async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, SignError> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| SignError("no AWS credentials configured".to_owned()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| SignError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(endpoint: Option<&str>) -> Bucket {
        Bucket {
            name: "files".to_owned(),
            region: "eu-west-1".to_owned(),
            endpoint: endpoint.map(str::to_owned),
        }
    }

    #[test]
    fn presigned_urls_carry_the_signature_and_the_file_name() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let url = bucket(None)
            .presigned_get_object()
            .key("products/acme/app/abc/App.dmg")
            .filename("App.dmg")
            .expires_in(Duration::from_secs(300))
            .sign(
                &credentials,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            url.starts_with(
                "https://files.s3.eu-west-1.amazonaws.com/products/acme/app/abc/App.dmg?"
            ),
            "{url}"
        );
        for part in [
            "response-content-disposition=attachment%3B%20filename%3D%22App.dmg%22",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=300",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        assert!(!url.contains("secret"));
        let local = bucket(Some("http://127.0.0.1:5005")).url("k", "");
        assert_eq!(local, "http://127.0.0.1:5005/files/k");
    }
}
