//! `UPSTREAM_URL`: the handle of the attached resource, credentials and all. Its scheme says
//! which kind of resource it is; this is the one place that reads it, once, at startup.
//!
//! - `http(s)://…` ([`HttpAttachment`]): portbound's upstream or any backend honouring its v1
//!   contract. The URL is split into a base without credentials and the credentials
//!   themselves. Requests are built from the base and carry the credentials as an
//!   `Authorization` header, so no URL the client builds, logs or reports can contain the
//!   secret. The base path always ends in `/`, so joining `v1/kv/…` onto `http://host/prefix`
//!   or `http://host/prefix/` gives `/prefix/v1/kv/…` either way.
//! - `redis://[user][:password]@host[:port][/db]` and `rediss://…` (TLS) ([`RedisAttachment`]):
//!   a Redis server, database 0–15, no query parameters.
//! - `postgres://user:password@host[:port][,host2[:port]…]/dbname[?…]` and `postgresql://…`
//!   ([`PostgresAttachment`]): PostgreSQL, read by tokio-postgres by libpq's rules. Of libpq's
//!   parameters, the consumer takes `target_session_attrs` (`read-write` follows a failover to
//!   the new primary), `connect_timeout`, `application_name` and `sslmode`: `verify-full` or
//!   `require` speak TLS and verify the server's certificate, chain and name ([`super::tls`]:
//!   the consumer never accepts a certificate it has not verified, so `require` is taken as
//!   `verify-full`); `disable` and `prefer` (libpq's default) speak plain TCP. `verify-ca`
//!   (a chain checked without its name) and `allow` are refused, as is any other parameter and
//!   a URL without a database name.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use reqwest::header::HeaderValue;
use url::Url;

/// A parsed `UPSTREAM_URL`: which kind of resource, and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum Attachment {
    Http(HttpAttachment),
    Redis(RedisAttachment),
    Postgres(PostgresAttachment),
}

/// An `http(s)://` attachment.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAttachment {
    base: Url,
    credentials: Option<Credentials>,
    /// The credentials as an `Authorization` header, built once.
    authorization: Option<HeaderValue>,
}

/// How the consumer proves itself to the backend.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// From `user:token@`.
    Basic { user: String, password: String },
    /// From a lone `token@`.
    Bearer(String),
}

/// A `redis(s)://` attachment. The URL is kept whole for the `redis` crate, which reads it the
/// same way; only its redacted form is ever shown.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAttachment {
    url: Url,
    host: String,
    port: u16,
    db: u8,
}

/// A `postgres(ql)://` attachment: the URL as tokio-postgres reads it, and its text for the
/// pool's connections; only its redacted form is ever shown.
#[derive(Clone)]
pub struct PostgresAttachment {
    config: tokio_postgres::Config,
    text: String,
    /// Whether connections speak TLS (`sslmode=verify-full` or `require`).
    tls: bool,
}

impl PartialEq for PostgresAttachment {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PostgresAttachment {}

/// `UPSTREAM_URL` is not an attachable URL; see [`Attachment::EXPECTED`]. The reason, where
/// there is more to say than that (empty otherwise), names what is wrong and never quotes a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAttachable(pub &'static str);

impl NotAttachable {
    /// Not of any shape the consumer attaches: [`Attachment::EXPECTED`] says it all.
    const SHAPE: NotAttachable = NotAttachable("");
}

/// The libpq parameters the consumer takes from a PostgreSQL URL.
const POSTGRES_PARAMETERS: [&str; 4] = [
    "target_session_attrs",
    "sslmode",
    "connect_timeout",
    "application_name",
];

/// Redis's default number of databases: a URL naming one beyond it is a mistake.
const REDIS_DATABASES: u8 = 16;
const REDIS_PORT: u16 = 6379;

impl Credentials {
    /// The `Authorization` header carrying these credentials, marked sensitive so that HTTP
    /// libraries never log it; refused when a token has bytes a header cannot carry.
    fn header(&self) -> Result<HeaderValue, NotAttachable> {
        let text = match self {
            Credentials::Basic { user, password } => {
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            }
            Credentials::Bearer(token) => format!("Bearer {token}"),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| NotAttachable::SHAPE)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Attachment {
    /// What [`Attachment::parse`] accepts, for error messages.
    pub const EXPECTED: &str = "an http(s) URL with a host and no query or fragment, like http://user:token@upstream:8081/, a redis(s) URL redis://[user][:password]@host[:port][/db] with a database from 0 to 15 and no query, or a PostgreSQL URL postgres://user:password@host[:port][,host2[:port]...]/dbname[?target_session_attrs=read-write&sslmode=verify-full|require|disable|prefer&connect_timeout=...&application_name=...]";

    pub fn parse(text: &str) -> Result<Self, NotAttachable> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            // Several hosts are no URL the url crate reads; tokio-postgres reads it as libpq does.
            return PostgresAttachment::parse(text).map(Attachment::Postgres);
        }
        let url = Url::parse(text).map_err(|_| NotAttachable::SHAPE)?;
        let valid = url.host_str().is_some_and(|host| !host.is_empty())
            && url.query().is_none()
            && url.fragment().is_none();
        match url.scheme() {
            _ if !valid => Err(NotAttachable::SHAPE),
            "http" | "https" => HttpAttachment::parse(url).map(Attachment::Http),
            "redis" | "rediss" => RedisAttachment::parse(url).map(Attachment::Redis),
            _ => Err(NotAttachable::SHAPE),
        }
    }

