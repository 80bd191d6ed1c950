//! Certificates made by the tests, in a directory of their own: a CA the consumer is told to
//! trust, and what it signs (the upstream's, Redis's and PostgreSQL's certificates, clients',
//! and broken ones), with the upstream's own [`upstream::certs::Authority`]. Nothing is fetched
//! and no key is committed.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

pub use upstream::certs::{Authority, Issued, Purpose};

/// A CA and a directory to write what it signs into.
pub struct Certs {
    dir: tempfile::TempDir,
    pub authority: Authority,
}

/// A certificate and its key, written to files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Certs {
    pub fn new(name: &str) -> Self {
        Certs {
            dir: tempfile::tempdir().unwrap(),
            authority: Authority::new(name),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA's certificate, written to `ca.pem`.
    pub fn ca_file(&self) -> String {
        write(&self.path("ca.pem"), &self.authority.own().cert_pem)
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `name`.
    pub fn server(&self, name: &str) -> Pair {
        self.write(
            name,
            &self
                .authority
                .issue(&["localhost", "127.0.0.1"], Purpose::Server),
        )
    }

    /// A server certificate that names only `host`, written as `name`.
    pub fn server_named(&self, name: &str, host: &str) -> Pair {
        self.write(name, &self.authority.issue(&[host], Purpose::Server))
    }

    /// A server certificate for `localhost` that expired a year ago, written as `name`.
    pub fn server_expired(&self, name: &str) -> Pair {
        let now = OffsetDateTime::now_utc();
        let issued = self.authority.issue_valid(
            &["localhost", "127.0.0.1"],
            Purpose::Server,
            now - Duration::days(730),
            now - Duration::days(365),
        );
        self.write(name, &issued)
    }

    /// A server certificate for `localhost` valid from a year from now, written as `name`.
    pub fn server_not_yet_valid(&self, name: &str) -> Pair {
        let now = OffsetDateTime::now_utc();
        let issued = self.authority.issue_valid(
            &["localhost", "127.0.0.1"],
            Purpose::Server,
            now + Duration::days(365),
            now + Duration::days(730),
        );
        self.write(name, &issued)
    }

    /// A client certificate, written as `name`.
    pub fn client(&self, name: &str) -> Pair {
        self.write(name, &self.authority.issue(&[name], Purpose::Client))
    }

    /// `issued` written to `name.pem` and `name-key.pem`, replacing what is there (in place,
    /// as a rotator does).
    pub fn write(&self, name: &str, issued: &Issued) -> Pair {
        Pair {
            cert: write(&self.path(&format!("{name}.pem")), &issued.cert_pem),
            key: write(&self.path(&format!("{name}-key.pem")), &issued.key_pem),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().expect("a UTF-8 path").to_owned()
}
