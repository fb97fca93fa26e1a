//! `template.yaml` stays locked down and in step with the code (issue 4):
//!
//! * the function's IAM statements grant exactly the actions the request-path code calls (no missing permission,
//!   no extra one), found by scanning `src/` for AWS SDK fluent calls;
//! * no statement has a `*` resource, a resource containing `*`, `NotAction`/`NotResource`, or a managed policy;
//!   DynamoDB resources are the template's own tables by ARN, SES resources are identity ARNs, KMS resources are
//!   the template's own KMS key by `!GetAtt <key>.Arn`;
//! * every KMS statement works only with keystead's encryption context: its keys are exactly `tenant_id` and `kid`
//!   (`ForAllValues:StringEquals`) and a context is present (`Null` … `"false"`);
//! * every DynamoDB table is on-demand, encrypted, has TTL on `ttl` and point-in-time recovery, and is kept
//!   (`DeletionPolicy` and `UpdateReplacePolicy` `Retain`) when the stack or the resource goes away;
//! * every KMS key is a symmetric encryption key with rotation on, the longest deletion window, no key policy
//!   statement open to every principal, and is kept (`Retain`) like the tables: it alone can decrypt the
//!   tenants' signing keys;
//! * the function's environment names every table with a plain `!Ref`, and the signing key as
//!   `KEYSTEAD_SIGNING_KEY_ID: !GetAtt <key>.Arn`;
//! * every S3 bucket is private (all four public access blocks), encrypted, versioned and kept (`Retain`); the
//!   function reads product files only through presigned `GetObject` URLs (`presigned_get_object()` in the
//!   code), allowed on the objects of the template's own bucket (`!Sub "${Bucket.Arn}/<prefix>*"`, the one
//!   object wildcard allowed) and named in its environment as `KEYSTEAD_FILES_BUCKET: !Ref <bucket>`.
//!
//! The checks are plain functions over the template text, so the tests at the bottom feed them broken templates
//! and make sure each mistake is caught.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Files under `src/` that only the admin CLI runs: it uses the seller's own credentials, not the function's role.
const CLI_ONLY: &[&str] = &[
    "src/cli/",
    // `keystead dev dispatch`'s feed (DynamoDB Local's stream, moto's queue); Lambda feeds the deployed dispatcher.
    "src/dispatch/local.rs",
    "src/storage/admin.rs",
    "src/storage/schema.rs",
    "src/bin/keystead.rs",
];

/// SDK fluent operations (`client.<op>()`) and the IAM action each needs.
const OPERATIONS: &[(&str, &str)] = &[
    ("query", "dynamodb:Query"),
    ("get_item", "dynamodb:GetItem"),
    ("put_item", "dynamodb:PutItem"),
    ("update_item", "dynamodb:UpdateItem"),
    ("delete_item", "dynamodb:DeleteItem"),
    ("scan", "dynamodb:Scan"),
    ("batch_get_item", "dynamodb:BatchGetItem"),
    ("batch_write_item", "dynamodb:BatchWriteItem"),
    // TransactGetItems is authorized as GetItem on each item.
    ("transact_get_items", "dynamodb:GetItem"),
    ("send_email", "ses:SendEmail"),
    ("send_raw_email", "ses:SendRawEmail"),
    ("send_templated_email", "ses:SendTemplatedEmail"),
    ("send_bulk_templated_email", "ses:SendBulkTemplatedEmail"),
    // Envelope encryption of the tenants' signing keys.
    ("generate_data_key", "kms:GenerateDataKey"),
    ("decrypt", "kms:Decrypt"),
    // A presigned download is a GetObject that S3 authorizes as the role that signed it (src/files/).
    ("presigned_get_object", "s3:GetObject"),
    // The webhook queues (src/dispatch/).
    ("send_message", "sqs:SendMessage"),
    ("send_message_batch", "sqs:SendMessage"),
    ("change_message_visibility", "sqs:ChangeMessageVisibility"),
    ("delete_message", "sqs:DeleteMessage"),
    ("receive_message", "sqs:ReceiveMessage"),
];

/// The webhook dispatcher's code (`src/dispatch/`, which the API function never runs).
const DISPATCH_CODE: &str = "src/dispatch/";

/// What the dispatcher calls: its own code's calls (checked against a scan of `src/dispatch/` below) and the store
/// methods it uses (`audit_event`, `endpoints`, `endpoint`, `delivery`: GetItem and Query; `save_delivery`:
/// PutItem; `endpoint_failed`, `endpoint_recovered`: UpdateItem), and the secrets' KMS Decrypt.
const DISPATCHER_CALLS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "kms:Decrypt",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:SendMessage",
];

/// What Lambda's event source mappings do with a function's role on its behalf: read the table's stream, receive
/// and settle the queue's messages. Allowed to a function only with an event of that kind.
const STREAM_SOURCE_ACTIONS: &[&str] = &[
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];
const QUEUE_SOURCE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:GetQueueAttributes",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
];

/// The environment variable through which the function learns its bucket of product files.
const FILES_BUCKET_VAR: &str = "KEYSTEAD_FILES_BUCKET";

/// Operations this test cannot map to IAM actions yet; calling one (as an SDK fluent operation, without
/// arguments) fails the test until a mapping is added.
const UNMAPPED_OPERATIONS: &[&str] = &[
    "execute_statement",
    "batch_execute_statement",
    "execute_transaction",
    // KMS operations besides the two the signing code needs. `cipher.encrypt(nonce, data)` or
    // `key.sign(message)` take arguments, so they are not SDK operations and do not count.
    "encrypt",
    "re_encrypt",
    "generate_data_key_without_plaintext",
    "generate_data_key_pair",
    "generate_data_key_pair_without_plaintext",
    "generate_random",
    "generate_mac",
    "verify_mac",
    "sign",
    "verify",
    "get_public_key",
    "describe_key",
    "create_key",
    "create_grant",
    "create_alias",
    "list_aliases",
];

/// The encryption context keys keystead's KMS calls carry; the function's KMS permissions require exactly these.
const ENCRYPTION_CONTEXT_KEYS: &[&str] = &["kid", "tenant_id"];

/// The environment variable through which the function learns its KMS key's ARN.
const SIGNING_KEY_VAR: &str = "KEYSTEAD_SIGNING_KEY_ID";

/// TransactWriteItems is authorized per item: `TransactWriteItem::builder().<kind>(…)` needs the action.
const TRANSACT_ITEM_KINDS: &[(&str, &str)] = &[
    ("put", "dynamodb:PutItem"),
    ("update", "dynamodb:UpdateItem"),
    ("delete", "dynamodb:DeleteItem"),
    ("condition_check", "dynamodb:ConditionCheckItem"),
];

/// Receivers whose `.query()` is not DynamoDB (`http::Uri::query`).
const NOT_SDK_RECEIVERS: &[&str] = &["uri()", "uri", "url()", "url"];

/// Actions the Lambda service performs with the function's role on its behalf (writing its logs); allowed only
/// on the function's own log group.
const PLATFORM_LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

// ---------------------------------------------------------------------------------------------------------------
// Which actions the code calls.

/// Rust source with comments removed and the contents of string and char literals blanked, so that a call
/// mentioned in a doc comment or a message does not count.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a), which is kept.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Positions of `.<name>(` in code, allowing whitespace around the dot (method chains span lines).
fn method_calls(code: &str, name: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find(name) {
        let start = from + pos;
        let end = start + name.len();
        from = end;
        let before_ok = code[..start].trim_end().ends_with('.');
        let ident_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let after = code[end..].trim_start();
        if before_ok && !ident_before && after.starts_with('(') {
            found.push(start);
        }
    }
    found
}

