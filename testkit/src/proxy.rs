//! A fault-injecting TCP proxy for putting between the consumer and its upstream.
//!
//! It forwards bytes both ways and, by its current [`Fault`], delays or withholds what the
//! upstream sends back, or resets connections. The fault applies to connections already open
//! (the consumer's pooled ones) as well as new ones.
//!
//! It also reads every request that passes towards the upstream and checks it against the
//! upstream's contract ([`crate::contract`]); dropping a proxy that saw a request outside the
//! contract fails the test, naming the request. In front of a backend that does not speak HTTP
//! (Redis), [`FaultProxy::start_raw`] passes bytes without reading them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::contract;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Hold each chunk from the upstream this long before passing it on.
    Latency(Duration),
    /// Accept and read, but never answer.
    Blackhole,
    /// Reset every connection (RST) as soon as it is used.
    Reset,
    /// Let the next request that contains this text (a code, a command) through, but reset its
    /// connection instead of passing its answer back, then pass everything again: a reply lost
    /// after the backend acted on the request. Aimed by its text, because a call may take
    /// several exchanges (PostgreSQL's), and only one answer's loss matters.
    LoseAnswerTo(&'static str),
}

pub struct FaultProxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    target: Arc<Mutex<SocketAddr>>,
    checked: Arc<Checked>,
    accept: JoinHandle<()>,
}

/// What the proxy saw of the requests it passed on, and the contract it holds them to (none
/// for a backend that does not speak HTTP: then each write of the client counts as a request).
struct Checked {
    contract: Option<&'static Value>,
    requests: Mutex<usize>,
    /// `METHOD /path` of each request checked against the contract.
    lines: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (any free port) and forwards to `target`; while nothing listens
    /// there, it resets the connections it accepts.
    pub async fn start(target: SocketAddr) -> Self {
        Self::checking(target, Some(contract::upstream_document(true))).await
    }

    /// A proxy that checks nothing, in front of a backend that does not speak HTTP.
    pub async fn start_raw(target: SocketAddr) -> Self {
        Self::checking(target, None).await
    }

    /// A proxy in front of an upstream that runs without `ACCESS_TOKEN`, whose contract asks
    /// for no credentials.
    pub async fn start_open(target: SocketAddr) -> Self {
        Self::checking(target, Some(contract::upstream_document(false))).await
    }

    async fn checking(target: SocketAddr, contract: Option<&'static Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let port = listener.local_addr().expect("a bound address").port();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let target = Arc::new(Mutex::new(target));
        let checked = Arc::new(Checked {
            contract,
            requests: Mutex::default(),
            lines: Mutex::default(),
            violations: Mutex::default(),
        });
        let (current, to, seen) = (fault.clone(), target.clone(), checked.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = *to.lock().expect("the target lock");
                tokio::spawn(serve(client, target, current.clone(), seen.clone()));
            }
        });
        FaultProxy {
            port,
            fault,
            target,
            checked,
            accept,
        }
    }

    /// Sends new connections to `target` from now on: an upstream restarted on another port
    /// stays at the same address for the consumer, without any port being reused.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().expect("the target lock") = target;
    }

    /// How many complete requests (for a raw proxy: writes) have passed towards the upstream.
    pub fn requests_seen(&self) -> usize {
        *self.checked.requests.lock().expect("the count lock")
    }

    /// `METHOD /path` (without the query) of each request checked so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.checked.lines.lock().expect("the lines lock").clone()
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("the fault lock") = fault;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let violations = self.checked.violations.lock().expect("the violations lock");
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "requests to the upstream outside its contract:\n{}",
                violations.join("\n")
            );
        }
    }
}

impl Checked {
    /// Counts (and, with a contract, checks) what the client sent in `bytes`.
    fn feed(&self, requests: &mut Requests, bytes: &[u8]) {
        match self.contract {
            Some(_) => self.record(requests.feed(bytes)),
            None => *self.requests.lock().expect("the count lock") += 1,
        }
    }

