//! TLS for a service's own port: `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM) make it serve HTTPS,
//! and `TLS_CLIENT_CA_FILE` makes it ask for client certificates signed by that CA (mutual TLS).
//! rustls does the work, through actix-web's own support for it.
//!
//! - **Rotation without a restart.** The files are looked at every [`RELOAD_INTERVAL`]; when
//!   either has changed (its modification time, size or inode: a rotator that writes the file
//!   in place, renames a new one over it, or swaps a symlink as Kubernetes does with a mounted
//!   Secret), the pair is read again and new connections get the new certificate. Connections
//!   already open keep the one they were made with. A pair that does not load (a certificate
//!   written before its key, say) is logged and the old one kept, until the files change again.
//! - **Client certificates.** A handshake without one is still accepted, so that probes
//!   (`/livez`, `/readyz`, the `healthcheck` subcommand, an orchestrator's HTTPS probe) need none;
//!   one that is presented must verify against the CA, or the handshake fails. Whether the
//!   connection carried a verified certificate is kept as [`ClientCertificate`] in the
//!   connection's data, for the routes that require one to check. `TLS_CLIENT_CA_FILE` is read
//!   at startup only.
//! - **Bad files** stop the process at startup with one line naming the variable and saying
//!   what is wrong (missing, no certificate in it, a key that does not match the certificate).
//!
//! [`PemFile`] reads PEM for the consumer's `UPSTREAM_CA_FILE` and client certificate too.

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ConfigError, Layers};

/// How often the certificate and key files are looked at for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The cryptography rustls is built with here (ring, as reqwest's).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where a service's certificate, key and client CA are: the `TLS_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `TLS_CERT_FILE`: the certificate chain, leaf first (PEM).
    pub cert: String,
    /// `TLS_KEY_FILE`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// `TLS_CLIENT_CA_FILE`: the CAs a client certificate must be signed by (PEM), if any.
    pub client_ca: Option<String>,
}

impl TlsFiles {
    /// Reads the `TLS_*` variables: `None` when neither file is named, an error when one is
    /// named without the other.
    pub fn from_layers(layers: &Layers) -> Result<Option<Self>, ConfigError> {
        let pair = certificate_and_key(layers, "TLS_CERT_FILE", "TLS_KEY_FILE")?;
        let client_ca = layers.parse_optional("TLS_CLIENT_CA_FILE", "a PEM file", text_owned)?;
        match (pair, client_ca) {
            (Some((cert, key)), client_ca) => Ok(Some(TlsFiles {
                cert,
                key,
                client_ca,
            })),
            (None, Some(ca)) => Err(ConfigError::invalid(
                "TLS_CLIENT_CA_FILE",
                &ca,
                "TLS_CERT_FILE and TLS_KEY_FILE set too: client certificates need TLS",
            )),
            (None, None) => Ok(None),
        }
    }

    /// The server's TLS configuration: the certificate picked up again when its files change,
    /// and client certificates verified against `client_ca`. Reads every file now, so a bad
    /// one stops the service before it serves.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let provider = provider();
        let resolver = Reloading::start(self.clone(), provider.clone())?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = read_roots("TLS_CLIENT_CA_FILE", path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|error| {
                            ConfigError::invalid(
                                "TLS_CLIENT_CA_FILE",
                                path,
                                format_args!("a PEM file of CA certificates ({error})"),
                            )
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn text_owned(text: &str) -> Result<String, ()> {
    Ok(text.to_owned())
}

/// The paths a certificate variable and its key's variable name: both, or neither (an error
/// naming the one set alone).
pub fn certificate_and_key(
    layers: &Layers,
    cert_variable: &str,
    key_variable: &str,
) -> Result<Option<(String, String)>, ConfigError> {
    let path = |variable| layers.parse_optional(variable, "a PEM file", text_owned);
    match (path(cert_variable)?, path(key_variable)?) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(cert), None) => Err(ConfigError::invalid(
            cert_variable,
            &cert,
            format_args!("{key_variable} set too (the certificate's private key)"),
        )),
        (None, Some(key)) => Err(ConfigError::invalid(
            key_variable,
            &key,
            format_args!("{cert_variable} set too (the key's certificate)"),
        )),
    }
}

/// Set in a connection's data when its client presented a certificate that verified against
/// `TLS_CLIENT_CA_FILE`.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate;

/// For [`actix_web::HttpServer::on_connect`]: on a TLS connection, turns Nagle's algorithm off
/// (a response can leave as more than one TLS record, and a second small write held back for
/// the client's delayed ACK cost about 40 ms), and marks one whose client presented a verified
/// certificate with [`ClientCertificate`].
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    if let Some(tls) =
        connection.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
    {
        let (tcp, session) = tls.get_ref();
        if let Err(error) = tcp.set_nodelay(true) {
            log::debug!("TLS: TCP_NODELAY not set: {error}");
        }
        if session.peer_certificates().is_some_and(|c| !c.is_empty()) {
            data.insert(ClientCertificate);
        }
    }
}

