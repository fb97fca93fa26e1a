//! A DynamoDB Local of a test's own, for tests that stop and restart it (so the shared stack stays up for every
//! other test), with its tables created from template.yaml and a `Stack` whose function uses it.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Stack, env, sdk};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DynamoDB Local process that is killed when dropped, so a failing assertion leaves no server behind.
pub struct Server(Child);

impl Server {
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// DynamoDB Local on `port`, keeping its data in `data` so that a restart finds it again.
pub fn start_dynamodb(port: u16, data: &std::path::Path) -> Server {
    let jar_dir = env("KEYMINT_DYNAMODB_LOCAL_DIR");
    let launcher = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/local/LoopbackDynamoDBLocal.java"
    );
    let server = Server(
        Command::new("java")
            .arg(format!("-Djava.library.path={jar_dir}/DynamoDBLocal_lib"))
            .arg("-cp")
            .arg(format!(
                "{jar_dir}/DynamoDBLocal.jar:{jar_dir}/DynamoDBLocal_lib/*"
            ))
            .arg(launcher)
            .args([
                "-port",
                &port.to_string(),
                "-sharedDb",
                "-disableTelemetry",
                "-dbPath",
            ])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "DynamoDB Local did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// The function and its stores against the DynamoDB Local on `port` (tables `<prefix>-…`, created from
/// template.yaml), with the shared SES emulator.
pub async fn private_stack(port: u16, prefix: &str) -> Stack {
    let sdk = sdk().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build(),
    );
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let specs = keymint::storage::table_specs(&template).unwrap();
    let names = keymint::storage::create_tables(&client, &specs, prefix)
        .await
        .unwrap();
    let name = |var: &str| names.iter().find(|(v, _)| v == var).unwrap().1.clone();
    let tables = keymint::storage::Tables {
        tenants: name("KEYMINT_TENANTS_TABLE"),
        licenses: name("KEYMINT_LICENSES_TABLE"),
        payments: name("KEYMINT_PAYMENTS_TABLE"),
        events: name("KEYMINT_EVENTS_TABLE"),
    };
    let store = keymint::storage::DynamoStore::new(client.clone(), tables.clone());
    Stack {
        app: keymint::http::App::new(
            Arc::new(store.clone()),
            Arc::new(keymint::config::ses_mailer(&sdk)),
            Arc::new(keymint::config::kms_vault(&sdk).unwrap()),
        ),
        store,
        ddb: client,
        ses: aws_sdk_ses::Client::new(&sdk),
        tables,
    }
}
