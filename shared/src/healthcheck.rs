//! The `healthcheck` subcommand: the binary checks its own running instance.
//!
//! Images are `FROM scratch`, with no shell and no curl, so the service binary is its own probe:
//! `upstream healthcheck` reads the same `HOST`/`PORT` configuration, sends `GET /readyz` to
//! that port on the loopback interface (or to `HOST` when it names a specific interface) with a
//! 2 s deadline, and exits 0 when the answer is 2xx, 1 otherwise (Docker reserves 2). It is a
//! plain HTTP/1.1 request on a `TcpStream`, so an HTTP client library would add weight to the
//! image and nothing else.
//!
//! A service that serves HTTPS ([`crate::tls`]) is checked over TLS. The probe trusts exactly
//! the certificate in `TLS_CERT_FILE` (it is the service's own, reached by address, so neither
//! a CA nor a name would tell more), and needs no client certificate: `/readyz` asks for none.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::config::Layers;
use crate::server::ServerSettings;
use crate::tls::{self, TlsFiles};

/// The deadline for connecting, and again for the answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the subcommand for a service whose default port is `default_port`; `serves_tls` when
/// the service reads the `TLS_*` variables.
pub fn main(default_port: u16, serves_tls: bool) -> ExitCode {
    let outcome = Layers::load()
        .and_then(|layers| {
            let settings = ServerSettings::from_layers(&layers, default_port)?;
            let tls = match serves_tls {
                true => TlsFiles::from_layers(&layers)?,
                false => None,
            };
            Ok((settings, tls))
        })
        .map_err(|error| format!("invalid configuration: {error}"))
        .and_then(|(settings, tls)| {
            if settings.port == 0 {
                return Err("PORT=0: the healthcheck needs the service's actual port".to_owned());
            }
            let addr = SocketAddr::new(probe_host(settings.host), settings.port);
            match tls {
                None => check(addr),
                Some(files) => check_tls(addr, &files),
            }
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
    let mut stream = connect(addr).map_err(fail)?;
    ask_readyz(&mut stream, addr).map_err(fail)
}

/// [`check`] over TLS, trusting exactly the certificate now in `files.cert`.
pub fn check_tls(addr: SocketAddr, files: &TlsFiles) -> Result<(), String> {
    let url = format!("https://{addr}/readyz");
    let fail = |what: String| format!("{url}: {what}");
    let pinned = tls::read_certificates("TLS_CERT_FILE", &files.cert)
        .map_err(|error| fail(error.to_string()))?
        .swap_remove(0);
    let provider = tls::provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pinned, provider }))
        .with_no_client_auth();
    let session = ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into()))
        .map_err(|e| fail(e.to_string()))?;
    let mut stream = StreamOwned::new(session, connect(addr).map_err(fail)?);
    ask_readyz(&mut stream, addr).map_err(fail)
}

/// A connection to `addr` whose reads and writes time out after [`TIMEOUT`].
fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Sends `GET /readyz` on `stream` and reads the status line: `Ok` for 2xx.
fn ask_readyz(stream: &mut (impl Read + Write), addr: SocketAddr) -> Result<(), String> {
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n"
    )
    .and_then(|()| stream.flush())
    .map_err(|e| e.to_string())?;

    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..filled]);
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(format!("answered {code}")),
        None => Err("no HTTP answer".to_owned()),
    }
}

/// Trusts one certificate, whatever its issuer and names; signatures are checked as usual.
#[derive(Debug)]
struct Pinned {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the service presented a certificate other than the one in TLS_CERT_FILE"
                    .to_owned(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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
