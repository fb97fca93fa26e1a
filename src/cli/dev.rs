//! `keystead dev …`: what the local stack and the tests need that a seller in production never runs.

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use clap::Subcommand;
use serde_yaml_ng::Value;

use super::{CliError, Output, aws_error};

/// The environment variable through which the function (and the CLI) learns the signing key's ARN.
const SIGNING_KEY_VAR: &str = "KEYSTEAD_SIGNING_KEY_ID";

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Create the DynamoDB tables defined in template.yaml (if missing) and print `export` lines for their names.
    CreateTables {
        #[arg(long, default_value = "template.yaml")]
        template: String,
        /// Local table names are `<prefix>-tenants`, `<prefix>-licenses`, …
        #[arg(long, default_value = "keystead")]
        prefix: String,
    },
    /// Create the KMS key that template.yaml gives the function (KEYSTEAD_SIGNING_KEY_ID), under an alias, and
    /// print the `export` line for its ARN. If the alias exists, print the ARN of its key instead.
    CreateKmsKey {
        #[arg(long, default_value = "template.yaml")]
        template: String,
        #[arg(long, default_value = "alias/keystead-local-signing")]
        alias: String,
    },
    /// Verify an SES sender identity (against the SES emulator locally).
    VerifySender { email: String },
    /// Create the bucket for product files that template.yaml gives the function (KEYSTEAD_FILES_BUCKET), with
    /// its versioning, encryption and public access block, and print the `export` line for its name.
    CreateBucket {
        #[arg(long, default_value = "template.yaml")]
        template: String,
        #[arg(long, default_value = "keystead-local-files")]
        name: String,
    },
    /// Create the webhook delivery queue and its dead-letter queue (SQS, moto's locally) as template.yaml's
    /// WebhookQueue, and the sign-in queue as its SigninQueue, and print the `export` lines for their URLs.
    CreateQueues {
        #[arg(long, default_value = "template.yaml")]
        template: String,
        /// Local queue names are `<prefix>-webhooks` and `<prefix>-webhooks-dlq`.
        #[arg(long, default_value = "keystead")]
        prefix: String,
    },
    /// Run the webhook dispatcher until stopped: the events table's stream (DynamoDB Local) fanned out to the
    /// delivery queue, and the queue's jobs delivered (the same code as the deployed keystead-dispatch); and the
    /// portal's queued sign-in links mailed (as the deployed function's SigninRequests event does).
    Dispatch,
}

/// What a local copy of the template's WebhookQueue needs: its visibility timeout and its redrive's receive count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueueSpec {
    visibility_timeout: i64,
    max_receive_count: i64,
}

fn webhook_queue_spec(template: &str) -> Result<QueueSpec, String> {
    let doc: Value =
        serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = template_resources(&doc)?;
    let props = resources
        .get("WebhookQueue")
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::SQS::Queue"))
        .and_then(|r| r.get("Properties"))
        .ok_or("template.yaml has no WebhookQueue (AWS::SQS::Queue) with Properties")?;
    let number = |value: Option<&Value>, what: &str| {
        value
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("template.yaml: WebhookQueue has no {what}"))
    };
    Ok(QueueSpec {
        visibility_timeout: number(props.get("VisibilityTimeout"), "VisibilityTimeout")?,
        max_receive_count: number(
            props
                .get("RedrivePolicy")
                .and_then(|r| r.get("maxReceiveCount")),
            "RedrivePolicy.maxReceiveCount",
        )?,
    })
}

/// The attributes of template.yaml's `SigninQueue` a local queue copies (its visibility timeout and retention).
fn signin_queue_attributes(
    template: &str,
) -> Result<Vec<(aws_sdk_sqs::types::QueueAttributeName, String)>, String> {
    use aws_sdk_sqs::types::QueueAttributeName as Attr;
    let doc: Value =
        serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let props = template_resources(&doc)?
        .get("SigninQueue")
        .and_then(|r| r.get("Properties"))
        .ok_or("template.yaml has no SigninQueue with Properties")?;
    [
        (Attr::VisibilityTimeout, "VisibilityTimeout"),
        (Attr::MessageRetentionPeriod, "MessageRetentionPeriod"),
    ]
    .into_iter()
    .map(|(attr, name)| {
        props
            .get(name)
            .and_then(Value::as_i64)
            .map(|value| (attr, value.to_string()))
            .ok_or_else(|| format!("template.yaml: SigninQueue has no {name}"))
    })
    .collect()
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: Vec<(aws_sdk_sqs::types::QueueAttributeName, String)>,
) -> Result<String, CliError> {
    let mut create = client.create_queue().queue_name(name);
    for (key, value) in attributes {
        create = create.attributes(key, value);
    }
    let created = create
        .send()
        .await
        .map_err(|e| aws_error("SQS CreateQueue", &e))?;
    created
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Aws("SQS CreateQueue: no queue URL".to_owned()))
}