/// A PEM file named by a variable, read once: what it holds is parsed from these bytes, and
/// every error names the variable and the path.
pub struct PemFile {
    variable: String,
    path: String,
    bytes: Vec<u8>,
}

impl PemFile {
    /// Reads the file at `path`, named by `variable`.
    pub fn read(variable: &str, path: &str) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|error| {
            ConfigError::invalid(
                variable,
                path,
                format_args!("a readable PEM file ({error})"),
            )
        })?;
        Ok(PemFile {
            variable: variable.to_owned(),
            path: path.to_owned(),
            bytes,
        })
    }

    /// The file as read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where it was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn invalid(&self, expected: &str, why: &dyn fmt::Display) -> ConfigError {
        ConfigError::invalid(
            &self.variable,
            &self.path,
            format_args!("{expected} ({why})"),
        )
    }

    /// The certificates in it, at least one.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        const EXPECTED: &str = "a PEM file of certificates";
        let certificates = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.invalid(EXPECTED, &error))?;
        if certificates.is_empty() {
            return Err(self.invalid(EXPECTED, &"no CERTIFICATE block in it"));
        }
        Ok(certificates)
    }

    /// The private key in it.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, ConfigError> {
        PrivateKeyDer::from_pem_slice(&self.bytes)
            .map_err(|error| self.invalid("a PEM private key", &error))
    }

    /// The CA certificates in it, as roots of trust.
    pub fn roots(&self) -> Result<RootCertStore, ConfigError> {
        let mut roots = RootCertStore::empty();
        for certificate in self.certificates()? {
            roots
                .add(certificate)
                .map_err(|error| self.invalid("a PEM file of CA certificates", &error))?;
        }
        Ok(roots)
    }
}

/// The certificates in the PEM file at `path`, named by `variable` in the error.
pub fn read_certificates(
    variable: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    PemFile::read(variable, path)?.certificates()
}

/// The CA certificates in the PEM file at `path` as roots of trust.
pub fn read_roots(variable: &str, path: &str) -> Result<RootCertStore, ConfigError> {
    PemFile::read(variable, path)?.roots()
}

/// The certificate chain and key named by `files`, checked to belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    let chain = read_certificates("TLS_CERT_FILE", &files.cert)?;
    let key = PemFile::read("TLS_KEY_FILE", &files.key)?.private_key()?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| {
        ConfigError::invalid(
            "TLS_KEY_FILE",
            &files.key,
            format_args!("the private key of the certificate in TLS_CERT_FILE ({error})"),
        )
    })
}

/// What tells a file's change: its modification time, size and inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &str) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(Path::new(path)).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

/// The certificate resolver that follows its files (see the module's documentation).
struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.files.cert)
            .finish_non_exhaustive()
    }
}

impl Reloading {
    /// Loads the pair now, and starts the thread that looks at the files while the resolver
    /// is in use.
    fn start(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, ConfigError> {
        let stamps = (stamp(&files.cert), stamp(&files.key));
        let loaded = certified_key(&files, &provider)?;
        let resolver = Arc::new(Reloading {
            files,
            current: RwLock::new(Arc::new(loaded)),
        });
        let watched = Arc::downgrade(&resolver);
        std::thread::Builder::new()
            .name("tls-reload".to_owned())
            .spawn(move || watch(watched, stamps, &provider))
            .expect("a thread starts");
        Ok(resolver)
    }
}

/// Loads the pair again each time a file changes, until the resolver is dropped.
fn watch(resolver: Weak<Reloading>, mut seen: (Stamp, Stamp), provider: &CryptoProvider) {
    loop {
        std::thread::sleep(RELOAD_INTERVAL);
        let Some(resolver) = resolver.upgrade() else {
            return;
        };
        let now = (stamp(&resolver.files.cert), stamp(&resolver.files.key));
        if now == seen {
            continue;
        }
        seen = now;
        match certified_key(&resolver.files, provider) {
            Ok(loaded) => {
                *resolver.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                log::info!(
                    "TLS: loaded the new certificate from {}",
                    resolver.files.cert
                );
            }
            Err(error) => log::warn!("TLS: keeping the certificate in use: {error}"),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