    /// `http`, `redis` or `postgres`: what `/api/status` reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Attachment::Http(_) => "http",
            Attachment::Redis(_) => "redis",
            Attachment::Postgres(_) => "postgres",
        }
    }

    /// The URL as configured, with the secret shown as `***`.
    pub fn redacted(&self) -> String {
        match self {
            Attachment::Http(http) => http.redacted(),
            Attachment::Redis(redis) => shared::redact::url(&redis.url),
            Attachment::Postgres(postgres) => shared::redact::credentials_in(&postgres.text),
        }
    }
}

impl PostgresAttachment {
    fn parse(text: &str) -> Result<Self, NotAttachable> {
        let query = text.split_once('?').map_or("", |(_, query)| query);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !POSTGRES_PARAMETERS.contains(&name) {
                return Err(NotAttachable(
                    "a PostgreSQL URL may set only target_session_attrs, sslmode, connect_timeout and application_name",
                ));
            }
            if name == "sslmode"
                && !matches!(value, "disable" | "prefer" | "require" | "verify-full")
            {
                return Err(NotAttachable(
                    "sslmode must be verify-full or require (TLS, the certificate verified) or disable or prefer (no TLS)",
                ));
            }
        }
        let tls = query
            .split('&')
            .any(|pair| matches!(pair, "sslmode=require" | "sslmode=verify-full"));
        // tokio-postgres knows sslmode up to `require`; the verifying is the connector's.
        let readable = text.replace("sslmode=verify-full", "sslmode=require");
        let config = tokio_postgres::Config::from_str(&readable)
            .map_err(|_| NotAttachable("not a PostgreSQL URL libpq would read"))?;
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err(NotAttachable("a PostgreSQL URL must name its database"));
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err(NotAttachable("a PostgreSQL URL must name its user"));
        }
        if config.get_hosts().is_empty() {
            return Err(NotAttachable("a PostgreSQL URL must name its host"));
        }
        Ok(PostgresAttachment {
            config,
            text: text.to_owned(),
            tls,
        })
    }

    /// The connection settings, with `connect_timeout` (per host) where the URL sets none.
    pub fn config(&self, connect_timeout: Duration) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("portbound-consumer");
        }
        config
    }

    /// The database's name.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// Whether connections speak TLS, verified.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The hosts, as certificates must name them: `db` or `pg-a,pg-b`.
    pub fn hosts(&self) -> String {
        let names: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        names.join(",")
    }
}

impl RedisAttachment {
    fn parse(url: Url) -> Result<Self, NotAttachable> {
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 2 => {
                digits.parse().map_err(|_| NotAttachable::SHAPE)?
            }
            _ => return Err(NotAttachable::SHAPE),
        };
        if db >= REDIS_DATABASES {
            return Err(NotAttachable::SHAPE);
        }
        // And the redis crate, which connects with it, must read it too.
        redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|_| NotAttachable::SHAPE)?;
        Ok(RedisAttachment {
            host: url.host_str().ok_or(NotAttachable::SHAPE)?.to_owned(),
            port: url.port().unwrap_or(REDIS_PORT),
            db,
            url,
        })
    }

    /// The host name, as a certificate must name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL with its credentials, for the `redis` client only.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `host:port/db`, to name the instance.
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.db)
    }
}