/// The settings of the template's bucket for product files that a local copy reproduces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BucketSpec {
    logical_id: String,
    versioned: bool,
    encrypted: bool,
    private: bool,
}

fn files_bucket_spec(template: &str) -> Result<BucketSpec, String> {
    let doc: Value =
        serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = template_resources(&doc)?;
    let var = crate::files::Bucket::ENV;
    let logical_id = function_env(resources, var)
        .find_map(|v| match v {
            Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
            Value::Mapping(map) => map.get("Ref").and_then(Value::as_str),
            _ => None,
        })
        .ok_or_else(|| {
            format!("template.yaml: no function's environment has `{var}: !Ref <bucket>`")
        })?;
    let props = resources
        .get(logical_id)
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::S3::Bucket"))
        .ok_or_else(|| {
            format!("template.yaml: {var} names {logical_id}, which is not an AWS::S3::Bucket")
        })?
        .get("Properties");
    let get = |path: &[&str]| path.iter().try_fold(props?, |value, key| value.get(*key));
    let block = [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ];
    Ok(BucketSpec {
        logical_id: logical_id.to_owned(),
        versioned: get(&["VersioningConfiguration", "Status"]).and_then(Value::as_str)
            == Some("Enabled"),
        encrypted: get(&["BucketEncryption"]).is_some(),
        private: block.iter().all(|flag| {
            get(&["PublicAccessBlockConfiguration", flag]).and_then(Value::as_bool) == Some(true)
        }),
    })
}

/// The `AWS::KMS::Key` of the template that the function's environment names as
/// `KEYSTEAD_SIGNING_KEY_ID: !GetAtt <key>.Arn`, with what a local copy of it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KmsKeySpec {
    logical_id: String,
    description: Option<String>,
    key_spec: String,
    key_usage: String,
}

/// The logical id of a `!GetAtt X.Arn` / `{Fn::GetAtt: [X, Arn]}` / `!GetAtt [X, Arn]`.
fn get_att_arn(value: &Value) -> Option<&str> {
    let inner = match value {
        Value::Tagged(tagged) if tagged.tag == "!GetAtt" => &tagged.value,
        Value::Mapping(map) if map.len() == 1 => map.get("Fn::GetAtt")?,
        _ => return None,
    };
    let (id, attr) = match inner {
        Value::String(s) => s.split_once('.')?,
        Value::Sequence(list) => match list.as_slice() {
            [id, attr] => (id.as_str()?, attr.as_str()?),
            _ => return None,
        },
        _ => return None,
    };
    (attr == "Arn").then_some(id)
}

/// The template's `Resources`.
fn template_resources(doc: &Value) -> Result<&serde_yaml_ng::Mapping, String> {
    doc.get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| "template.yaml has no Resources".to_owned())
}

/// The values the template's functions give the environment variable `var`.
fn function_env<'a>(
    resources: &'a serde_yaml_ng::Mapping,
    var: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    resources
        .values()
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .filter_map(move |r| {
            r.get("Properties")?
                .get("Environment")?
                .get("Variables")?
                .get(var)
        })
}