/// The receiver expression's tail before the `.` of a call at `pos`, e.g. `uri()` in `req.uri().query()`.
fn receiver_tail(code: &str, pos: usize) -> String {
    let before = code[..pos].trim_end();
    let before = before.strip_suffix('.').unwrap_or(before).trim_end();
    let tail: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '(' || *c == ')')
        .collect();
    tail.chars().rev().collect()
}

/// IAM actions called by one file's code. `transact` collects the TransactWriteItem kinds separately, since
/// they count only when some request-path file actually sends a TransactWriteItems.
fn actions_in(
    code: &str,
    called: &mut BTreeSet<String>,
    transact: &mut BTreeSet<String>,
) -> Result<bool, String> {
    for &(op, action) in OPERATIONS {
        for pos in method_calls(code, op) {
            let call = &code[pos + op.len()..];
            if !call.trim_start().starts_with("()") {
                continue; // SDK fluent operations take no arguments; `iter.scan(0, f)` is not one.
            }
            let receiver = receiver_tail(code, pos);
            if op == "query" && NOT_SDK_RECEIVERS.contains(&receiver.as_str()) {
                continue;
            }
            called.insert(action.to_owned());
        }
    }
    for &op in UNMAPPED_OPERATIONS {
        let fluent = method_calls(code, op)
            .into_iter()
            .any(|pos| code[pos + op.len()..].trim_start().starts_with("()"));
        if fluent {
            return Err(format!(
                "the code calls `.{op}()`: add its IAM actions to tests/template.rs"
            ));
        }
    }
    let mut sends_transaction = false;
    for pos in method_calls(code, "transact_write_items") {
        if code[pos + "transact_write_items".len()..]
            .trim_start()
            .starts_with("()")
        {
            sends_transaction = true;
        }
    }
    let mut from = 0;
    while let Some(pos) = code[from..].find("TransactWriteItem::builder()") {
        let start = from + pos;
        let segment_end = code[start..].find(';').map_or(code.len(), |e| start + e);
        let segment = &code[start..segment_end];
        let mut kinds = 0;
        for &(kind, action) in TRANSACT_ITEM_KINDS {
            if !method_calls(segment, kind).is_empty() {
                transact.insert(action.to_owned());
                kinds += 1;
            }
        }
        if kinds == 0 {
            return Err(format!(
                "cannot tell which kind of TransactWriteItem is built here: {}",
                segment.lines().next().unwrap_or_default()
            ));
        }
        from = segment_end;
    }
    Ok(sends_transaction)
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The IAM actions the function's code calls: every `.rs` file under `src/` except the CLI-only ones, and the
/// function's own package (`keystead-api/src/`).
fn called_actions() -> BTreeSet<String> {
    called_actions_where(|relative| !relative.starts_with(DISPATCH_CODE))
}

/// The actions the dispatcher's own code calls.
fn dispatcher_code_actions() -> BTreeSet<String> {
    called_actions_where(|relative| relative.starts_with(DISPATCH_CODE))
}

fn called_actions_where(keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("keystead-api/src"), &mut files);
    files.sort();
    let mut called = BTreeSet::new();
    let mut transact = BTreeSet::new();
    let mut sends_transaction = false;
    let mut scanned = 0;
    for file in &files {
        let relative = file
            .strip_prefix(root)
            .expect("a file under the repository")
            .to_string_lossy()
            .replace('\\', "/");
        if CLI_ONLY.iter().any(|skip| relative.starts_with(skip)) || !keep(&relative) {
            continue;
        }
        scanned += 1;
        let source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let code = code_only(&source);
        sends_transaction |= actions_in(&code, &mut called, &mut transact)
            .unwrap_or_else(|e| panic!("{relative}: {e}"));
    }
    assert!(
        scanned > 3,
        "found only {scanned} request-path source files under {ROOT}/src"
    );
    if sends_transaction {
        assert!(
            !transact.is_empty(),
            "the code sends TransactWriteItems but no TransactWriteItem::builder() was found"
        );
        called.extend(transact);
    }
    called
}

// ---------------------------------------------------------------------------------------------------------------
// Reading CloudFormation: short (`!Ref X`) and long (`{Ref: X}`) intrinsic forms alike.

fn intrinsic<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == format!("!{name}").as_str() => Some(&tagged.value),
        Value::Mapping(map) if map.len() == 1 => {
            let long = if name == "Ref" {
                "Ref".to_owned()
            } else {
                format!("Fn::{name}")
            };
            map.get(long.as_str())
        }
        _ => None,
    }
}

fn ref_target(value: &Value) -> Option<&str> {
    intrinsic(value, "Ref").and_then(Value::as_str)
}

/// `(logical id, attribute)` of a `!GetAtt X.Arn` or `{Fn::GetAtt: [X, Arn]}`.
fn get_att(value: &Value) -> Option<(String, String)> {
    let inner = intrinsic(value, "GetAtt")?;
    if let Some(s) = inner.as_str() {
        let (id, attr) = s.split_once('.')?;
        return Some((id.to_owned(), attr.to_owned()));
    }
    let list = inner.as_sequence()?;
    match list.as_slice() {
        [id, attr] => Some((id.as_str()?.to_owned(), attr.as_str()?.to_owned())),
        _ => None,
    }
}

/// Every string inside a value, intrinsics included (the text of a `!Sub`, the parts of a `!Join`).
fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            strings_in(k, out);
            strings_in(v, out);
        }),
        Value::Tagged(tagged) => strings_in(&tagged.value, out),
        _ => {}
    }
}

fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn resource_type(resource: &Value) -> &str {
    resource
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// The checks.

struct Statement {
    origin: String,
    actions: Vec<String>,
    resources: Vec<Value>,
    condition: Option<Value>,
}

/// The strings of a condition value (`"x"` or `[x, y]`); booleans and numbers as their text.
fn condition_values(value: &Value) -> BTreeSet<String> {
    one_or_many(value)
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// What is wrong with a KMS statement's `Condition`: it must allow only keystead's encryption context, i.e. every
/// context key is one of ENCRYPTION_CONTEXT_KEYS (`ForAllValues:StringEquals`) and there is a context at all
/// (`Null: {kms:EncryptionContextKeys: "false"}`; `ForAllValues` alone also matches a request without one).
fn encryption_context_problems(origin: &str, condition: Option<&Value>) -> Vec<String> {
    let mut problems = Vec::new();
    let key_condition = |operator: &str| {
        condition
            .and_then(|c| c.get(operator))
            .and_then(|o| o.get("kms:EncryptionContextKeys"))
            .map(condition_values)
    };
    let wanted: BTreeSet<String> = ENCRYPTION_CONTEXT_KEYS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    match key_condition("ForAllValues:StringEquals") {
        Some(keys) if keys == wanted => {}
        Some(keys) => problems.push(format!(
            "{origin}: KMS allowed with encryption context keys {keys:?}, not exactly {wanted:?}"
        )),
        None => problems.push(format!(
            "{origin}: KMS without `ForAllValues:StringEquals: {{kms:EncryptionContextKeys: [tenant_id, kid]}}`"
        )),
    }
    if key_condition("Null") != Some(BTreeSet::from(["false".to_owned()])) {
        problems.push(format!(
            "{origin}: KMS without `\"Null\": {{kms:EncryptionContextKeys: \"false\"}}`, so a request without any \
             encryption context is allowed"
        ));
    }
    problems
}

/// Every problem with `template` given the actions the code calls; empty when it is right.
fn template_problems(template: &str, called: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let doc: Value = match serde_yaml_ng::from_str(template) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("template.yaml does not parse: {e}")],
    };
    let Some(resources) = doc.get("Resources").and_then(Value::as_mapping) else {
        return vec!["template.yaml has no Resources".to_owned()];
    };
    let resources: BTreeMap<String, &Value> = resources
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
        .collect();

    // Tables: kept, on-demand, encrypted, TTL on `ttl`, point-in-time recovery.
    let tables: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| resource_type(r) == "AWS::DynamoDB::Table")
        .map(|(id, _)| id.clone())
        .collect();
    if tables.is_empty() {
        problems.push("no AWS::DynamoDB::Table in the template".to_owned());
    }
    for id in &tables {
        let table = resources[id];
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if table.get(policy).and_then(Value::as_str) != Some("Retain") {
                problems.push(format!("{id}: {policy} is not Retain"));
            }
        }
        let props = table.get("Properties").cloned().unwrap_or(Value::Null);
        let ttl = props.get("TimeToLiveSpecification");
        if ttl.and_then(|t| t.get("Enabled")).and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{id}: TTL is not enabled"));
        }
        if ttl
            .and_then(|t| t.get("AttributeName"))
            .and_then(Value::as_str)
            != Some("ttl")
        {
            problems.push(format!(
                "{id}: TTL is not on the attribute `ttl` the code writes"
            ));
        }
        let pitr = props
            .get("PointInTimeRecoverySpecification")
            .and_then(|p| p.get("PointInTimeRecoveryEnabled"))
            .and_then(Value::as_bool);
        if pitr != Some(true) {
            problems.push(format!("{id}: point-in-time recovery is not enabled"));
        }
        if props.get("BillingMode").and_then(Value::as_str) != Some("PAY_PER_REQUEST") {
            problems.push(format!(
                "{id}: BillingMode is not PAY_PER_REQUEST (on-demand)"
            ));
        }
        let sse = props
            .get("SSESpecification")
            .and_then(|s| s.get("SSEEnabled"))
            .and_then(Value::as_bool);
        if sse != Some(true) {
            problems.push(format!("{id}: SSESpecification.SSEEnabled is not true"));
        }
    }

    // KMS keys: kept (they alone can decrypt the tenants' signing keys), symmetric, rotated, never open to all.
    let kms_keys: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| resource_type(r) == "AWS::KMS::Key")
        .map(|(id, _)| id.clone())
        .collect();
    if kms_keys.is_empty() && called.iter().any(|a| a.starts_with("kms:")) {
        problems.push("the code calls KMS but the template has no AWS::KMS::Key".to_owned());
    }
    for id in &kms_keys {
        let key = resources[id];
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if key.get(policy).and_then(Value::as_str) != Some("Retain") {
                problems.push(format!(
                    "{id}: {policy} is not Retain (deleting the key makes every tenant's signing key unrecoverable)"
                ));
            }
        }
        let props = key.get("Properties").cloned().unwrap_or(Value::Null);
        let spec = props.get("KeySpec").and_then(Value::as_str);
        let usage = props.get("KeyUsage").and_then(Value::as_str);
        if spec.is_some_and(|s| s != "SYMMETRIC_DEFAULT")
            || usage.is_some_and(|u| u != "ENCRYPT_DECRYPT")
        {
            problems.push(format!(
                "{id}: not a symmetric encryption key (KeySpec {spec:?}, KeyUsage {usage:?}); GenerateDataKey needs one"
            ));
        }
        if props.get("EnableKeyRotation").and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{id}: EnableKeyRotation is not true"));
        }
        if props
            .get("PendingWindowInDays")
            .is_some_and(|d| d.as_u64() != Some(30))
        {
            problems.push(format!(
                "{id}: PendingWindowInDays is not 30 (the longest window to cancel a deletion)"
            ));
        }
        if props.get("Enabled").and_then(Value::as_bool) == Some(false) {
            problems.push(format!("{id}: Enabled is false"));
        }
        if props.get("MultiRegion").and_then(Value::as_bool) == Some(true) {
            problems.push(format!(
                "{id}: MultiRegion copies the key out of the stack's region"
            ));
        }
        let policy = props.get("KeyPolicy").cloned().unwrap_or(Value::Null);
        for statement in policy.get("Statement").map(one_or_many).unwrap_or_default() {
            if statement.get("Effect").and_then(Value::as_str) == Some("Deny") {
                continue;
            }
            let mut principals = Vec::new();
            strings_in(
                statement.get("Principal").unwrap_or(&Value::Null),
                &mut principals,
            );
            if principals.iter().any(|p| p.contains('*')) || statement.get("NotPrincipal").is_some()
            {
                problems.push(format!(
                    "{id}: a KeyPolicy statement allows every principal"
                ));
            }
        }
    }

    // Buckets: private, encrypted, versioned, kept.
    let buckets: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| resource_type(r) == "AWS::S3::Bucket")
        .map(|(id, _)| id.clone())
        .collect();
    if buckets.is_empty() && called.iter().any(|a| a.starts_with("s3:")) {
        problems.push("the code calls S3 but the template has no AWS::S3::Bucket".to_owned());
    }
    for id in &buckets {
        let bucket = resources[id];
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if bucket.get(policy).and_then(Value::as_str) != Some("Retain") {
                problems.push(format!("{id}: {policy} is not Retain"));
            }
        }
        let props = bucket.get("Properties").cloned().unwrap_or(Value::Null);
        for flag in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            let on = props
                .get("PublicAccessBlockConfiguration")
                .and_then(|p| p.get(flag))
                .and_then(Value::as_bool);
            if on != Some(true) {
                problems.push(format!(
                    "{id}: PublicAccessBlockConfiguration.{flag} is not true"
                ));
            }
        }
        if props.get("BucketEncryption").is_none() {
            problems.push(format!("{id}: no BucketEncryption"));
        }
        let versioning = props
            .get("VersioningConfiguration")
            .and_then(|v| v.get("Status"))
            .and_then(Value::as_str);
        if versioning != Some("Enabled") {
            problems.push(format!("{id}: versioning is not Enabled"));
        }
        if props.get("AccessControl").is_some() || props.get("WebsiteConfiguration").is_some() {
            problems.push(format!(
                "{id}: has a canned ACL or a website: it must stay private"
            ));
        }
    }

    // The function: its environment names every table; its permissions come from one role of its own.
    let functions: Vec<(&String, &&Value)> = resources
        .iter()
        .filter(|(_, r)| resource_type(r) == "AWS::Serverless::Function")
        .collect();
    if functions.is_empty() {
        problems.push("no AWS::Serverless::Function".to_owned());
        return problems;
    }
    // The event sources Lambda reads for the functions of each role, and so what the role may do on their behalf
    // (the API function and the scheduled reconciliation share one role: the API's SQS event is the role's).
    let role_of = |function: &Value| {
        function
            .get("Properties")
            .and_then(|p| p.get("Role"))
            .map(|role| format!("{role:?}"))
            .unwrap_or_default()
    };
    let mut role_sources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, function) in &functions {
        role_sources.entry(role_of(function)).or_default().extend(
            function
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
                .filter_map(|(_, e)| e.get("Type").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    // Every function of the API's binary (the API's and the scheduled reconciliation's) is held to the same rules;
    // the dispatcher's binary to its own calls.
    for (function_id, function) in functions {
        let props = function.get("Properties").cloned().unwrap_or(Value::Null);
        let sources = role_sources
            .get(&role_of(function))
            .cloned()
            .unwrap_or_default();
        let dispatcher = function
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            == Some("keystead-dispatch");
        let dispatcher_calls: BTreeSet<String> =
            DISPATCHER_CALLS.iter().map(|a| (*a).to_owned()).collect();
        let called = if dispatcher {
            &dispatcher_calls
        } else {
            called
        };
        let mut on_behalf: BTreeSet<&str> = BTreeSet::new();
        if sources.contains("DynamoDB") {
            on_behalf.extend(STREAM_SOURCE_ACTIONS);
        }
        if sources.contains("SQS") {
            on_behalf.extend(QUEUE_SOURCE_ACTIONS);
        }

        let env: BTreeMap<String, String> = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), ref_target(v)?.to_owned())))
            .collect();
        for table in &tables {
            if !env.values().any(|target| target == table) {
                problems.push(format!(
                    "{function_id}: no environment variable is a plain `!Ref {table}`"
                ));
            }
        }
        for name in [
            "KEYSTEAD_TENANTS_TABLE",
            "KEYSTEAD_LICENSES_TABLE",
            "KEYSTEAD_PAYMENTS_TABLE",
            "KEYSTEAD_EVENTS_TABLE",
        ] {
            match env.get(name) {
                Some(target) if tables.contains(target) => {}
                _ => problems.push(format!("{function_id}: {name} is not a `!Ref` to a table")),
            }
        }

        let signing_key = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get(SIGNING_KEY_VAR))
            .and_then(get_att);
        match &signing_key {
        Some((id, attr)) if attr == "Arn" && kms_keys.contains(id) => {}
        _ if kms_keys.is_empty() && !called.iter().any(|a| a.starts_with("kms:")) => {}
        _ => problems.push(format!(
            "{function_id}: {SIGNING_KEY_VAR} is not `!GetAtt <an AWS::KMS::Key of this template>.Arn`"
        )),
    }
        let files_bucket = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get(FILES_BUCKET_VAR))
            .and_then(ref_target)
            .map(str::to_owned);
        for bucket in buckets
            .iter()
            .filter(|_| called.iter().any(|a| a.starts_with("s3:")))
        {
            if files_bucket.as_ref() != Some(bucket) {
                problems.push(format!(
                "{function_id}: the environment does not name the bucket {bucket} (`{FILES_BUCKET_VAR}: !Ref {bucket}`)"
            ));
            }
        }
        for key in &kms_keys {
            if signing_key.as_ref().is_none_or(|(id, _)| id != key) {
                problems.push(format!(
                "{function_id}: the environment does not name the KMS key {key} (`{SIGNING_KEY_VAR}: !GetAtt {key}.Arn`)"
            ));
            }
        }

        let log_group = props
            .get("LoggingConfig")
            .and_then(|l| l.get("LogGroup"))
            .and_then(ref_target)
            .map(str::to_owned);
        if log_group.as_ref().is_none_or(|g| {
            resources.get(g).map(|r| resource_type(r)) != Some("AWS::Logs::LogGroup")
        }) {
            problems.push(format!(
                "{function_id}: LoggingConfig.LogGroup is not a `!Ref` to an AWS::Logs::LogGroup"
            ));
        }

        let mut statements = Vec::new();
        if let Some(policies) = props.get("Policies") {
            // SAM's own policies: only inline statements are allowed (no managed policies, no policy templates).
            for policy in one_or_many(policies) {
                match policy.get("Statement") {
                Some(list) => {
                    for s in one_or_many(list) {
                        statements.push((format!("{function_id} Policies"), s.clone()));
                    }
                }
                None => problems.push(format!(
                    "{function_id}: Policies entry {policy:?} is a managed policy or a policy template"
                )),
            }
            }
        }
        match props.get("Role") {
        None if props.get("Policies").is_none() => problems.push(format!(
            "{function_id}: no Role, so SAM would attach AWSLambdaBasicExecutionRole (Resource \"*\")"
        )),
        None => problems.push(format!(
            "{function_id}: Policies without Role makes SAM attach AWSLambdaBasicExecutionRole (Resource \"*\")"
        )),
        Some(role) => match get_att(role) {
            Some((role_id, attr)) if attr == "Arn" && resources.get(&role_id).map(|r| resource_type(r)) == Some("AWS::IAM::Role") => {
                let role_props = resources[&role_id].get("Properties").cloned().unwrap_or(Value::Null);
                if role_props.get("ManagedPolicyArns").is_some() {
                    problems.push(format!("{role_id}: has ManagedPolicyArns; only inline statements are allowed"));
                }
                for policy in role_props.get("Policies").map(one_or_many).unwrap_or_default() {
                    let doc = policy.get("PolicyDocument").cloned().unwrap_or(Value::Null);
                    for s in doc.get("Statement").map(one_or_many).unwrap_or_default() {
                        statements.push((format!("{role_id} Policies"), s.clone()));
                    }
                }
                // Policies attached to the role from elsewhere in the template.
                for (id, resource) in &resources {
                    let kind = resource_type(resource);
                    if !matches!(kind, "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::IAM::RolePolicy") {
                        continue;
                    }
                    let p = resource.get("Properties").cloned().unwrap_or(Value::Null);
                    let mut refs = Vec::new();
                    strings_in(p.get("Roles").unwrap_or(&Value::Null), &mut refs);
                    strings_in(p.get("RoleName").unwrap_or(&Value::Null), &mut refs);
                    if refs.iter().any(|r| r == &role_id) {
                        let doc = p.get("PolicyDocument").cloned().unwrap_or(Value::Null);
                        for s in doc.get("Statement").map(one_or_many).unwrap_or_default() {
                            statements.push((format!("{id} ({kind})"), s.clone()));
                        }
                    }
                }
            }
            _ => problems.push(format!("{function_id}: Role is not `!GetAtt <an AWS::IAM::Role in this template>.Arn`")),
        },
    }

        let mut parsed = Vec::new();
        for (origin, s) in statements {
            let sid = s.get("Sid").and_then(Value::as_str).unwrap_or("(no Sid)");
            let origin = format!("{origin} {sid}");
            if s.get("Effect").and_then(Value::as_str) == Some("Deny") {
                continue;
            }
            for broad in ["NotAction", "NotResource", "NotPrincipal"] {
                if s.get(broad).is_some() {
                    problems.push(format!("{origin}: uses {broad}"));
                }
            }
            let actions: Vec<String> = s
                .get("Action")
                .map(one_or_many)
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{a:?}"))
                })
                .collect();
            let resources: Vec<Value> = s
                .get("Resource")
                .map(one_or_many)
                .unwrap_or_default()
                .into_iter()
                .cloned()
                .collect();
            if actions.is_empty() || resources.is_empty() {
                problems.push(format!("{origin}: no Action or no Resource"));
            }
            parsed.push(Statement {
                origin,
                actions,
                resources,
                condition: s.get("Condition").cloned(),
            });
        }

        let mut granted = BTreeSet::new();
        for st in &parsed {
            for action in &st.actions {
                if action.contains('*') {
                    problems.push(format!("{}: action {action} is a wildcard", st.origin));
                }
            }
            for resource in &st.resources {
                let mut texts = Vec::new();
                strings_in(resource, &mut texts);
                let s3_objects = st.actions.iter().all(|a| a.starts_with("s3:"))
                    && bucket_objects(resource, &buckets);
                if texts.iter().any(|t| t.contains('*')) && !s3_objects {
                    problems.push(format!(
                        "{}: resource {resource:?} is or contains *",
                        st.origin
                    ));
                }
            }
            let is_logs = st
                .actions
                .iter()
                .all(|a| PLATFORM_LOG_ACTIONS.contains(&a.as_str()));
            if is_logs {
                for resource in &st.resources {
                    let own = get_att(resource)
                        .is_some_and(|(id, attr)| Some(&id) == log_group.as_ref() && attr == "Arn");
                    if !own {
                        problems.push(format!(
                        "{}: log actions on {resource:?}, not `!GetAtt <the function's log group>.Arn`",
                        st.origin
                    ));
                    }
                }
                continue;
            }
            if st.actions.iter().any(|a| a.starts_with("kms:")) {
                problems.extend(encryption_context_problems(
                    &st.origin,
                    st.condition.as_ref(),
                ));
            }
            for action in &st.actions {
                granted.insert(action.clone());
                let allowed = |resource: &Value| -> bool {
                    if STREAM_SOURCE_ACTIONS.contains(&action.as_str()) {
                        // A table of this template's stream.
                        return get_att(resource)
                            .is_some_and(|(id, attr)| attr == "StreamArn" && tables.contains(&id));
                    }
                    if action.starts_with("sqs:") {
                        // A queue of this template, by ARN.
                        return get_att(resource).is_some_and(|(id, attr)| {
                            attr == "Arn"
                                && resources.get(&id).map(|r| resource_type(r))
                                    == Some("AWS::SQS::Queue")
                        });
                    }
                    if action.starts_with("dynamodb:") {
                        // A table of this template by ARN, or one of its indexes.
                        if let Some((id, attr)) = get_att(resource) {
                            return attr == "Arn" && tables.contains(&id);
                        }
                        if let Some(sub) = intrinsic(resource, "Sub").and_then(Value::as_str) {
                            return tables.iter().any(|t| {
                                sub.strip_prefix(&format!("${{{t}.Arn}}/index/"))
                                    .is_some_and(|index| !index.is_empty())
                            });
                        }
                        false
                    } else if action.starts_with("kms:") {
                        // This template's own key by ARN: never `*`, an alias, or a key elsewhere.
                        get_att(resource)
                            .is_some_and(|(id, attr)| attr == "Arn" && kms_keys.contains(&id))
                    } else if action.starts_with("s3:") {
                        // Objects of this template's own bucket, by ARN.
                        bucket_objects(resource, &buckets)
                    } else if action.starts_with("ses:") {
                        // The sender identity (or its domain), or this template's own configuration set.
                        let mut texts = Vec::new();
                        strings_in(resource, &mut texts);
                        let ses = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:";
                        texts.first().is_some_and(|t| {
                            t.starts_with(&format!("{ses}identity/"))
                                || t.strip_prefix(&format!("{ses}configuration-set/${{"))
                                    .and_then(|rest| rest.strip_suffix('}'))
                                    .is_some_and(|id| {
                                        resources.get(id).map(|r| resource_type(r))
                                            == Some("AWS::SES::ConfigurationSet")
                                    })
                        })
                    } else {
                        false
                    }
                };
                for resource in &st.resources {
                    if !allowed(resource) {
                        problems.push(format!(
                            "{}: {action} on {resource:?}, not one of this stack's own resources",
                            st.origin
                        ));
                    }
                }
            }
        }

        for action in granted.difference(called) {
            if on_behalf.contains(action.as_str()) {
                continue;
            }
            problems.push(format!(
                "{function_id}: IAM grants {action}, which its code never calls"
            ));
        }
        for action in called.difference(&granted) {
            problems.push(format!(
                "{function_id}: the code calls {action}, which the function's role does not grant"
            ));
        }
    }
    problems
}

