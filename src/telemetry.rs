//! Logging: JSON lines on Lambda (for CloudWatch and SAM's `LoggingConfig`), compact text elsewhere.
//! Nothing secret is ever passed to a log call; see the log test in `tests/`.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::util::TryInitError;

use crate::domain::{EmailFailure, TenantId};

/// What is logged when `RUST_LOG` is unset: keystead's own lines from info up, and only warnings from the AWS
/// SDK's configuration and runtime.
pub const DEFAULT_FILTER: &str = "info,aws_config=warn,aws_smithy_runtime=warn";

/// `RUST_LOG` when it is set and valid, else `DEFAULT_FILTER`. `RUST_LOG` is a comma-separated list of a default
/// level and `target=level` directives (`warn`, `warn,keystead=info`): `tracing_subscriber`'s `Targets`,
/// which needs no regular-expression engine in the function, unlike `EnvFilter`'s span and field filters.
pub fn filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .or_else(|| DEFAULT_FILTER.parse().ok())
        .unwrap_or_default()
}

pub fn init() {
    let result = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
        && std::env::var_os("KEYSTEAD_LOG_TEXT").is_none()
    {
        try_init_json(filter(), std::io::stderr)
    } else {
        let text = tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(MaskEmails(std::io::stderr))
            .with_filter(filter())
            .with_filter(sdk_cap());
        tracing_subscriber::registry().with(text).try_init()
    };
    drop(result);
}

/// Whatever `RUST_LOG` asks for, the AWS SDK's runtime and HTTP stack log at most at debug: at trace they write
/// request and response bodies, which hold license keys and buyers' addresses.
fn sdk_cap() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            [
                "aws_smithy_runtime",
                "aws_smithy_runtime_api",
                "aws_smithy_http",
                "aws_smithy_http_client",
                "aws_sdk_dynamodb",
                "aws_sdk_ses",
                "hyper",
                "hyper_util",
                "h2",
            ]
            .map(|target| (target, LevelFilter::DEBUG)),
        )
}

/// The Lambda format, one flat JSON object per line without a timestamp (CloudWatch adds its own), with `filter`
/// and the SDK cap, writing to `writer` through `MaskEmails`.
pub fn json_subscriber<W>(filter: Targets, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .without_time()
        .with_writer(MaskEmails(writer))
        .with_filter(filter)
        .with_filter(sdk_cap());
    tracing_subscriber::registry().with(json)
}

/// Installs `json_subscriber` as the global subscriber: `init` on Lambda with stderr, the log test with a buffer.
pub fn try_init_json<W>(filter: Targets, writer: W) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    json_subscriber(filter, writer).try_init()
}

/// A log writer that masks every email address in what it writes (`jane@example.com` becomes
/// `j***@example.com`), whoever wrote it. keystead logs buyers only masked, but an error from a provider can carry a
/// full address: SES in sandbox mode names the unverified recipient in its `MessageRejected` message.
#[derive(Clone, Copy, Debug)]
pub struct MaskEmails<M>(pub M);

impl<'w, M: MakeWriter<'w>> MakeWriter<'w> for MaskEmails<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'w self) -> Self::Writer {
        MaskingWriter(self.0.make_writer())
    }
}

/// The writer `MaskEmails` hands out. The formatter writes each event in one call, so no address is split.
pub struct MaskingWriter<W>(W);

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&mask_emails(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Replaces the local part of every `local@domain.tld` in `text` by its first character and `***`.
pub fn mask_emails(text: &[u8]) -> Cow<'_, [u8]> {
    if !text.contains(&b'@') {
        return Cow::Borrowed(text);
    }
    let local =
        |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b) || b >= 0x80;
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b >= 0x80;
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.iter().enumerate().filter(|(_, b)| **b == b'@') {
        if at < copied {
            continue;
        }
        let start = text[copied..at]
            .iter()
            .rposition(|&b| !local(b))
            .map_or(copied, |p| copied + p + 1);
        let end = text[at + 1..]
            .iter()
            .position(|&b| !domain(b))
            .map_or(text.len(), |p| at + 1 + p);
        let host = &text[at + 1..end];
        if start == at || !host.contains(&b'.') || host.starts_with(b".") {
            continue;
        }
        // Keep the first character whole even when it is multi-byte UTF-8.
        let first = std::str::from_utf8(&text[start..at])
            .ok()
            .and_then(|l| l.chars().next())
            .map_or(1, char::len_utf8);
        out.extend_from_slice(&text[copied..start + first]);
        out.extend_from_slice(b"***");
        copied = at;
    }
    out.extend_from_slice(&text[copied..]);
    Cow::Owned(out)
}