fn signing_key_spec(template: &str) -> Result<KmsKeySpec, String> {
    let doc: Value =
        serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = template_resources(&doc)?;
    let logical_id = function_env(resources, SIGNING_KEY_VAR)
        .find_map(get_att_arn)
        .ok_or_else(|| {
            format!("template.yaml: no function's environment has `{SIGNING_KEY_VAR}: !GetAtt <key>.Arn`")
        })?;
    let key = resources
        .get(logical_id)
        .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::KMS::Key"))
        .ok_or_else(|| {
            format!(
                "template.yaml: {SIGNING_KEY_VAR} names {logical_id}, which is not an AWS::KMS::Key"
            )
        })?;
    let props = key.get("Properties");
    let text = |name: &str| props.and_then(|p| p.get(name)).and_then(Value::as_str);
    Ok(KmsKeySpec {
        logical_id: logical_id.to_owned(),
        description: text("Description").map(str::to_owned),
        key_spec: text("KeySpec").unwrap_or("SYMMETRIC_DEFAULT").to_owned(),
        key_usage: text("KeyUsage").unwrap_or("ENCRYPT_DECRYPT").to_owned(),
    })
}

/// A KMS alias name: `alias/` and letters, digits, `/`, `_`, `-`, not in the reserved `alias/aws/` space.
fn check_alias(alias: &str) -> Result<(), CliError> {
    let name = alias.strip_prefix("alias/").unwrap_or_default();
    let ok = !name.is_empty()
        && alias.len() <= 256
        && !alias.starts_with("alias/aws/")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "invalid KMS alias {alias:?}: alias/<letters, digits, /, _, ->, not alias/aws/…"
        )))
    }
}

fn kms_error<E: std::error::Error + 'static>(what: &str, err: &E) -> CliError {
    aws_error(&format!("KMS {what}"), err)
}

/// The ARN of the key `alias` points to, or None if there is no such alias. A key that cannot encrypt (disabled,
/// pending deletion) is a conflict: reusing it would fail later and less clearly.
async fn aliased_key(
    client: &aws_sdk_kms::Client,
    alias: &str,
) -> Result<Option<String>, CliError> {
    let described = match client.describe_key().key_id(alias).send().await {
        Ok(out) => out,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(kms_error("DescribeKey", &err)),
    };
    let metadata = described
        .key_metadata()
        .ok_or_else(|| CliError::Aws(format!("KMS DescribeKey {alias}: no key metadata")))?;
    let arn = metadata
        .arn()
        .ok_or_else(|| CliError::Aws(format!("KMS DescribeKey {alias}: no key ARN")))?;
    match metadata.key_state() {
        None | Some(KeyState::Enabled) => Ok(Some(arn.to_owned())),
        Some(state) => Err(CliError::Conflict(format!(
            "{alias} points to {arn}, which is {}; delete the alias or choose another with --alias",
            state.as_str()
        ))),
    }
}

/// The signing key's ARN: the key `alias` points to, or a new key like the template's under that alias.
async fn create_kms_key(
    client: &aws_sdk_kms::Client,
    spec: &KmsKeySpec,
    alias: &str,
) -> Result<String, CliError> {
    if let Some(arn) = aliased_key(client, alias).await? {
        return Ok(arn);
    }
    let created = client
        .create_key()
        .set_description(spec.description.clone())
        .key_spec(KeySpec::from(spec.key_spec.as_str()))
        .key_usage(KeyUsageType::from(spec.key_usage.as_str()))
        .send()
        .await
        .map_err(|e| kms_error("CreateKey", &e))?;
    let metadata = created
        .key_metadata()
        .ok_or_else(|| CliError::Aws("KMS CreateKey: no key metadata".to_owned()))?;
    let (key_id, arn) = (
        metadata.key_id().to_owned(),
        metadata.arn().unwrap_or_default().to_owned(),
    );
    let aliased = client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id)
        .send()
        .await;
    match aliased {
        Ok(_) if !arn.is_empty() => Ok(arn),
        Ok(_) => Err(CliError::Aws("KMS CreateKey: no key ARN".to_owned())),
        Err(err) => {
            // Without the alias nothing would find the new key again: drop it (best effort; KMS keeps it for
            // the shortest window, 7 days). Another run that created the alias meanwhile wins.
            let _ = client
                .schedule_key_deletion()
                .key_id(&key_id)
                .pending_window_in_days(7)
                .send()
                .await;
            let lost_race = err
                .as_service_error()
                .is_some_and(|e| e.is_already_exists_exception());
            match aliased_key(client, alias).await? {
                Some(arn) if lost_race => Ok(arn),
                _ => Err(kms_error("CreateAlias", &err)),
            }
        }
    }
}

