//! The `healthcheck` subcommand: the binary checks its own running instance.
//!
//! Images are `FROM scratch`, with no shell and no curl, so the service binary is its own probe:
//! `upstream healthcheck` reads the same `HOST`/`PORT` configuration, sends `GET /readyz` to
//! that port on the loopback interface (or to `HOST` when it names a specific interface) with a
//! 2 s deadline, and exits 0 when the answer is 2xx, 1 otherwise (Docker reserves 2). It is a
//! plain HTTP/1.1 request on a `TcpStream`: loopback only, no TLS, so an HTTP client library
//! would add weight to the image and nothing else.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Layers;
use crate::server::ServerSettings;

/// The deadline for connecting, and again for the answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the subcommand for a service whose default port is `default_port`.
pub fn main(default_port: u16) -> ExitCode {
    let outcome = Layers::load()
        .and_then(|layers| ServerSettings::from_layers(&layers, default_port))
        .map_err(|error| format!("invalid configuration: {error}"))
        .and_then(|settings| {
            if settings.port == 0 {
                return Err("PORT=0: the healthcheck needs the service's actual port".to_owned());
            }
            check(SocketAddr::new(probe_host(settings.host), settings.port))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where a service bound to `host` can be reached from inside its own container.
fn probe_host(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        other => other,
    }
}

/// `GET /readyz` at `addr`: `Ok` for a 2xx answer, otherwise what went wrong.
pub fn check(addr: SocketAddr) -> Result<(), String> {
    let url = format!("http://{addr}/readyz");
    let fail = |what: String| format!("{url}: {what}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;

    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..filled]);
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(fail(format!("answered {code}"))),
        None => Err(fail("no HTTP answer".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_host_is_probed_on_loopback() {
        assert_eq!(probe_host("0.0.0.0".parse().unwrap()), Ipv4Addr::LOCALHOST);
        assert_eq!(probe_host("::".parse().unwrap()), Ipv6Addr::LOCALHOST);
        assert_eq!(
            probe_host("10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_closed_port_fails_the_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(check(addr).is_err());
    }
}