/// `!Sub "${Bucket.Arn}/<prefix>*"` for a bucket of this template: its objects (under a prefix), and only the
/// trailing `*` as wildcard.
fn bucket_objects(resource: &Value, buckets: &BTreeSet<String>) -> bool {
    let Some(sub) = intrinsic(resource, "Sub").and_then(Value::as_str) else {
        return false;
    };
    buckets.iter().any(|bucket| {
        sub.strip_prefix(&format!("${{{bucket}.Arn}}/"))
            .and_then(|rest| rest.strip_suffix('*'))
            .is_some_and(|prefix| {
                prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
            })
    })
}

fn read_template() -> String {
    let path = Path::new(ROOT).join("template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The routes API Gateway sends to the function: every `HttpApi` event of every function, as (method, path).
fn template_routes(template: &str) -> BTreeSet<(String, String)> {
    let doc: Value = serde_yaml_ng::from_str(template).unwrap();
    let mut routes = BTreeSet::new();
    let Some(resources) = doc.get("Resources").and_then(Value::as_mapping) else {
        return routes;
    };
    for resource in resources.values() {
        let events = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping);
        for event in events.into_iter().flat_map(|events| events.values()) {
            if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let field = |name: &str| {
                event
                    .get("Properties")
                    .and_then(|p| p.get(name))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            routes.insert((field("Method").to_ascii_uppercase(), field("Path")));
        }
    }
    routes
}

/// What differs between the router's table and the template's routes, each route named by the side it is on.
fn route_differences(template: &str) -> Vec<String> {
    let template = template_routes(template);
    let router: BTreeSet<(String, String)> = keystead::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let only = |side: &str, a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>| {
        a.difference(b)
            .map(|(method, path)| format!("{method} {path} only in {side}"))
            .collect::<Vec<_>>()
    };
    let mut differences = only("the router (src/http/mod.rs)", &router, &template);
    differences.extend(only("template.yaml", &template, &router));
    differences
}

// ---------------------------------------------------------------------------------------------------------------
// The template as it is.

#[test]
fn template_grants_exactly_what_the_code_calls_and_keeps_its_data() {
    let called = called_actions();
    let problems = template_problems(&read_template(), &called);
    assert!(
        problems.is_empty(),
        "template.yaml (code calls {called:?}):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_dispatcher_calls_what_its_role_is_checked_against_and_the_api_only_queues_sign_ins() {
    let own = dispatcher_code_actions();
    let declared: BTreeSet<String> = DISPATCHER_CALLS.iter().map(|a| (*a).to_owned()).collect();
    assert!(
        own.is_subset(&declared),
        "src/dispatch/ calls {:?}, not in DISPATCHER_CALLS",
        own.difference(&declared).collect::<Vec<_>>()
    );
    assert!(own.contains("sqs:SendMessage") && own.contains("sqs:ChangeMessageVisibility"));
    assert_eq!(
        called_actions()
            .iter()
            .filter(|a| a.starts_with("sqs:"))
            .collect::<Vec<_>>(),
        ["sqs:SendMessage"],
        "the API function only queues sign-in requests (Lambda receives them on its behalf)"
    );
}

#[test]
fn the_template_routes_exactly_the_routers_routes() {
    let differences = route_differences(&read_template());
    assert!(differences.is_empty(), "{differences:#?}");
    assert_eq!(
        template_routes(&read_template()).len(),
        keystead::http::ROUTES.len()
    );
}

#[test]
fn a_route_on_one_side_only_or_with_another_method_is_caught() {
    let template = read_template();
    let missing = template.replace(
        "            Method: POST\n            Path: /v1/{tenant_id}/licenses/deactivate\n",
        "            Method: POST\n            Path: /v1/{tenant_id}/licenses/deactivated\n",
    );
    assert_ne!(missing, template);
    assert_eq!(
        route_differences(&missing),
        [
            "POST /v1/{tenant_id}/licenses/deactivate only in the router (src/http/mod.rs)",
            "POST /v1/{tenant_id}/licenses/deactivated only in template.yaml",
        ]
    );
    let method = template.replace(
        "            Method: GET\n            Path: /v1/{tenant_id}/jwks.json\n",
        "            Method: POST\n            Path: /v1/{tenant_id}/jwks.json\n",
    );
    assert_ne!(method, template);
    assert_eq!(
        route_differences(&method),
        [
            "GET /v1/{tenant_id}/jwks.json only in the router (src/http/mod.rs)",
            "POST /v1/{tenant_id}/jwks.json only in template.yaml",
        ]
    );
}

#[test]
fn the_request_path_calls_at_least_the_sale_operations() {
    // Guards the scanner itself: a sale reads the tenant, writes a transaction, sends and records an email.
    let called = called_actions();
    // Signing a lease decrypts the tenant's key, and a tenant's first lease generates it.
    for action in [
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "ses:SendEmail",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "s3:GetObject",
    ] {
        assert!(
            called.contains(action),
            "scanner missed {action}: {called:?}"
        );
    }
}

#[test]
fn local_tables_come_from_the_same_template() {
    // The local stack and the integration tests create their tables with this reader.
    let specs = keystead::storage::table_specs(&read_template()).unwrap();
    let mut vars: Vec<&str> = specs.iter().map(|s| s.env_var.as_str()).collect();
    vars.sort_unstable();
    assert_eq!(
        vars,
        [
            "KEYSTEAD_EVENTS_TABLE",
            "KEYSTEAD_LICENSES_TABLE",
            "KEYSTEAD_PAYMENTS_TABLE",
            "KEYSTEAD_TENANTS_TABLE"
        ]
    );
    assert!(
        specs
            .iter()
            .all(|s| s.ttl_attribute.as_deref() == Some("ttl"))
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The checks catch what they are meant to catch.

const GOOD: &str = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt FnRole.Arn
      LoggingConfig: { LogFormat: JSON, LogGroup: !Ref Logs }
      Environment:
        Variables:
          KEYSTEAD_TENANTS_TABLE: !Ref TenantsTable
          KEYSTEAD_LICENSES_TABLE: !Ref LicensesTable
          KEYSTEAD_PAYMENTS_TABLE: !Ref LicensesTable
          KEYSTEAD_EVENTS_TABLE: !Ref LicensesTable
          KEYSTEAD_SIGNING_KEY_ID: !GetAtt SigningKey.Arn
          KEYSTEAD_FILES_BUCKET: !Ref Files
  Logs:
    Type: AWS::Logs::LogGroup
  FnRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: fn
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [logs:CreateLogStream, logs:PutLogEvents]
                Resource: !GetAtt Logs.Arn
              - Effect: Allow
                Action: [dynamodb:Query, dynamodb:PutItem]
                Resource: [!GetAtt TenantsTable.Arn, !GetAtt LicensesTable.Arn]
              - Effect: Allow
                Action: ses:SendEmail
                Resource: !Sub arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SenderIdentity}
              - Sid: Downloads
                Effect: Allow
                Action: s3:GetObject
                Resource: !Sub "${Files.Arn}/products/*"
              - Sid: Envelope
                Effect: Allow
                Action: [kms:Decrypt, kms:GenerateDataKey]
                Resource: !GetAtt SigningKey.Arn
                Condition:
                  ForAllValues:StringEquals: { kms:EncryptionContextKeys: [tenant_id, kid] }
                  "Null": { kms:EncryptionContextKeys: "false" }
  SigningKey:
    Type: AWS::KMS::Key
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      Description: signing keys
      KeySpec: SYMMETRIC_DEFAULT
      KeyUsage: ENCRYPT_DECRYPT
      EnableKeyRotation: true
      PendingWindowInDays: 30
      KeyPolicy:
        Statement:
          - Effect: Allow
            Principal: { AWS: !Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:root" }
            Action: kms:*
            Resource: "*"
  Files:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: AES256 } }] }
      VersioningConfiguration: { Status: Enabled }
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true }
  TenantsTable:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      BillingMode: PAY_PER_REQUEST
      TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }
      SSESpecification: { SSEEnabled: true }
  LicensesTable:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      BillingMode: PAY_PER_REQUEST
      TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }
      SSESpecification: { SSEEnabled: true }