    fn record(&self, requests: Vec<contract::Request>) {
        let Some(document) = self.contract else {
            return;
        };
        for request in requests {
            *self.requests.lock().expect("the count lock") += 1;
            let path = request.target.split('?').next().unwrap_or_default();
            let line = format!("{} {path}", request.method);
            self.lines.lock().expect("the lines lock").push(line);
            if let Some(violation) = contract::violation(document, &request) {
                let line = format!("{} {}: {violation}", request.method, request.target);
                self.violations
                    .lock()
                    .expect("the violations lock")
                    .push(line);
            }
        }
    }
}

/// Splits the bytes a client sends into the requests they hold.
#[derive(Default)]
struct Requests {
    buffer: Vec<u8>,
}

impl Requests {
    /// The requests completed by `bytes`.
    fn feed(&mut self, bytes: &[u8]) -> Vec<contract::Request> {
        self.buffer.extend_from_slice(bytes);
        let mut complete = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut headers);
            let head = match parsed.parse(&self.buffer) {
                Ok(httparse::Status::Complete(head)) => head,
                Ok(httparse::Status::Partial) => break,
                Err(error) => {
                    complete.push(contract::Request {
                        method: "UNPARSABLE".to_owned(),
                        target: error.to_string(),
                        headers: Vec::new(),
                        body: Vec::new(),
                    });
                    self.buffer.clear();
                    break;
                }
            };
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(0);
            if self.buffer.len() < head + length {
                break;
            }
            let request = contract::Request {
                method: parsed.method.unwrap_or_default().to_owned(),
                target: parsed.path.unwrap_or_default().to_owned(),
                headers,
                body: self.buffer[head..head + length].to_vec(),
            };
            self.buffer.drain(..head + length);
            complete.push(request);
        }
        complete
    }
}

fn now(fault: &Mutex<Fault>) -> Fault {
    *fault.lock().expect("the fault lock")
}

/// Whether `request` is the one a [`Fault::LoseAnswerTo`] waits for; if so, the fault is used
/// up.
fn aimed_at(fault: &Mutex<Fault>, request: &[u8]) -> bool {
    let mut current = fault.lock().expect("the fault lock");
    let Fault::LoseAnswerTo(text) = *current else {
        return false;
    };
    let hit = request
        .windows(text.len())
        .any(|window| window == text.as_bytes());
    if hit {
        *current = Fault::Pass;
    }
    hit
}

fn reset(stream: TcpStream) {
    // Linger zero makes the close an RST instead of a FIN.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    checked: Arc<Checked>,
) {
    match now(&fault) {
        Fault::Reset => return reset(client),
        Fault::Blackhole => return hold(client, &checked).await,
        Fault::Pass | Fault::Latency(_) | Fault::LoseAnswerTo(_) => {}
    }
    // Set when this connection carried the request whose answer is to be lost.
    let doomed = std::sync::atomic::AtomicBool::new(false);
    let Ok(upstream) = TcpStream::connect(target).await else {
        return reset(client);
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let outbound = async {
        let mut buffer = vec![0; 16 * 1024];
        let mut requests = Requests::default();
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            checked.feed(&mut requests, &buffer[..n]);
            if aimed_at(&fault, &buffer[..n]) {
                doomed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if upstream_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let inbound = async {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let n = match upstream_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if doomed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            match now(&fault) {
                Fault::Pass | Fault::LoseAnswerTo(_) => {}
                Fault::Latency(delay) => tokio::time::sleep(delay).await,
                Fault::Blackhole => std::future::pending::<()>().await,
                Fault::Reset => return,
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = outbound => {}
        () = inbound => {}
    }
    if let (Ok(client), Ok(_)) = (
        client_read.reunite(client_write),
        upstream_read.reunite(upstream_write),
    ) {
        reset(client);
    }
}

/// Reads (and checks) what the client sends, answering nothing, until it goes away.
async fn hold(mut client: TcpStream, checked: &Checked) {
    let mut buffer = vec![0; 16 * 1024];
    let mut requests = Requests::default();
    while let Ok(n) = client.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        checked.feed(&mut requests, &buffer[..n]);
    }
}