pub async fn run(command: DevCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        DevCommand::CreateTables { template, prefix } => {
            let text = std::fs::read_to_string(&template)
                .map_err(|e| CliError::Config(format!("cannot read {template}: {e}")))?;
            let specs = crate::storage::table_specs(&text).map_err(CliError::Config)?;
            let sdk = local_aws().await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let names = crate::storage::create_tables(&client, &specs, &prefix).await?;
            let mut doc = serde_json::Map::new();
            for (var, name) in names {
                out.line(format!("export {var}={name}"));
                doc.insert(var, name.into());
            }
            out.document(doc.into());
        }
        DevCommand::CreateKmsKey { template, alias } => {
            check_alias(&alias)?;
            let text = std::fs::read_to_string(&template)
                .map_err(|e| CliError::Config(format!("cannot read {template}: {e}")))?;
            let spec = signing_key_spec(&text).map_err(CliError::Config)?;
            let sdk = local_aws().await;
            let client = aws_sdk_kms::Client::new(&sdk);
            let arn = create_kms_key(&client, &spec, &alias).await?;
            out.line(format!("export {SIGNING_KEY_VAR}={arn}"));
            out.document(serde_json::json!({ SIGNING_KEY_VAR: arn }));
        }
        DevCommand::CreateBucket { template, name } => {
            let text = std::fs::read_to_string(&template)
                .map_err(|e| CliError::Config(format!("cannot read {template}: {e}")))?;
            let spec = files_bucket_spec(&text).map_err(CliError::Config)?;
            let s3 = super::s3::S3::connect(Some(&name)).await?;
            s3.create_bucket(spec.versioned, spec.encrypted, spec.private)?;
            let var = crate::files::Bucket::ENV;
            out.line(format!("export {var}={name}"));
            out.document(serde_json::json!({ var: name, "template_bucket": spec.logical_id }));
        }
        DevCommand::CreateQueues { template, prefix } => {
            use aws_sdk_sqs::types::QueueAttributeName as Attr;
            let text = std::fs::read_to_string(&template)
                .map_err(|e| CliError::Config(format!("cannot read {template}: {e}")))?;
            let spec = webhook_queue_spec(&text).map_err(CliError::Config)?;
            let sdk = local_aws().await;
            let client = aws_sdk_sqs::Client::new(&sdk);
            let dlq = create_queue(&client, &format!("{prefix}-webhooks-dlq"), Vec::new()).await?;
            let dlq_arn = client
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(Attr::QueueArn)
                .send()
                .await
                .map_err(|e| aws_error("SQS GetQueueAttributes", &e))?
                .attributes()
                .and_then(|a| a.get(&Attr::QueueArn).cloned())
                .ok_or_else(|| CliError::Aws("SQS GetQueueAttributes: no QueueArn".to_owned()))?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": spec.max_receive_count,
            });
            let queue = create_queue(
                &client,
                &format!("{prefix}-webhooks"),
                vec![
                    (Attr::VisibilityTimeout, spec.visibility_timeout.to_string()),
                    (Attr::RedrivePolicy, redrive.to_string()),
                ],
            )
            .await?;
            let signin = create_queue(
                &client,
                &format!("{prefix}-signin"),
                signin_queue_attributes(&text).map_err(CliError::Config)?,
            )
            .await?;
            let (queue_var, dlq_var, signin_var) = (
                crate::dispatch::queue::Queue::URL_ENV,
                crate::dispatch::queue::Queue::DLQ_URL_ENV,
                crate::portal::SqsLinkQueue::URL_ENV,
            );
            out.line(format!("export {queue_var}={queue}"));
            out.line(format!("export {dlq_var}={dlq}"));
            out.line(format!("export {signin_var}={signin}"));
            out.document(serde_json::json!({ queue_var: queue, dlq_var: dlq, signin_var: signin }));
        }
        DevCommand::Dispatch => {
            let (sdk, tables) = super::configured().await?;
            let events = tables.events.clone();
            let dispatcher = crate::config::dispatcher(&sdk, tables).map_err(CliError::Config)?;
            let app = crate::config::app_from_env()
                .await
                .map_err(CliError::Config)?;
            super::dev_dispatch::run(std::sync::Arc::new(dispatcher), app, &sdk, &events).await?;
        }
        DevCommand::VerifySender { email } => {
            let email = crate::domain::Email::parse(&email)?;
            let sdk = local_aws().await;
            aws_sdk_ses::Client::new(&sdk)
                .verify_email_identity()
                .email_address(email.as_str())
                .send()
                .await
                .map_err(|e| aws_error("SES VerifyEmailIdentity", &e))?;
            out.line(format!("verified {email}"));
            out.document(serde_json::json!({"verified": email.as_str()}));
        }
    }
    Ok(())
}