"#;

fn good_calls() -> BTreeSet<String> {
    [
        "dynamodb:Query",
        "dynamodb:PutItem",
        "ses:SendEmail",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "s3:GetObject",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The problems of GOOD with `from` replaced by `to` (which must occur exactly once).
fn problems_after(from: &str, to: &str) -> Vec<String> {
    assert_eq!(
        GOOD.matches(from).count(),
        1,
        "{from:?} must occur once in GOOD"
    );
    template_problems(&GOOD.replacen(from, to, 1), &good_calls())
}

fn assert_caught(from: &str, to: &str, expected: &str) {
    let problems = problems_after(from, to);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "replacing {from:?} with {to:?} should report {expected:?}, got {problems:?}"
    );
}

#[test]
fn the_reference_template_passes() {
    assert_eq!(template_problems(GOOD, &good_calls()), Vec::<String>::new());
}

#[test]
fn a_star_resource_is_rejected() {
    assert_caught(
        "Resource: [!GetAtt TenantsTable.Arn, !GetAtt LicensesTable.Arn]",
        "Resource: \"*\"",
        "is or contains *",
    );
    assert_caught(
        "identity/${SenderIdentity}",
        "identity/*",
        "is or contains *",
    );
    assert_caught(
        "Resource: [!GetAtt TenantsTable.Arn, !GetAtt LicensesTable.Arn]",
        "Resource: !Sub \"arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*\"",
        "is or contains *",
    );
    assert_caught(
        "Resource: !GetAtt Logs.Arn",
        "Resource: \"*\"",
        "is or contains *",
    );
}

#[test]
fn an_action_the_code_does_not_call_is_rejected() {
    assert_caught(
        "Action: [dynamodb:Query, dynamodb:PutItem]",
        "Action: [dynamodb:Query, dynamodb:PutItem, dynamodb:Scan]",
        "Fn: IAM grants dynamodb:Scan, which its code never calls",
    );
    assert_caught(
        "Action: [dynamodb:Query, dynamodb:PutItem]",
        "Action: [\"dynamodb:*\"]",
        "is a wildcard",
    );
}

#[test]
fn an_action_the_code_calls_but_the_role_lacks_is_rejected() {
    assert_caught(
        "Action: [dynamodb:Query, dynamodb:PutItem]",
        "Action: [dynamodb:Query]",
        "Fn: the code calls dynamodb:PutItem, which the function's role does not grant",
    );
}

#[test]
fn resources_outside_the_stack_and_managed_policies_are_rejected() {
    assert_caught(
        "Resource: [!GetAtt TenantsTable.Arn, !GetAtt LicensesTable.Arn]",
        "Resource: [arn:aws:dynamodb:us-east-1:123456789012:table/other]",
        "not one of this stack's own resources",
    );
    assert_caught(
        "      Policies:\n        - PolicyName: fn",
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n      Policies:\n        - PolicyName: fn",
        "has ManagedPolicyArns",
    );
    assert_caught(
        "      Role: !GetAtt FnRole.Arn\n",
        "",
        "AWSLambdaBasicExecutionRole",
    );
    assert_caught(
        "Resource: !GetAtt Logs.Arn",
        "Resource: !Sub arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:other",
        "log actions on",
    );
}

#[test]
fn a_table_without_retain_ttl_or_pitr_is_rejected() {
    let licenses = "  LicensesTable:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n";
    assert_caught(
        licenses,
        "  LicensesTable:\n    Type: AWS::DynamoDB::Table\n    UpdateReplacePolicy: Retain\n",
        "LicensesTable: DeletionPolicy is not Retain",
    );
    assert_caught(
        licenses,
        "  LicensesTable:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Delete\n",
        "LicensesTable: UpdateReplacePolicy is not Retain",
    );
    let tail = "      TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }\n      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }\n      SSESpecification: { SSEEnabled: true }\n";
    let last = GOOD.rfind(tail).unwrap();
    let without = |replacement: &str| format!("{}{replacement}", &GOOD[..last]);
    let check = |replacement: &str, expected: &str| {
        let problems = template_problems(&without(replacement), &good_calls());
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected {expected:?}, got {problems:?}"
        );
    };
    check(
        "      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }\n      SSESpecification: { SSEEnabled: true }\n",
        "LicensesTable: TTL is not enabled",
    );
    check(
        "      TimeToLiveSpecification: { AttributeName: expires, Enabled: true }\n      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }\n      SSESpecification: { SSEEnabled: true }\n",
        "TTL is not on the attribute `ttl`",
    );
    check(
        "      TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }\n      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: false }\n      SSESpecification: { SSEEnabled: true }\n",
        "LicensesTable: point-in-time recovery is not enabled",
    );
    check(
        "      TimeToLiveSpecification: { AttributeName: ttl, Enabled: true }\n      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }\n",
        "LicensesTable: SSESpecification.SSEEnabled is not true",
    );
}

