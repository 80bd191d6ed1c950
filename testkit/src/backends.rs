//! Stand-ins for an upstream that misbehaves, to attach a consumer to.

use tokio::net::{TcpListener, TcpSocket};
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
