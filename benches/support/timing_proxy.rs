//! A TCP proxy that measures how long a client waits on a server: for every exchange on every connection, from
//! the first byte of the request it forwards to the last byte of the answer, summed, and how many connections the
//! client opened. The bench puts one in front of DynamoDB Local and one in front of moto for cold-started
//! functions, to split a request's time into waiting on AWS (a new connection's cost included) and work inside
//! the function. HTTP/1.1 without pipelining: a request is answered before the next one starts.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the client waited on the server for, since the last `take`.
#[derive(Debug, Default, Clone)]
pub struct Waited {
    pub connections: usize,
    pub exchanges: Vec<Exchanged>,
}

impl Waited {
    /// All exchanges' time together.
    pub fn time(&self) -> Duration {
        self.exchanges.iter().map(|e| e.took).sum()
    }
}

/// One request and its answer.
#[derive(Debug, Clone, Copy)]
pub struct Exchanged {
    /// When the request's first byte came.
    pub started: Instant,
    /// From then to the answer's last byte.
    pub took: Duration,
    /// From then to the request's last byte: the part of `took` the client itself was still sending.
    pub sending: Duration,
}

/// Where one connection is: idle, a request on its way (its first and latest chunk), or an answer coming back
/// (its latest chunk).
#[derive(Clone, Copy)]
enum Exchange {
    Idle,
    Asking { first: Instant, last: Instant },
    Answering(Instant),
}

pub struct TimingProxy {
    pub port: u16,
    waited: Arc<Mutex<Waited>>,
}

impl TimingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream` (`host:port`).
    pub fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let waited = Arc::new(Mutex::new(Waited::default()));
        let totals = waited.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                totals.lock().unwrap().connections += 1;
                forward(client, server, totals.clone());
            }
        });
        Self { port, waited }
    }

    /// What was waited since the last call.
    pub fn take(&self) -> Waited {
        std::mem::take(&mut *self.waited.lock().unwrap())
    }
}

fn forward(client: TcpStream, server: TcpStream, totals: Arc<Mutex<Waited>>) {
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let exchange = Arc::new(Mutex::new(Exchange::Idle));
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let asking = exchange.clone();
    std::thread::spawn(move || {
        pipe(client_in, server_out, Seen::BeforePassingOn, |now| {
            let mut exchange = asking.lock().unwrap();
            *exchange = match *exchange {
                Exchange::Asking { first, .. } => Exchange::Asking { first, last: now },
                _ => Exchange::Asking {
                    first: now,
                    last: now,
                },
            };
        })
    });
    std::thread::spawn(move || {
        pipe(server, client, Seen::AfterPassingOn, |now| {
            let mut exchange = exchange.lock().unwrap();
            let mut totals = totals.lock().unwrap();
            let since = match *exchange {
                Exchange::Idle => return,
                Exchange::Asking { first, last } => {
                    totals.exchanges.push(Exchanged {
                        started: first,
                        took: Duration::ZERO,
                        sending: last - first,
                    });
                    first
                }
                Exchange::Answering(last) => last,
            };
            if let Some(exchanged) = totals.exchanges.last_mut() {
                exchanged.took += now - since;
            }
            *exchange = Exchange::Answering(now);
        })
    });
}

/// When a chunk counts as seen: a request's as it reaches the proxy, an answer's once the client has it.
#[derive(Clone, Copy, PartialEq)]
enum Seen {
    BeforePassingOn,
    AfterPassingOn,
}

/// Copies `from` to `to` until either side closes, calling `seen` with the moment of each chunk.
fn pipe(mut from: TcpStream, mut to: TcpStream, when: Seen, seen: impl Fn(Instant)) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if when == Seen::BeforePassingOn {
            seen(Instant::now());
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        if when == Seen::AfterPassingOn {
            seen(Instant::now());
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
