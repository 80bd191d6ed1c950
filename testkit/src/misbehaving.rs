//! Stand-ins for a backend that misbehaves, to attach a consumer (or any future adapter's
//! client) to: one that never answers, a port that refuses, and a [`hostile`] one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// An upstream that accepts connections and reads requests but never answers; it lives as long
/// as the returned task. Returns its port.
pub async fn never_answering() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// A port that refuses every connection for as long as the returned socket lives: it is bound
/// but never listens, so no other test can take it meanwhile (as a port bound and released
/// could be).
pub fn refusing_port() -> (u16, TcpSocket) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (port, socket)
}

/// What a hostile upstream answers to every request: the repertoire a misconfigured or
/// compromised backend has, which the consumer must end in a 502 or 504 of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// `Content-Length` of 400 MB, then zeros as fast as they are taken.
    Announced,
    /// A chunked JSON body that never ends.
    Endless,
    /// A 20-byte body, one byte every 200 ms.
    Trickle,
    /// A 200 with an HTML page.
    Html,
    /// A 302 to elsewhere.
    Redirect,
    /// A 200 declared JSON that is not JSON.
    NotJson,
    /// A 200 whose header lines never end.
    EndlessHeaders,
    /// A well-formed 404, followed at once by a second answer nobody asked for.
    ExtraAnswer,
    /// Not hostile, but unable: the `507` problem an upstream whose disk is full answers to
    /// every request (and then closes the connection).
    Full,
    /// Not hostile, but overloaded: the `503` problem with `Retry-After` (these seconds) that an
    /// upstream with more writers than it can commit for answers.
    Busy(u64),
}

/// An upstream that answers every request the `hostile` way, for as long as it lives.
pub struct Hostile {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Starts an upstream that answers every request the `hostile` way.
pub async fn hostile(hostility: Hostility) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(socket, hostility));
        }
    });
    Hostile {
        port,
        connections,
        task,
    }
}

impl Hostile {
    /// How many connections it has accepted: a client that does not reuse a connection after
    /// a bad answer opens one per request.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The marker every hostile body carries, so a test can check it went nowhere.
pub const HOSTILE_MARKER: &str = "hostile-body-marker";

async fn answer(mut socket: TcpStream, hostile: Hostility) {
    let json = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    loop {
        if !read_head(&mut socket).await {
            return;
        }
        let written = match hostile {
            Hostility::Announced => {
                let head =
                    format!("{json}Content-Length: 400000000\r\n\r\n{{\"{HOSTILE_MARKER}\": \"");
                stream_forever(&mut socket, head, b'0').await
            }
            Hostility::Endless => {
                let head = format!("{json}Transfer-Encoding: chunked\r\n\r\n");
                socket.write_all(head.as_bytes()).await.ok();
                let chunk = format!("{:x}\r\n{}\r\n", 8192, "[".repeat(8192));
                loop {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            Hostility::Trickle => {
                let body = format!("\"{HOSTILE_MARKER}\"");
                let head = format!("{json}Content-Length: {}\r\n\r\n", body.len());
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for byte in body.bytes() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if socket.write_all(&[byte]).await.is_err() {
                        return;
                    }
                }
                Ok(())
            }
            Hostility::Html => {
                let body = format!("<html><body>{HOSTILE_MARKER}</body></html>");
                socket
                    .write_all(reply("200 OK", "text/html", &body).as_bytes())
                    .await
            }
            Hostility::Redirect => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://example.com/{HOSTILE_MARKER}\r\nContent-Length: 0\r\n\r\n"
                );
                socket.write_all(head.as_bytes()).await
            }
            Hostility::NotJson => {
                let body = format!("{HOSTILE_MARKER}: not json");
                socket
                    .write_all(reply("200 OK", "application/json", &body).as_bytes())
                    .await
            }
            Hostility::EndlessHeaders => {
                stream_forever(&mut socket, "HTTP/1.1 200 OK\r\n".to_owned(), b'x').await
            }
            Hostility::Full => {
                let body = r#"{"type":"about:blank","title":"Insufficient Storage","status":507,"detail":"storage is full"}"#;
                let answer = reply("507 Insufficient Storage", "application/problem+json", body);
                let closing = answer.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let _ = socket.write_all(closing.as_bytes()).await;
                return;
            }
            Hostility::Busy(retry_after) => {
                let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many writes are waiting for storage"}"#;
                let answer = reply("503 Service Unavailable", "application/problem+json", body);
                let headers = format!("\r\nRetry-After: {retry_after}\r\n");
                socket
                    .write_all(answer.replacen("\r\n", &headers, 1).as_bytes())
                    .await
            }
            Hostility::ExtraAnswer => {
                let miss = reply("404 Not Found", "application/problem+json", "{}");
                let extra = reply(
                    "200 OK",
                    "application/json",
                    &format!("{{\"url\": \"http://{HOSTILE_MARKER}/\"}}"),
                );
                socket.write_all(format!("{miss}{extra}").as_bytes()).await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Writes `head`, then `filler` for as long as the peer takes it.
async fn stream_forever(socket: &mut TcpStream, head: String, filler: u8) -> std::io::Result<()> {
    socket.write_all(head.as_bytes()).await?;
    let block = vec![filler; 64 * 1024];
    loop {
        socket.write_all(&block).await?;
    }
}

/// Reads one request head (a body, which the consumer's reads do not have, is not expected);
/// false when the peer has gone.
async fn read_head(socket: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}