#[test]
fn a_table_missing_from_the_environment_is_rejected() {
    assert_caught(
        "KEYSTEAD_TENANTS_TABLE: !Ref TenantsTable",
        "KEYSTEAD_TENANTS_TABLE: tenants",
        "no environment variable is a plain `!Ref TenantsTable`",
    );
}

#[test]
fn the_scanner_maps_sdk_calls_to_actions() {
    let source = r#"
        //! Mentions `.scan()` and `.delete_item()` in a comment, which do not count.
        async fn f(&self) {
            let _ = "a string .batch_get_item() does not count either";
            let q = request.uri().query();
            let n = (1..3).scan(0, |s, x| Some(*s + x));
            self.client
                .query()
                .table_name(&self.tables.tenants)
                .send()
                .await;
            let item = TransactWriteItem::builder().condition_check(check).build();
            let other = TransactWriteItem::builder()
                .delete(delete)
                .build();
            self.client.transact_write_items().set_transact_items(Some(items)).send().await;
            mailer.client.send_email().source(from).send().await;
            let c = '"'; let l: &'static str = "x";
        }
    "#;
    let mut called = BTreeSet::new();
    let mut transact = BTreeSet::new();
    let sends = actions_in(&code_only(source), &mut called, &mut transact).unwrap();
    assert!(sends);
    assert_eq!(
        called.into_iter().collect::<Vec<_>>(),
        ["dynamodb:Query", "ses:SendEmail"]
    );
    assert_eq!(
        transact.into_iter().collect::<Vec<_>>(),
        ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"]
    );
    let err = actions_in(
        &code_only("client.execute_statement().send()"),
        &mut BTreeSet::new(),
        &mut BTreeSet::new(),
    );
    assert!(err.is_err());
}