impl HttpAttachment {
    fn parse(mut url: Url) -> Result<Self, NotAttachable> {
        let decode = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| NotAttachable::SHAPE)
        };
        let user = decode(url.username())?;
        let credentials = match url.password() {
            Some(password) => Some(Credentials::Basic {
                user,
                password: decode(password)?,
            }),
            None if !user.is_empty() => Some(Credentials::Bearer(user)),
            None => None,
        };
        url.set_username("").map_err(|_| NotAttachable::SHAPE)?;
        url.set_password(None).map_err(|_| NotAttachable::SHAPE)?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let authorization = credentials.as_ref().map(Credentials::header).transpose()?;
        Ok(HttpAttachment {
            base: url,
            credentials,
            authorization,
        })
    }

    /// The URL of `path` (relative, like `v1/kv/links/abc`) on the backend.
    pub fn endpoint(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("a relative path joins onto an http base URL")
    }

    /// The host name, as a certificate must name it.
    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The `Authorization` header every request to the backend carries, if any.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// The URL as configured, with the secret shown as `***`.
    pub fn redacted(&self) -> String {
        let mut shown = self.base.clone();
        match &self.credentials {
            Some(Credentials::Basic { user, .. }) => {
                let _ = shown.set_username(user);
                let _ = shown.set_password(Some("***"));
            }
            Some(Credentials::Bearer(_)) => {
                let _ = shown.set_username("***");
            }
            None => {}
        }
        shown.to_string()
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Attachment({})", self.redacted())
    }
}

impl fmt::Debug for HttpAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpAttachment({})", self.redacted())
    }
}

impl fmt::Debug for PostgresAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = shared::redact::credentials_in(&self.text);
        write!(f, "PostgresAttachment({text})")
    }
}

