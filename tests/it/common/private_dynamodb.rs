//! A DynamoDB Local of a test's own, for tests that stop and restart it or cut the network to it (so the shared
//! stack stays up for every other test), with its tables created from template.yaml and a `Stack` whose function
//! uses it.

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
    let jar_dir = env("KEYSTEAD_DYNAMODB_LOCAL_DIR");
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

/// A TCP proxy in front of a local server that can cut the network to it: `cut` drops every open connection and
/// refuses new ones until `restore`, as an outage between the function and DynamoDB would. The server lives on, so
/// a request it had already received is still applied whole (or not at all) and only its answer is lost: the
/// faults a real outage brings, and never a half-applied transaction, which DynamoDB Local leaves behind when it is
/// killed in the middle of one and DynamoDB itself never does.
pub struct Cutoff {
    pub port: u16,
    upstream: u16,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl Cutoff {
    pub async fn start(upstream: u16) -> Cutoff {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Cutoff {
            port,
            upstream,
            serving: Some(tokio::spawn(forward(listener, upstream))),
        }
    }

    /// Closes the listening socket (new connections are refused) and every forwarded connection.
    pub async fn cut(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = serving.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serving = Some(tokio::spawn(forward(listener, self.upstream)));
    }
}

/// Accepts connections and forwards each to `upstream`. Its connections live in a `JoinSet` it owns, so aborting
/// this task drops them all along with the listener.
async fn forward(listener: tokio::net::TcpListener, upstream: u16) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        while connections.try_join_next().is_some() {}
    }
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
    let specs = keystead::storage::table_specs(&template).unwrap();
    let names = keystead::storage::create_tables(&client, &specs, prefix)
        .await
        .unwrap();
    let name = |var: &str| names.iter().find(|(v, _)| v == var).unwrap().1.clone();
    let tables = keystead::storage::Tables {
        tenants: name("KEYSTEAD_TENANTS_TABLE"),
        licenses: name("KEYSTEAD_LICENSES_TABLE"),
        payments: name("KEYSTEAD_PAYMENTS_TABLE"),
        events: name("KEYSTEAD_EVENTS_TABLE"),
    };
    let store = keystead::storage::DynamoStore::new(client.clone(), tables.clone());
    Stack {
        app: keystead::app::App::new(
            Arc::new(store.clone()),
            Arc::new(keystead::config::ses_mailer(&sdk)),
            Arc::new(keystead::config::kms_vault(&sdk).unwrap()),
        ),
        store,
        ddb: client,
        ses: aws_sdk_ses::Client::new(&sdk),
        tables,
    }
}