#[test]
fn kms_outside_the_signing_key_or_without_the_encryption_context_is_rejected() {
    let resource = "Resource: !GetAtt SigningKey.Arn";
    assert_caught(resource, "Resource: \"*\"", "is or contains *");
    assert_caught(resource, "Resource: \"*\"", "kms:Decrypt on");
    assert_caught(
        resource,
        "Resource: !Ref SigningKey",
        "kms:GenerateDataKey on",
    );
    assert_caught(
        resource,
        "Resource: !Sub arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/signing",
        "not one of this stack's own resources",
    );
    assert_caught(
        resource,
        "Resource: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "not one of this stack's own resources",
    );
    assert_caught(
        "Action: [kms:Decrypt, kms:GenerateDataKey]",
        "Action: [kms:Decrypt, kms:GenerateDataKey, kms:Encrypt]",
        "Fn: IAM grants kms:Encrypt, which its code never calls",
    );
    assert_caught(
        "Action: [kms:Decrypt, kms:GenerateDataKey]",
        "Action: [kms:Decrypt]",
        "Fn: the code calls kms:GenerateDataKey, which the function's role does not grant",
    );

    let condition = "                Condition:\n                  ForAllValues:StringEquals: { kms:EncryptionContextKeys: [tenant_id, kid] }\n                  \"Null\": { kms:EncryptionContextKeys: \"false\" }\n";
    assert_caught(condition, "", "KMS without `ForAllValues:StringEquals");
    assert_caught(condition, "", "a request without any encryption context");
    assert_caught(
        "                  \"Null\": { kms:EncryptionContextKeys: \"false\" }\n",
        "",
        "a request without any encryption context",
    );
    // Unquoted, YAML reads `Null` as a null key, which IAM never sees as the Null operator.
    assert_caught(
        "\"Null\": { kms:EncryptionContextKeys: \"false\" }",
        "Null: { kms:EncryptionContextKeys: \"false\" }",
        "a request without any encryption context",
    );
    assert_caught(
        "kms:EncryptionContextKeys: \"false\"",
        "kms:EncryptionContextKeys: \"true\"",
        "a request without any encryption context",
    );
    assert_caught(
        "[tenant_id, kid]",
        "[tenant_id, kid, purpose]",
        "not exactly",
    );
    assert_caught("[tenant_id, kid]", "[tenant_id]", "not exactly");
    assert_caught(
        "ForAllValues:StringEquals:",
        "ForAnyValue:StringEquals:",
        "KMS without `ForAllValues:StringEquals",
    );
    // A Bool false instead of the string reads the same to IAM.
    assert!(
        problems_after(
            "kms:EncryptionContextKeys: \"false\"",
            "kms:EncryptionContextKeys: false"
        )
        .is_empty()
    );
}

#[test]
fn a_kms_key_that_is_not_kept_symmetric_and_rotated_is_rejected() {
    let key = "  SigningKey:\n    Type: AWS::KMS::Key\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n";
    assert_caught(
        key,
        "  SigningKey:\n    Type: AWS::KMS::Key\n    UpdateReplacePolicy: Retain\n",
        "SigningKey: DeletionPolicy is not Retain",
    );
    assert_caught(
        key,
        "  SigningKey:\n    Type: AWS::KMS::Key\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Delete\n",
        "SigningKey: UpdateReplacePolicy is not Retain",
    );
    assert_caught(
        "EnableKeyRotation: true",
        "EnableKeyRotation: false",
        "SigningKey: EnableKeyRotation is not true",
    );
    assert_caught(
        "      EnableKeyRotation: true\n",
        "",
        "SigningKey: EnableKeyRotation is not true",
    );
    assert_caught(
        "KeySpec: SYMMETRIC_DEFAULT",
        "KeySpec: RSA_2048",
        "SigningKey: not a symmetric encryption key",
    );
    assert_caught(
        "KeyUsage: ENCRYPT_DECRYPT",
        "KeyUsage: GENERATE_VERIFY_MAC",
        "SigningKey: not a symmetric encryption key",
    );
    assert_caught(
        "PendingWindowInDays: 30",
        "PendingWindowInDays: 7",
        "SigningKey: PendingWindowInDays is not 30",
    );
    assert_caught(
        "Principal: { AWS: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:root\" }",
        "Principal: { AWS: \"*\" }",
        "SigningKey: a KeyPolicy statement allows every principal",
    );
    assert_caught(
        "Principal: { AWS: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:root\" }",
        "Principal: \"*\"",
        "SigningKey: a KeyPolicy statement allows every principal",
    );
    // Defaults are symmetric encryption and the longest window.
    assert!(
        problems_after(
            "      KeySpec: SYMMETRIC_DEFAULT\n      KeyUsage: ENCRYPT_DECRYPT\n",
            ""
        )
        .is_empty()
    );
    assert!(problems_after("      PendingWindowInDays: 30\n", "").is_empty());
}