impl fmt::Debug for RedisAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisAttachment({})", shared::redact::url(&self.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(text: &str) -> HttpAttachment {
        match Attachment::parse(text).unwrap() {
            Attachment::Http(http) => http,
            other => panic!("{other:?} is not http"),
        }
    }

    fn endpoint(base: &str) -> String {
        http(base).endpoint("v1/kv/links/abc").to_string()
    }

    #[test]
    fn joins_keep_every_segment_of_a_prefix_once() {
        assert_eq!(endpoint("http://up:8081"), "http://up:8081/v1/kv/links/abc");
        assert_eq!(
            endpoint("http://up:8081/"),
            "http://up:8081/v1/kv/links/abc"
        );
        assert_eq!(endpoint("http://up/kv-a"), "http://up/kv-a/v1/kv/links/abc");
        assert_eq!(
            endpoint("http://up/kv-a/"),
            "http://up/kv-a/v1/kv/links/abc"
        );
        assert_eq!(
            endpoint("https://up/a/b/"),
            "https://up/a/b/v1/kv/links/abc"
        );
        let attachment = http("http://up/p/");
        assert_eq!(
            attachment.endpoint("/v1/info").as_str(),
            "http://up/p/v1/info"
        );
    }

    #[test]
    fn userinfo_becomes_credentials_and_leaves_the_url() {
        let attachment = http("http://portbound:s%40cret@up:8081/");
        assert_eq!(
            attachment.credentials(),
            Some(&Credentials::Basic {
                user: "portbound".into(),
                password: "s@cret".into()
            })
        );
        assert_eq!(
            attachment.endpoint("v1/info").as_str(),
            "http://up:8081/v1/info"
        );
        assert_eq!(attachment.redacted(), "http://portbound:***@up:8081/");
        assert!(!format!("{attachment:?}").contains("cret"));

        let bearer = http("http://t0ken@up/");
        assert_eq!(
            bearer.credentials(),
            Some(&Credentials::Bearer("t0ken".into()))
        );
        assert_eq!(bearer.redacted(), "http://***@up/");
    }

    #[test]
    fn credentials_become_an_authorization_header() {
        let basic = http("http://portbound:s3cret@up/");
        let header = basic.authorization().unwrap();
        assert_eq!(header, "Basic cG9ydGJvdW5kOnMzY3JldA==");
        assert!(header.is_sensitive());
        let bearer = http("http://t0ken@up/");
        assert_eq!(bearer.authorization().unwrap(), "Bearer t0ken");
        // A token that decodes to a byte no header can carry is refused at startup.
        assert!(Attachment::parse("http://t%0Aken@up/").is_err());
    }

    #[test]
    fn other_schemes_queries_fragments_and_missing_hosts_are_refused() {
        for bad in [
            "ftp://up/",
            "http://up/?q=1",
            "http://up/#f",
            "http://",
            "up:8081",
            "not a url",
            "unix:/run/up.sock",
            "redis://up/16",
            "redis://up/x",
            "redis://up/0/1",
            "redis://up/-1",
            "redis://up/0?protocol=resp3",
            "redis+unix:///run/redis.sock",
            "rediss://",
        ] {
            assert!(Attachment::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_postgres_url_is_read_the_way_libpq_reads_it() {
        let text = "postgres://portbound:s3cret@db1:5432,db2:5433/links?target_session_attrs=read-write&connect_timeout=3&application_name=app";
        let attachment = Attachment::parse(text).unwrap();
        assert_eq!(attachment.kind(), "postgres");
        assert_eq!(
            attachment.redacted(),
            "postgres://portbound:***@db1:5432,db2:5433/links?target_session_attrs=read-write&connect_timeout=3&application_name=app"
        );
        assert!(!format!("{attachment:?}").contains("s3cret"));
        let Attachment::Postgres(postgres) = attachment else {
            panic!("not postgres");
        };
        let config = postgres.config(Duration::from_secs(1));
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), [5432, 5433]);
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(config.get_application_name(), Some("app"));
        assert_eq!(postgres.dbname(), "links");
        let plain = Attachment::parse("postgresql://me@db/links").unwrap();
        let Attachment::Postgres(plain) = plain else {
            panic!("not postgres");
        };
        let config = plain.config(Duration::from_secs(1));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert_eq!(config.get_application_name(), Some("portbound-consumer"));
        assert!(!plain.tls());
        assert_eq!(postgres.hosts(), "db1,db2");
    }

    #[test]
    fn a_postgres_url_with_verify_full_or_require_speaks_tls() {
        for mode in ["verify-full", "require"] {
            let text = format!("postgres://me:pw@db/links?sslmode={mode}");
            let Attachment::Postgres(postgres) = Attachment::parse(&text).unwrap() else {
                panic!("not postgres");
            };
            assert!(postgres.tls(), "{mode}");
            let config = postgres.config(Duration::from_secs(1));
            assert_eq!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
            assert_eq!(
                Attachment::Postgres(postgres).redacted(),
                text.replace(":pw@", ":***@")
            );
        }
    }

    #[test]
    fn a_postgres_url_without_a_database_or_with_what_the_consumer_does_not_take_is_refused() {
        for (bad, reason) in [
            ("postgres://me:pw@db:5432", "must name its database"),
            ("postgres://me:pw@db:5432/", "must name its database"),
            (
                "postgres://me:pw@db/links?sslmode=verify-ca",
                "sslmode must be",
            ),
            ("postgres://me:pw@db/links?sslmode=allow", "sslmode must be"),
            ("postgres://me:pw@db/links?keepalives=0", "may set only"),
            (
                "postgres://me:pw@db/links?target_session_attrs=primary",
                "libpq",
            ),
            ("postgres://me:pw@db:x/links", "libpq"),
            ("postgres://:pw@db/links", "must name its user"),
        ] {
            let error = Attachment::parse(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad}: {error}");
            assert!(!error.contains("pw"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_redis_url_names_its_host_port_and_database_and_hides_its_password() {
        let Attachment::Redis(redis) = Attachment::parse("redis://:s3cret@cache:6380/3").unwrap()
        else {
            panic!("not redis");
        };
        assert_eq!(redis.address(), "cache:6380/3");
        let attachment = Attachment::Redis(redis);
        assert_eq!(attachment.kind(), "redis");
        assert_eq!(attachment.redacted(), "redis://:***@cache:6380/3");
        assert!(!format!("{attachment:?}").contains("s3cret"));
        let Attachment::Redis(defaults) = Attachment::parse("rediss://user:pw@cache").unwrap()
        else {
            panic!("not redis");
        };
        assert_eq!(defaults.address(), "cache:6379/0");
        assert_eq!(Attachment::parse("http://up/").unwrap().kind(), "http");
    }
}