/// The SDK configuration of the local helpers: generous timeouts, since the emulators' first answers (moto
/// loading a service on its first request) can take seconds on a busy machine, where the function's 1.2 s
/// budget would make `infra/local/up` fail for nothing.
async fn local_aws() -> aws_config::SdkConfig {
    crate::config::aws_with(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_attempt_timeout(std::time::Duration::from_secs(20))
            .operation_timeout(std::time::Duration::from_secs(60))
            .build(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_comes_from_the_template() {
        let spec = signing_key_spec(include_str!("../../template.yaml")).unwrap();
        assert_eq!(spec.logical_id, "SigningKey");
        assert_eq!(spec.key_spec, "SYMMETRIC_DEFAULT");
        assert_eq!(spec.key_usage, "ENCRYPT_DECRYPT");
        assert!(spec.description.is_some_and(|d| d.contains("keystead")));
    }

    #[test]
    fn the_key_is_found_in_either_get_att_form_and_must_be_a_kms_key() {
        let template = |env: &str, key_type: &str| {
            format!(
                "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Environment:\n        \
                 Variables:\n          {env}\n  Key:\n    Type: {key_type}\n    Properties:\n      Description: d\n"
            )
        };
        for env in [
            "KEYSTEAD_SIGNING_KEY_ID: !GetAtt Key.Arn",
            "KEYSTEAD_SIGNING_KEY_ID: !GetAtt [Key, Arn]",
            "KEYSTEAD_SIGNING_KEY_ID: {Fn::GetAtt: [Key, Arn]}",
        ] {
            let spec = signing_key_spec(&template(env, "AWS::KMS::Key")).unwrap();
            assert_eq!(
                spec,
                KmsKeySpec {
                    logical_id: "Key".to_owned(),
                    description: Some("d".to_owned()),
                    key_spec: "SYMMETRIC_DEFAULT".to_owned(),
                    key_usage: "ENCRYPT_DECRYPT".to_owned(),
                }
            );
        }
        for env in [
            "KEYSTEAD_SIGNING_KEY_ID: !Ref Key",
            "KEYSTEAD_SIGNING_KEY_ID: !GetAtt Key.KeyId",
            "OTHER: !GetAtt Key.Arn",
        ] {
            let err = signing_key_spec(&template(env, "AWS::KMS::Key")).unwrap_err();
            assert!(err.contains("no function's environment"), "{err}");
        }
        let err = signing_key_spec(&template(
            "KEYSTEAD_SIGNING_KEY_ID: !GetAtt Key.Arn",
            "AWS::SNS::Topic",
        ))
        .unwrap_err();
        assert!(err.contains("not an AWS::KMS::Key"), "{err}");
        assert!(signing_key_spec("Resources: [").is_err());
    }

    #[test]
    fn the_files_bucket_comes_from_the_template() {
        let spec = files_bucket_spec(include_str!("../../template.yaml")).unwrap();
        assert_eq!(
            spec,
            BucketSpec {
                logical_id: "ProductFilesBucket".to_owned(),
                versioned: true,
                encrypted: true,
                private: true,
            }
        );
    }

    #[test]
    fn aliases_are_checked() {
        assert!(check_alias("alias/keystead-local-signing").is_ok());
        assert!(check_alias("alias/team/keystead_2").is_ok());
        for bad in [
            "keystead",
            "alias/",
            "alias/aws/keystead",
            "alias/a b",
            "alias/a:b",
        ] {
            assert!(
                matches!(check_alias(bad), Err(CliError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