#[test]
fn the_signing_key_missing_from_the_environment_is_rejected() {
    let var = "          KEYSTEAD_SIGNING_KEY_ID: !GetAtt SigningKey.Arn\n";
    assert_caught(
        var,
        "",
        "KEYSTEAD_SIGNING_KEY_ID is not `!GetAtt <an AWS::KMS::Key of this template>.Arn`",
    );
    assert_caught(
        var,
        "          KEYSTEAD_SIGNING_KEY_ID: !Ref SigningKey\n",
        "KEYSTEAD_SIGNING_KEY_ID is not `!GetAtt",
    );
    assert_caught(
        var,
        "          KEYSTEAD_SIGNING_KEY_ID: alias/keystead-signing\n",
        "the environment does not name the KMS key SigningKey",
    );
    // The code calls KMS but the template has no key at all.
    let start = GOOD.find("  SigningKey:\n").unwrap();
    let end = GOOD.find("  TenantsTable:\n").unwrap();
    let without_key = format!("{}{}", &GOOD[..start], &GOOD[end..]);
    let problems = template_problems(&without_key, &good_calls());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("the code calls KMS but the template has no AWS::KMS::Key")),
        "{problems:?}"
    );
}

#[test]
fn kms_calls_with_arguments_are_not_sdk_operations() {
    // AEAD ciphers and signing keys have methods named like KMS operations; they take arguments, SDK fluent
    // operations do not.
    let source = r#"
        fn open(cipher: &Aes256Gcm, nonce: &Nonce, data: &[u8], key: &SigningKey) {
            let plain = cipher.decrypt(nonce, data);
            let sealed = cipher.encrypt(nonce, plain.as_ref());
            let sig = key.sign(&message);
            let ok = public.verify(&message, &sig);
            let ok = public.verify_strict(&message, &sig);
        }
    "#;
    let mut called = BTreeSet::new();
    actions_in(&code_only(source), &mut called, &mut BTreeSet::new()).unwrap();
    assert!(called.is_empty(), "{called:?}");

    let source = r#"
        async fn envelope(&self) {
            let created = self.kms.generate_data_key().key_id(&self.key_id).key_spec(DataKeySpec::Aes256)
                .encryption_context("tenant_id", tenant).encryption_context("kid", kid).send().await;
            let opened = self
                .kms
                .decrypt()
                .ciphertext_blob(Blob::new(wrapped))
                .send()
                .await;
        }
    "#;
    let mut called = BTreeSet::new();
    actions_in(&code_only(source), &mut called, &mut BTreeSet::new()).unwrap();
    assert_eq!(
        called.into_iter().collect::<Vec<_>>(),
        ["kms:Decrypt", "kms:GenerateDataKey"]
    );

    // A KMS operation without a mapping fails clearly instead of going unnoticed.
    for op in [
        "encrypt",
        "generate_data_key_without_plaintext",
        "re_encrypt",
        "sign",
    ] {
        let err = actions_in(
            &code_only(&format!("self.kms.{op}().key_id(k).send().await")),
            &mut BTreeSet::new(),
            &mut BTreeSet::new(),
        )
        .unwrap_err();
        assert!(err.contains(&format!("`.{op}()`")), "{err}");
    }
}

#[test]
fn a_bucket_that_is_public_unversioned_unencrypted_or_not_kept_is_rejected() {
    assert_caught(
        "BlockPublicPolicy: true",
        "BlockPublicPolicy: false",
        "Files: PublicAccessBlockConfiguration.BlockPublicPolicy is not true",
    );
    assert_caught(
        "      VersioningConfiguration: { Status: Enabled }\n",
        "",
        "Files: versioning is not Enabled",
    );
    assert_caught(
        "      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: AES256 } }] }\n",
        "",
        "Files: no BucketEncryption",
    );
    assert_caught(
        "  Files:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: Retain\n",
        "  Files:\n    Type: AWS::S3::Bucket\n",
        "Files: DeletionPolicy is not Retain",
    );
    assert_caught(
        "      VersioningConfiguration: { Status: Enabled }\n",
        "      VersioningConfiguration: { Status: Enabled }\n      AccessControl: PublicRead\n",
        "it must stay private",
    );
    assert_caught(
        "          KEYSTEAD_FILES_BUCKET: !Ref Files\n",
        "",
        "the environment does not name the bucket Files",
    );
}

#[test]
fn s3_beyond_the_buckets_objects_is_rejected() {
    let resource = "Resource: !Sub \"${Files.Arn}/products/*\"";
    assert_caught(resource, "Resource: \"*\"", "is or contains *");
    assert_caught(
        resource,
        "Resource: !GetAtt Files.Arn",
        "not one of this stack's own resources",
    );
    assert_caught(
        resource,
        "Resource: \"arn:aws:s3:::someone-else/*\"",
        "is or contains *",
    );
    assert_caught(
        resource,
        "Resource: !Sub \"${Files.Arn}/*/secret*\"",
        "is or contains *",
    );
    assert_caught(
        "Action: s3:GetObject",
        "Action: [s3:GetObject, s3:PutObject]",
        "Fn: IAM grants s3:PutObject, which its code never calls",
    );
    assert_caught(
        "Action: s3:GetObject",
        "Action: [\"s3:*\"]",
        "is a wildcard",
    );
}

/// Every reason a key email can fail for has an alarm on its `Reason` dimension of `keystead/EmailFailures`, so the
/// notification says why (and which fix applies); no alarm watches a reason the function never emits.
#[test]
fn every_email_failure_reason_has_its_own_alarm() {
    let doc: Value = serde_yaml_ng::from_str(&read_template()).unwrap();
    let mut alarmed = BTreeSet::new();
    for (name, resource) in doc["Resources"].as_mapping().unwrap() {
        let props = &resource["Properties"];
        let watches_email_failures = resource_type(resource) == "AWS::CloudWatch::Alarm"
            && props["Namespace"].as_str() == Some("keystead")
            && props["MetricName"].as_str() == Some("EmailFailures");
        if !watches_email_failures {
            continue;
        }
        let dimensions = props["Dimensions"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let reasons: Vec<&str> = dimensions
            .iter()
            .filter(|d| d["Name"].as_str() == Some("Reason"))
            .filter_map(|d| d["Value"].as_str())
            .collect();
        assert_eq!(reasons.len(), 1, "{name:?} watches exactly one Reason");
        assert_eq!(dimensions.len(), 1, "{name:?} has no other dimension");
        assert!(
            props["AlarmActions"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty()),
            "{name:?} notifies"
        );
        assert!(
            alarmed.insert(reasons[0].to_owned()),
            "one alarm per reason: {}",
            reasons[0]
        );
    }
    let emitted: BTreeSet<String> = keystead::domain::EmailFailure::ALL
        .iter()
        .map(|reason| reason.as_str().to_owned())
        .collect();
    assert_eq!(alarmed, emitted);
}