/// Whether metric lines go to stdout. The admin CLI turns them off: its stdout is the seller's answer.
static METRICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Stops `count_email_failure` from writing to stdout, for processes (the CLI) whose stdout is not a log.
pub fn disable_metrics() {
    METRICS.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a failed key email in CloudWatch through the embedded metric format: one JSON line on stdout, which
/// Lambda ships to CloudWatch Logs and CloudWatch turns into the `keystead/EmailFailures` metric, once in all and
/// once per `Reason` (the alarms watch each reason, so a notification says why).
pub fn count_email_failure(reason: EmailFailure, tenant: &TenantId) {
    if !METRICS.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    println!(
        "{}",
        email_failure_metric(reason, tenant, i64::try_from(millis).unwrap_or_default())
    );
}

/// The EMF document `count_email_failure` writes. The tenant is a property (searchable in the logs), not a
/// dimension: one metric per tenant would cost one custom metric each.
pub fn email_failure_metric(
    reason: EmailFailure,
    tenant: &TenantId,
    timestamp_millis: i64,
) -> serde_json::Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": "keystead",
                "Dimensions": [[], ["Reason"]],
                "Metrics": [{"Name": "EmailFailures", "Unit": "Count"}]
            }]
        },
        "Reason": reason.as_str(),
        "tenant": tenant.as_str(),
        "EmailFailures": 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_keeps_keystead_at_info_and_the_sdk_at_warn() {
        let filter: Targets = DEFAULT_FILTER.parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(filter.would_enable("keystead::app::record_sale", &tracing::Level::INFO));
        assert!(!filter.would_enable("keystead::app::record_sale", &tracing::Level::DEBUG));
        assert!(filter.would_enable("aws_config::loader", &tracing::Level::WARN));
        assert!(!filter.would_enable("aws_config::loader", &tracing::Level::INFO));
        assert!(!filter.would_enable("aws_smithy_runtime::client", &tracing::Level::INFO));
    }

    #[test]
    fn an_email_failure_counts_in_all_and_by_reason() {
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let doc = email_failure_metric(
            EmailFailure::RecipientNotVerified,
            &tenant,
            1_700_000_000_000,
        );
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "keystead");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[], ["Reason"]])
        );
        assert_eq!(doc["Reason"], "recipient_not_verified");
        assert_eq!(doc["EmailFailures"], 1);
        assert_eq!(doc["tenant"], "acme");
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
    }

    fn masked(text: &str) -> String {
        String::from_utf8(mask_emails(text.as_bytes()).into_owned()).unwrap_or_default()
    }

    #[test]
    fn masks_every_address_and_nothing_else() {
        assert_eq!(
            masked(
                r#"{"error":"identities failed the check in region US-EAST-1: jane.doe+gr@example.com, bo@b.co"}"#
            ),
            r#"{"error":"identities failed the check in region US-EAST-1: j***@example.com, b***@b.co"}"#
        );
        assert_eq!(
            masked("<Message>not verified x@unverified.example</Message>"),
            "<Message>not verified x***@unverified.example</Message>"
        );
        assert_eq!(masked("j***@example.com"), "j***@example.com");
        assert_eq!(masked("jürgen@example.de"), "j***@example.de");
        assert_eq!(masked("émile@example.fr"), "é***@example.fr");
        for untouched in [
            "no address",
            "user@localhost",
            "@example.com",
            "a@.com",
            "a@@b.co x",
            "trailing @",
        ] {
            assert_eq!(masked(untouched), untouched);
        }
    }
}
