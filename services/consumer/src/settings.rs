//! The consumer's configuration, read once at startup and validated before anything binds.

use std::time::Duration;

use shared::config::{ConfigError, DURATION_EXPECTED, FromLayers, Layers, duration};
use shared::server::ServerSettings;
use url::Url;

use crate::backend::BackendSettings;

/// The port the consumer binds when `PORT` is unset.
pub const DEFAULT_PORT: u16 = 8080;

/// The consumer's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST`, `PORT` (default 8080), `WORKERS`, `SHUTDOWN_DELAY`, `SHUTDOWN_TIMEOUT`.
    pub server: ServerSettings,
    /// The attached resource and how it is called: `UPSTREAM_URL`, `UPSTREAM_CONNECT_TIMEOUT`,
    /// `UPSTREAM_TIMEOUT`, `UPSTREAM_POOL_IDLE_TIMEOUT`, `CIRCUIT_FAILURES`, `CIRCUIT_COOLDOWN`.
    pub backend: BackendSettings,
    /// Base of the short links handed out. `PUBLIC_URL`, default `http://localhost:8080`.
    pub public_url: Url,
    /// How often counted clicks are sent to the backend. `CLICK_FLUSH_INTERVAL`, default `1s`.
    pub click_flush_interval: Duration,
    /// Most codes whose clicks wait to be sent (while the backend is away, a code clicked
    /// again after a failed flush counts twice); clicks beyond are dropped and counted in
    /// `consumer_clicks_dropped_total`. `CLICK_BUFFER_LIMIT`, default 100000.
    pub click_buffer_limit: usize,
}

impl Settings {
    /// Settings for a local consumer on `port` (tests use 0) attached to `upstream_url`.
    pub fn local(port: u16, upstream_url: &str) -> Result<Self, ConfigError> {
        let layers = Layers::from_vars([("UPSTREAM_URL".to_owned(), upstream_url.to_owned())])?;
        let mut settings = Self::from_layers(&layers)?;
        settings.server = ServerSettings::local(port);
        Ok(settings)
    }
}

impl FromLayers for Settings {
    fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        Ok(Settings {
            server: ServerSettings::from_layers(layers, DEFAULT_PORT)?,
            backend: BackendSettings::from_layers(layers)?,
            public_url: layers.parse(
                "PUBLIC_URL",
                "http://localhost:8080",
                "an http(s) URL with a host and no credentials, query or fragment",
                parse_public_url,
            )?,
            click_flush_interval: layers.parse(
                "CLICK_FLUSH_INTERVAL",
                "1s",
                DURATION_EXPECTED,
                duration,
            )?,
            click_buffer_limit: layers.parse_in_range::<usize>(
                "CLICK_BUFFER_LIMIT",
                100000,
                "a number of codes",
                1..=10_000_000,
            )?,
        })
    }
}

fn parse_public_url(text: &str) -> Result<Url, ()> {
    let mut url = Url::parse(text).map_err(|_| ())?;
    let valid = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !valid {
        return Err(());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
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
        for name in [
            "PORT",
            "UPSTREAM_URL",
            "CIRCUIT_COOLDOWN",
            "CLICK_BUFFER_LIMIT",
        ] {
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
        assert_eq!(settings.server.port, 8080);
        let backend = &settings.backend;
        assert_eq!(backend.attachment.to_string(), "http://127.0.0.1:8081/");
        assert_eq!(backend.connect_timeout, Duration::from_secs(1));
        assert_eq!(backend.timeout, Duration::from_secs(2));
        assert_eq!(backend.pool_idle_timeout, Duration::from_secs(4));
        assert_eq!(backend.circuit_failures, 5);
        assert_eq!(backend.circuit_cooldown, Duration::from_secs(5));
        assert_eq!(settings.public_url.as_str(), "http://localhost:8080/");
    }

    #[test]
    fn a_bad_upstream_url_is_refused_with_its_password_hidden() {
        let error = load(&[("UPSTREAM_URL", "ftp://me:hunter2@host/")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(r#"UPSTREAM_URL="ftp://me:***@host/""#),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_connect_timeout_longer_than_the_deadline_is_refused() {
        let error = load(&[("UPSTREAM_CONNECT_TIMEOUT", "3s")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("UPSTREAM_CONNECT_TIMEOUT=\"3s\""),
            "{error}"
        );
    }

    #[test]
    fn the_public_url_gets_a_trailing_slash_and_must_be_plain() {
        let settings = load(&[("PUBLIC_URL", "https://sho.rt/s")]).unwrap();
        assert_eq!(settings.public_url.as_str(), "https://sho.rt/s/");
        for bad in [
            "sho.rt",
            "https://u:p@sho.rt/",
            "https://sho.rt/?q",
            "mailto:a@b",
        ] {
            assert!(load(&[("PUBLIC_URL", bad)]).is_err(), "{bad}");
        }
    }
}
