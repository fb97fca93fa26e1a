//! Logging: JSON lines on Lambda (for CloudWatch and SAM's `LoggingConfig`), compact text elsewhere.
//! Nothing secret is ever passed to a log call; see the log test in `tests/`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new("info,aws_config=warn,aws_smithy_runtime=warn"))
        .unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
        && std::env::var_os("KEYMINT_LOG_TEXT").is_none()
    {
        builder.json().flatten_event(true).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
    drop(result);
}

/// Whether metric lines go to stdout. The admin CLI turns them off: its stdout is the seller's answer.
static METRICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Stops `count_email_failure` from writing to stdout, for processes (the CLI) whose stdout is not a log.
pub fn disable_metrics() {
    METRICS.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a failed key email in CloudWatch through the embedded metric format: one JSON line on stdout, which
/// Lambda ships to CloudWatch Logs and CloudWatch turns into the `keymint/EmailFailures` metric the alarm watches.
pub fn count_email_failure() {
    if !METRICS.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    println!(
        "{}",
        serde_json::json!({
            "_aws": {
                "Timestamp": i64::try_from(millis).unwrap_or_default(),
                "CloudWatchMetrics": [{
                    "Namespace": "keymint",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "EmailFailures", "Unit": "Count"}]
                }]
            },
            "EmailFailures": 1
        })
    );
}
