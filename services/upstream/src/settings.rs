//! The upstream's configuration, read once at startup and validated before anything binds.

use std::fmt;

use shared::config::{ConfigError, FromLayers, Layers};
use shared::pattern::Pattern;
use shared::server::ServerSettings;
use shared::tls::TlsFiles;

/// The largest value accepted when `MAX_VALUE_BYTES` is unset: 64 KiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

/// The port the upstream binds when `PORT` is unset.
pub const DEFAULT_PORT: u16 = 8081;

/// What `INSTANCE_NAME` may be; it is sent as the `X-Instance` header.
pub static INSTANCE_PATTERN: Pattern = Pattern::new("^[A-Za-z0-9._-]{1,64}$");

/// The upstream's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST`, `PORT` (default 8081), `WORKERS`, `SHUTDOWN_DELAY`, `SHUTDOWN_TIMEOUT`.
    pub server: ServerSettings,
    /// SQLite file. `DATABASE_PATH`, default `data/upstream.sqlite3` (its directory is created);
    /// `:memory:` keeps everything in memory, for throwaway runs.
    pub database_path: String,
    /// Token every `/v1` call must present (Bearer, or as the Basic password). `ACCESS_TOKEN`,
    /// default unset: `/v1` is open, and a warning says so at startup.
    pub access_token: Option<AccessToken>,
    /// Name reported by `/v1/info` and the `X-Instance` header. `INSTANCE_NAME`, default
    /// `upstream`.
    pub instance_name: String,
    /// Largest accepted value (request body), in bytes. `MAX_VALUE_BYTES`, default
    /// [`DEFAULT_MAX_VALUE_BYTES`].
    pub max_value_bytes: usize,
    /// Memory for the cache of values that answers most GETs without reading SQLite, in bytes.
    /// `READ_CACHE_BYTES`, default 67108864 (64 MiB); 0 turns the cache off.
    pub read_cache_bytes: u64,
    /// Writes that may wait for the single writer; one more is answered `503` with
    /// `Retry-After`, so more writers than the disk can commit for meet a bounded queue.
    /// `WRITE_QUEUE_LIMIT`, default 4096 (16 group commits).
    pub write_queue_limit: usize,
    /// Serve HTTPS: `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM, picked up again when they change),
    /// and with `TLS_CLIENT_CA_FILE` require a client certificate signed by that CA on `/v1`.
    /// Default unset: plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl Settings {
    /// Settings for a throwaway local instance on `port` (tests use 0) with an in-memory store.
    pub fn local(port: u16) -> Self {
        Settings {
            server: ServerSettings::local(port),
            database_path: ":memory:".to_owned(),
            access_token: None,
            instance_name: "upstream".to_owned(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            read_cache_bytes: 1 << 20,
            write_queue_limit: crate::storage::DEFAULT_WRITE_QUEUE,
            tls: None,
        }
    }
}

impl FromLayers for Settings {
    fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        Ok(Settings {
            server: ServerSettings::from_layers(layers, DEFAULT_PORT)?,
            database_path: layers.parse(
                "DATABASE_PATH",
                "data/upstream.sqlite3",
                "a file path or :memory:",
                |text| Ok::<_, ()>(text.to_owned()),
            )?,
            access_token: layers.parse_secret(
                "ACCESS_TOKEN",
                "a token of printable ASCII characters without spaces",
                |text| AccessToken::parse(text).ok_or(()),
            )?,
            instance_name: layers.parse(
                "INSTANCE_NAME",
                "upstream",
                "1 to 64 characters of A-Z a-z 0-9 . _ -",
                |text| {
                    if INSTANCE_PATTERN.is_match(text) {
                        Ok(text.to_owned())
                    } else {
                        Err(())
                    }
                },
            )?,
            max_value_bytes: layers.parse_in_range::<usize>(
                "MAX_VALUE_BYTES",
                DEFAULT_MAX_VALUE_BYTES,
                "a size in bytes",
                1..=16_777_216,
            )?,
            read_cache_bytes: layers.parse(
                "READ_CACHE_BYTES",
                "67108864",
                "a size in bytes (0 turns the cache off)",
                str::parse,
            )?,
            write_queue_limit: layers.parse_in_range::<usize>(
                "WRITE_QUEUE_LIMIT",
                crate::storage::DEFAULT_WRITE_QUEUE,
                "a number of writes",
                1..=1_000_000,
            )?,
            tls: TlsFiles::from_layers(layers)?,
        })
    }
}

/// The shared secret guarding `/v1`. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// A token of printable ASCII without spaces, or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        text.bytes()
            .all(|b| b.is_ascii_graphic())
            .then(|| AccessToken(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::from_layers(&Layers::from_vars(vars)?)
    }

    #[test]
    fn every_variable_read_can_be_set_from_the_environment() {
        let names: Vec<String> = Settings::variables().into_iter().map(|v| v.name).collect();
        for name in ["PORT", "DATABASE_PATH", "ACCESS_TOKEN", "WRITE_QUEUE_LIMIT"] {
            assert!(names.iter().any(|read| read == name), "{name} in {names:?}");
        }
        assert_eq!(
            shared::config::not_read_from_the_environment(Settings::from_layers),
            Vec::<String>::new()
        );
    }

    #[test]
    fn defaults_match_the_documentation() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.server.port, 8081);
        assert_eq!(settings.server.host.to_string(), "127.0.0.1");
        assert_eq!(settings.database_path, "data/upstream.sqlite3");
        assert_eq!(settings.access_token, None);
        assert_eq!(settings.instance_name, "upstream");
        assert_eq!(settings.max_value_bytes, 65536, "the documented default");
        assert_eq!(settings.read_cache_bytes, 64 << 20);
    }

    #[test]
    fn a_token_with_spaces_is_refused_without_showing_it() {
        let error = load(&[("ACCESS_TOKEN", "my secret")])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("ACCESS_TOKEN=\"***\""), "{error}");
        assert!(!error.contains("secret\""), "{error}");
    }

    #[test]
    fn an_instance_name_must_fit_in_a_header() {
        let error = load(&[("INSTANCE_NAME", "a b")]).unwrap_err().to_string();
        assert!(error.starts_with("INSTANCE_NAME=\"a b\""), "{error}");
    }

    #[test]
    fn the_token_does_not_leak_through_debug() {
        let token = AccessToken::parse("hunter2").unwrap();
        assert_eq!(format!("{token:?}"), "AccessToken(***)");
    }
}
