//! TLS to the attached resource, the same for every kind (`https://`, `rediss://`, and
//! `postgres://` with `sslmode=verify-full` or `require`): the server's certificate is always
//! verified, its chain and its name.
//!
//! - Trusted: the public roots built into the binary (Mozilla's, as `webpki-roots` ships them;
//!   the images have no system store), or instead only the CAs in `UPSTREAM_CA_FILE` (PEM), for a
//!   backend signed by a private CA.
//! - With `UPSTREAM_CLIENT_CERT_FILE` and `UPSTREAM_CLIENT_KEY_FILE` the consumer presents that
//!   client certificate (mutual TLS).
//! - Every file is read at startup: a bad one stops the process with one line naming its
//!   variable.
//! - A certificate that does not verify is [`BackendError::Untrusted`](super::BackendError):
//!   a 502 at once, not retried (nothing changes by asking again), not counted against the
//!   circuit (the backend is there; it is not the one it should be), and logged once per reason,
//!   in words ([`untrusted`]).

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use shared::config::{ConfigError, Layers};
use shared::tls::{PemFile, certificate_and_key};

/// The verified TLS every attachment gets: roots and an optional client certificate.
#[derive(Clone)]
pub struct TlsSettings {
    /// `UPSTREAM_CA_FILE`, if set: its path and its certificates as PEM.
    ca: Option<(String, Vec<u8>)>,
    /// `UPSTREAM_CLIENT_CERT_FILE` and `UPSTREAM_CLIENT_KEY_FILE` as PEM.
    identity: Option<Identity>,
    config: Arc<ClientConfig>,
}

/// The client certificate: parsed for rustls, and as PEM for the Redis client.
#[derive(Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    key_path: String,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Identity {
    /// The client certificate and key `UPSTREAM_CLIENT_CERT_FILE` and
    /// `UPSTREAM_CLIENT_KEY_FILE` name, if they do.
    fn read(layers: &Layers) -> Result<Option<Self>, ConfigError> {
        let Some((cert, key)) = certificate_and_key(
            layers,
            "UPSTREAM_CLIENT_CERT_FILE",
            "UPSTREAM_CLIENT_KEY_FILE",
        )?
        else {
            return Ok(None);
        };
        let cert_file = PemFile::read("UPSTREAM_CLIENT_CERT_FILE", &cert)?;
        let key_file = PemFile::read("UPSTREAM_CLIENT_KEY_FILE", &key)?;
        Ok(Some(Identity {
            chain: cert_file.certificates()?,
            key: Arc::new(key_file.private_key()?),
            key_path: key,
            cert_pem: cert_file.bytes().to_vec(),
            key_pem: key_file.bytes().to_vec(),
        }))
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca.as_ref().map(|(path, _)| path))
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads `UPSTREAM_CA_FILE`, `UPSTREAM_CLIENT_CERT_FILE` and `UPSTREAM_CLIENT_KEY_FILE`, and
    /// every file they name.
    pub fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let ca = layers
            .parse_optional("UPSTREAM_CA_FILE", "a PEM file", text_owned)?
            .map(|path| PemFile::read("UPSTREAM_CA_FILE", &path))
            .transpose()?;
        let roots = match &ca {
            Some(ca) => ca.roots()?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(shared::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots);
        let identity = Identity::read(layers)?;
        let config = match &identity {
            None => builder.with_no_client_auth(),
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|error| {
                    ConfigError::invalid(
                        "UPSTREAM_CLIENT_KEY_FILE",
                        &identity.key_path,
                        format_args!(
                            "the private key of the certificate in UPSTREAM_CLIENT_CERT_FILE \
                             ({error})"
                        ),
                    )
                })?,
        };
        Ok(TlsSettings {
            ca: ca.map(|file| (file.path().to_owned(), file.bytes().to_vec())),
            identity,
            config: Arc::new(config),
        })
    }

    /// The rustls configuration for HTTPS and PostgreSQL.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The same trust and identity in the form the Redis client takes (PEM).
    pub fn redis_certificates(&self) -> ::redis::TlsCertificates {
        ::redis::TlsCertificates {
            client_tls: self
                .identity
                .as_ref()
                .map(|identity| ::redis::ClientTlsConfig {
                    client_cert: identity.cert_pem.clone(),
                    client_key: identity.key_pem.clone(),
                }),
            root_cert: self.ca.as_ref().map(|(_, pem)| pem.clone()),
        }
    }
}

fn text_owned(text: &str) -> Result<String, ()> {
    Ok(text.to_owned())
}

/// Why the certificate `host` presented did not verify, in words, if that is what `error` (or
/// one of its causes) says; `None` for any other failure.
pub fn untrusted(error: &(dyn Error + 'static), host: &str) -> Option<String> {
    let problem = certificate_error(error)?;
    let why = match problem {
        CertificateError::UnknownIssuer => "is signed by an unknown authority".to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("is not valid for the name {host}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet".to_owned()
        }
        CertificateError::Revoked => "has been revoked".to_owned(),
        CertificateError::BadSignature => "has a signature that does not verify".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not for a server".to_owned()
        }
        other => format!("did not verify ({other:?})"),
    };
    Some(format!("the certificate for {host} {why}"))
}

/// The certificate error among `error`'s causes. Two wrappers hide the error they wrap from
/// `source()`: an `io::Error` (whose source is its inner error's source) and the `Arc` the
/// Redis client keeps its causes in; both are looked into.
fn certificate_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a CertificateError> {
    let mut next = Some(error);
    while let Some(cause) = next {
        let mut candidate = cause;
        loop {
            if let Some(rustls::Error::InvalidCertificate(problem)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(problem);
            }
            let inner: Option<&'a (dyn Error + 'static)> =
                if let Some(shared) = candidate.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
                    Some(&**shared)
                } else if let Some(io) = candidate.downcast_ref::<std::io::Error>() {
                    io.get_ref().map(|inner| inner as &(dyn Error + 'static))
                } else {
                    None
                };
            match inner {
                Some(inner) => candidate = inner,
                None => break,
            }
        }
        next = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_is_found_inside_an_io_error() {
        let rustls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        let said = untrusted(&io, "upstream-b").unwrap();
        assert_eq!(
            said,
            "the certificate for upstream-b is signed by an unknown authority"
        );
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(untrusted(&other, "upstream-b"), None);
        // As the Redis client keeps it.
        let kept: Arc<dyn Error + Send + Sync> = Arc::new(io);
        assert!(untrusted(&kept, "upstream-b").is_some());
    }

    #[test]
    fn each_reason_is_said_in_words() {
        for (problem, words) in [
            (CertificateError::Expired, "has expired"),
            (CertificateError::NotValidYet, "is not valid yet"),
            (
                CertificateError::NotValidForName,
                "is not valid for the name db",
            ),
        ] {
            let error = rustls::Error::InvalidCertificate(problem);
            assert_eq!(
                untrusted(&error, "db").unwrap(),
                format!("the certificate for db {words}")
            );
        }
    }

    #[test]
    fn without_files_the_public_roots_are_trusted() {
        let settings = TlsSettings::from_layers(&Layers::from_vars([]).unwrap()).unwrap();
        assert!(settings.redis_certificates().root_cert.is_none());
        assert!(settings.redis_certificates().client_tls.is_none());
    }
}
