//! `upstream certs DIR NAME…`: a development CA and a certificate for each NAME, made into DIR.
//! An admin process (twelve-factor XII) run once from the same image, for example by the
//! compose TLS variant before the stack starts, so that no key is ever committed or fetched.
//!
//! In DIR: `ca.pem` and `ca-key.pem`, then `NAME.pem` and `NAME-key.pem` for each NAME. Each
//! certificate names NAME, `localhost` and `127.0.0.1`, is good for a server and for a client
//! (so one certificate serves a service's port and its own client certificate), and is valid
//! from an hour ago for [`LEAF_DAYS`] days; the CA for [`CA_DAYS`]. Files already there are
//! kept (run it again to add a NAME), so a restarted stack keeps trusting what it trusted.
//! Keys are written readable by their owner and group only (0640), the CA's by its owner only
//! (0600): run as `0:GID` (root, group GID), it makes keys that services running in group GID
//! can read, and root can hand on to a server that insists on owning its key.
//!
//! The tests use [`Authority`] to make the certificates they need, the broken ones included.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long the development CA is valid.
pub const CA_DAYS: i64 = 3650;
/// How long a certificate it signs is valid: the longest a public CA may sign for.
pub const LEAF_DAYS: i64 = 397;

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Server,
    Client,
    /// Both: a service's own port and its client certificate.
    Both,
}

/// A certificate authority that signs certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    issued: Issued,
}

impl Authority {
    /// A new CA called `name`, valid from an hour ago for [`CA_DAYS`] days.
    pub fn new(name: &str) -> Self {
        let mut params = ca_params(name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_DAYS);
        let key = KeyPair::generate().expect("ring makes a key");
        let certificate = params.self_signed(&key).expect("a CA signs itself");
        let issued = Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        };
        Authority {
            issuer: Issuer::new(params, key),
            issued,
        }
    }

    /// The CA called `name` kept in `cert_pem` and `key_pem`, as [`Authority::new`] made it:
    /// what it signs names it by that name and by its key, as its certificate does.
    pub fn load(name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|error| format!("the CA key: {error}"))?;
        let issued = Issued {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        Ok(Authority {
            issuer: Issuer::new(ca_params(name), key),
            issued,
        })
    }

    /// The CA's own certificate and key.
    pub fn own(&self) -> &Issued {
        &self.issued
    }

    /// A certificate for `names` (host names or IP addresses; the first is also its common
    /// name), valid from an hour ago for [`LEAF_DAYS`] days.
    pub fn issue(&self, names: &[&str], purpose: Purpose) -> Issued {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            names,
            purpose,
            now - Duration::hours(1),
            now + Duration::days(LEAF_DAYS),
        )
    }

    /// A certificate for `names` valid from `not_before` to `not_after`, which may be in the
    /// past or the future (the tests' expired and not yet valid certificates).
    pub fn issue_valid(
        &self,
        names: &[&str],
        purpose: Purpose,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("names a certificate takes");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match purpose {
            Purpose::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Purpose::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Purpose::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("ring makes a key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs a certificate");
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// What a CA called `name` is: its name and what it may sign.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The development CA's name.
const CA_NAME: &str = "portbound development CA";

/// Runs `upstream certs DIR NAME…` with `args` (after `certs`); exit status 0, or 2 with one
/// line for a usage or file problem.
pub fn main(args: &[String]) -> ExitCode {
    match make(args) {
        Ok(made) => {
            for line in made {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("upstream certs: {problem}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: upstream certs DIR NAME… (a CA in DIR/ca.pem, and DIR/NAME.pem with DIR/NAME-key.pem for each NAME)";

/// Makes what is missing in the directory `args[0]`; says what it made and what it kept.
fn make(args: &[String]) -> Result<Vec<String>, String> {
    let [dir, names @ ..] = args else {
        return Err(USAGE.to_owned());
    };
    if names.is_empty() {
        return Err(USAGE.to_owned());
    }
    for name in names {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(format!(
                "{name:?} is not a host name (letters, digits, - and .)"
            ));
        }
    }
    let dir = Path::new(dir);
    fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let mut said = Vec::new();
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let authority = if ca_cert.exists() && ca_key.exists() {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
        };
        said.push(format!("kept {}", ca_cert.display()));
        Authority::load(CA_NAME, &read(&ca_cert)?, &read(&ca_key)?)
            .map_err(|error| format!("{}: {error}", ca_cert.display()))?
    } else {
        let authority = Authority::new(CA_NAME);
        write(&ca_key, &authority.own().key_pem, 0o600)?;
        write(&ca_cert, &authority.own().cert_pem, 0o644)?;
        said.push(format!("made {}", ca_cert.display()));
        authority
    };
    for name in names {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        if cert.exists() && key.exists() {
            said.push(format!("kept {}", cert.display()));
            continue;
        }
        let issued = authority.issue(&[name, "localhost", "127.0.0.1"], Purpose::Both);
        write(&key, &issued.key_pem, 0o640)?;
        write(&cert, &issued.cert_pem, 0o644)?;
        said.push(format!("made {}", cert.display()));
    }
    Ok(said)
}

/// Writes `text` to `path` with `mode`, replacing what is there.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    #[test]
    fn the_files_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let args = |names: &[&str]| {
            let mut args = vec![dir.path().to_str().unwrap().to_owned()];
            args.extend(names.iter().map(|name| (*name).to_owned()));
            args
        };
        let made = make(&args(&["upstream"])).unwrap();
        assert_eq!(made.len(), 2, "{made:?}");
        assert!(
            made.iter().all(|line| line.starts_with("made ")),
            "{made:?}"
        );
        let ca = fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        let again = make(&args(&["upstream", "redis"])).unwrap();
        assert_eq!(
            again
                .iter()
                .filter(|line| line.starts_with("kept "))
                .count(),
            2,
            "{again:?}"
        );
        assert_eq!(fs::read_to_string(dir.path().join("ca.pem")).unwrap(), ca);
        let key = fs::metadata(dir.path().join("redis-key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o640);
        // Made by the CA as loaded again: it still verifies against the CA's certificate.
        let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let roots = shared::tls::read_roots("CA", &file("ca.pem")).unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), shared::tls::provider())
                .build()
                .unwrap();
        for (name, host) in [
            ("upstream.pem", "upstream"),
            ("redis.pem", "redis"),
            ("redis.pem", "127.0.0.1"),
        ] {
            let leaf = shared::tls::read_certificates("CERT", &file(name)).unwrap();
            verifier
                .verify_server_cert(
                    &leaf[0],
                    &[],
                    &ServerName::try_from(host).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|error| panic!("{name} for {host}: {error}"));
        }
    }

    #[test]
    fn a_name_that_is_not_a_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().to_str().unwrap().to_owned();
        assert!(
            make(std::slice::from_ref(&dir))
                .unwrap_err()
                .starts_with("usage")
        );
        assert!(
            make(&[dir, "../x".to_owned()])
                .unwrap_err()
                .contains("not a host name")
        );
    }
}
