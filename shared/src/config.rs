//! Layered settings: code defaults → optional TOML file named by `CONFIG_FILE` → environment.
//!
//! The `config` crate merges the layers; this module then reads each variable by its
//! environment name and parses it in code, so that a bad value is reported the way an operator
//! needs it: one line with the variable, the value as given (credentials hidden) and what was
//! expected. A service turns that line into exit status 2 before it binds anything.
//!
//! A variable is declared in one place only: the call that reads it ([`Layers::parse`] and its
//! siblings), with its default and what it expects. There is no second list to keep in step:
//! every variable is taken from the environment, and [`Layers`] remembers which ones were read,
//! so that [`Layers::refuse_unknown_keys`] can refuse a key in the file that no setting reads
//! (a typo), and tests can list the variables with their defaults ([`Layers::variables`]) and
//! prove each one is read from the environment ([`not_read_from_the_environment`]).
//!
//! Keys in the file are the variable names in lower case (`port = 8081`,
//! `database_path = "…"`). An empty variable counts as unset.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Map, Source, Value};

use crate::redact;

/// The variable naming the optional TOML file. It is read from the environment only.
pub const CONFIG_FILE: &str = "CONFIG_FILE";

/// Why a service refused its configuration; printed as one line before exiting with status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value the service cannot use.
    #[error("{variable}={value:?}{origin}: expected {expected}")]
    Invalid {
        variable: String,
        /// The value as given, with credentials replaced by `***`.
        value: String,
        /// Empty for the environment, ` (from FILE)` for the config file.
        origin: String,
        expected: String,
    },
    /// The file named by `CONFIG_FILE` is missing, unreadable or not TOML.
    #[error("{CONFIG_FILE}={path:?}: expected a readable TOML file ({reason})")]
    File { path: String, reason: String },
    /// The file names a setting this service does not have.
    #[error("{CONFIG_FILE}={path:?}: unknown setting `{key}` (known: {known})")]
    UnknownKey {
        path: String,
        key: String,
        known: String,
    },
}

impl ConfigError {
    /// A value found unusable after parsing, for example a database path that cannot be opened.
    pub fn invalid(variable: &str, value: &str, expected: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            variable: variable.to_owned(),
            value: redact::credentials_in(value),
            origin: String::new(),
            expected: expected.to_string(),
        }
    }
}

/// A variable a service reads, as its reading declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// The value used when it is unset; `None` for a variable that is simply absent then.
    pub default: Option<String>,
}

/// The merged layers of one service's configuration, ready to be read variable by variable.
#[derive(Debug)]
pub struct Layers {
    /// Lower-case variable name → value, each value knowing where it came from.
    values: Map<String, Value>,
    /// The keys the file holds, lower case.
    file_keys: Vec<String>,
    file: Option<PathBuf>,
    /// Every variable read so far, by name, with its default.
    read: Mutex<BTreeMap<String, Option<String>>>,
}

/// A raw value and where it came from.
struct Raw {
    text: String,
    origin: String,
}

/// What the environment calls a variable: upper-case letters, digits and `_`, as POSIX names
/// them. Other names in the environment are no setting's and are passed over.
fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl Layers {
    /// Merges `CONFIG_FILE` and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`Layers::load`], with the environment given; tests use it to stay isolated.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env = Map::new();
        let mut file = None;
        for (name, value) in vars {
            if value.is_empty() {
                continue;
            }
            if name == CONFIG_FILE {
                file = Some(PathBuf::from(value));
            } else if is_variable_name(&name) {
                env.insert(name, value);
            }
        }

        let file_error = |error: config::ConfigError| ConfigError::File {
            path: display_path(file.as_ref()),
            reason: error.to_string(),
        };
        let mut builder = Config::builder();
        let mut file_keys = Vec::new();
        if let Some(path) = &file {
            let source = File::from(path.as_path()).format(FileFormat::Toml);
            file_keys = source.collect().map_err(file_error)?.into_keys().collect();
            builder = builder.add_source(source);
        }
        let values = builder
            .add_source(Environment::default().source(Some(env)))
            .build()
            .and_then(|config: Config| config.collect())
            .map_err(file_error)?;

        let mut read = BTreeMap::new();
        read.insert(CONFIG_FILE.to_owned(), None);
        Ok(Layers {
            values,
            file_keys,
            file,
            read: Mutex::new(read),
        })
    }

    /// Refuses a key in the file that no variable read so far is called: a typo, which would
    /// otherwise be silently ignored. Called once the settings have been read.
    pub fn refuse_unknown_keys(&self) -> Result<(), ConfigError> {
        let known: Vec<String> = self
            .variables()
            .into_iter()
            .map(|variable| variable.name.to_lowercase())
            .collect();
        let mut keys: Vec<&String> = self.file_keys.iter().collect();
        keys.sort();
        match keys.into_iter().find(|key| !known.contains(key)) {
            None => Ok(()),
            Some(key) => Err(ConfigError::UnknownKey {
                path: display_path(self.file.as_ref()),
                key: key.clone(),
                known: known.join(", "),
            }),
        }
    }

    /// Every variable read so far, in name order, with its default.
    pub fn variables(&self) -> Vec<Variable> {
        self.read
            .lock()
            .expect("the record of variables read")
            .iter()
            .map(|(name, default)| Variable {
                name: name.clone(),
                default: default.clone(),
            })
            .collect()
    }

    /// Whether `variable` was read, and its value came from the environment.
    pub fn read_from_environment(&self, variable: &str) -> bool {
        self.read
            .lock()
            .expect("the record of variables read")
            .contains_key(variable)
            && self
                .values
                .get(&variable.to_lowercase())
                .is_some_and(|value| value.origin().is_none_or(|o| o == "the environment"))
    }

    fn raw(&self, variable: &str, default: Option<&str>) -> Option<Raw> {
        self.read
            .lock()
            .expect("the record of variables read")
            .insert(variable.to_owned(), default.map(str::to_owned));
        let value = self.values.get(&variable.to_lowercase())?.clone();
        let origin = match value.origin() {
            Some(origin) if origin != "the environment" => format!(" (from {origin})"),
            _ => String::new(),
        };
        let text = value.into_string().ok()?;
        (!text.is_empty()).then_some(Raw { text, origin })
    }

    /// Reads `variable`, or `default` when unset, and parses it.
    pub fn parse<T, E>(
        &self,
        variable: &str,
        default: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        let raw = self.raw(variable, Some(default)).unwrap_or(Raw {
            text: default.to_owned(),
            origin: " (the default)".to_owned(),
        });
        parse(&raw.text).map_err(|_| invalid(variable, &raw, expected, false))
    }

    /// Like [`Layers::parse`], for a parser whose error says what in particular is wrong: the
    /// message adds it after what was expected, unless it is empty.
    pub fn parse_explained<T, E: fmt::Display>(
        &self,
        variable: &str,
        default: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        let mut reason = String::new();
        self.parse(variable, default, expected, |text| {
            parse(text).inspect_err(|error| reason = error.to_string())
        })
        .map_err(|error| match error {
            ConfigError::Invalid {
                variable,
                value,
                origin,
                expected,
            } if !reason.is_empty() => ConfigError::Invalid {
                variable,
                value,
                origin,
                expected: format!("{expected}; here: {reason}"),
            },
            error => error,
        })
    }

    /// Reads `variable` (or `default` when unset) as a whole number within `range`; the error
    /// says `what` it counts and the range, from the same bounds that check it.
    pub fn parse_in_range<T>(
        &self,
        variable: &str,
        default: T,
        what: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let expected = format!("{what} from {} to {}", range.start(), range.end());
        self.parse(variable, &default.to_string(), &expected, in_range(range))
    }

    /// Reads `variable` if it is set, and parses it.
    pub fn parse_optional<T, E>(
        &self,
        variable: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(variable, None)
            .map(|raw| parse(&raw.text).map_err(|_| invalid(variable, &raw, expected, false)))
            .transpose()
    }

    /// Like [`Layers::parse_optional`] for a secret: an error never shows the value.
    pub fn parse_secret<T, E>(
        &self,
        variable: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(variable, None)
            .map(|raw| parse(&raw.text).map_err(|_| invalid(variable, &raw, expected, true)))
            .transpose()
    }
}

/// A service's settings, read variable by variable from [`Layers`]; the service writes
/// [`FromLayers::from_layers`], and loading and listing come with it.
pub trait FromLayers: Sized {
    fn from_layers(layers: &Layers) -> Result<Self, ConfigError>;

    /// Reads the settings from `CONFIG_FILE` and the environment, and refuses a key in the
    /// file that no setting asked for.
    fn load() -> Result<Self, ConfigError> {
        let layers = Layers::load()?;
        let settings = Self::from_layers(&layers)?;
        layers.refuse_unknown_keys()?;
        Ok(settings)
    }

    /// Every variable read, with its default (`CONFIG_FILE` among them; not `RUST_LOG`, which
    /// the logger reads): what the configuration page lists. Panics if the defaults are
    /// refused.
    fn variables() -> Vec<Variable> {
        let layers = Layers::from_vars([]).expect("no file, no environment");
        if let Err(error) = Self::from_layers(&layers) {
            panic!("the defaults are refused: {error}");
        }
        layers.variables()
    }
}

/// The variables that `read` (a service's settings, read from [`Layers`]) reads but does not
/// take from the environment: each is set in turn, alone, to its default (or to `x` where it
/// has none), and must then be found read from the environment. Empty when every variable can
/// be set there; each service's tests assert that.
pub fn not_read_from_the_environment<T>(
    read: impl Fn(&Layers) -> Result<T, ConfigError>,
) -> Vec<String> {
    let defaults = Layers::from_vars([]).expect("no file, no environment");
    // With nothing set, every variable takes its default; a settings reader that fails here
    // reads fewer variables, which the list below then misses.
    let _ = read(&defaults);
    defaults
        .variables()
        .into_iter()
        .filter(|variable| variable.name != CONFIG_FILE)
        .filter(|variable| {
            let value = variable.default.clone().unwrap_or_else(|| "x".to_owned());
            let layers =
                Layers::from_vars([(variable.name.clone(), value)]).expect("one variable, no file");
            // A value this reader refuses was still read: what counts is where it came from.
            let _ = read(&layers);
            !layers.read_from_environment(&variable.name)
        })
        .map(|variable| variable.name)
        .collect()
}

fn invalid(variable: &str, raw: &Raw, expected: &str, secret: bool) -> ConfigError {
    ConfigError::Invalid {
        variable: variable.to_owned(),
        value: if secret {
            "***".to_owned()
        } else {
            redact::credentials_in(&raw.text)
        },
        origin: raw.origin.clone(),
        expected: expected.to_owned(),
    }
}

fn display_path(path: Option<&PathBuf>) -> String {
    path.map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// What [`duration`] expects, for error messages.
pub const DURATION_EXPECTED: &str = "a positive duration such as 500ms, 2s or 1m";

/// Parses a human duration (`500ms`, `2s`, `1m 30s`); zero is refused.
pub fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    match humantime::parse_duration(text)? {
        Duration::ZERO => Err(humantime::DurationError::Empty),
        duration => Ok(duration),
    }
}

/// A parser for a whole number within `range`, for [`Layers::parse`].
pub fn in_range<T>(range: RangeInclusive<T>) -> impl FnOnce(&str) -> Result<T, ()>
where
    T: FromStr + PartialOrd,
{
    move |text| match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_takes_whole_numbers_within_its_bounds_only() {
        let workers = || in_range::<usize>(1..=256);
        assert_eq!(workers()("1"), Ok(1));
        assert_eq!(workers()("256"), Ok(256));
        for bad in ["0", "257", "-1", "1.5", "", "eight"] {
            assert_eq!(workers()(bad), Err(()), "{bad}");
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn port(layers: &Layers) -> Result<u16, ConfigError> {
        layers.parse("PORT", "8081", "a port number from 0 to 65535", str::parse)
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let layers = Layers::from_vars(vars(&[])).unwrap();
        assert_eq!(port(&layers), Ok(8081));
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "port = 9000\ntimeout = \"3s\"\n").unwrap();
        let file = path.to_str().unwrap();

        let from_file = Layers::from_vars(vars(&[("CONFIG_FILE", file)])).unwrap();
        assert_eq!(port(&from_file), Ok(9000));

        let both = Layers::from_vars(vars(&[("CONFIG_FILE", file), ("PORT", "9001")]));
        assert_eq!(port(&both.unwrap()), Ok(9001));
    }

    #[test]
    fn a_bad_value_names_the_variable_the_value_and_what_is_expected() {
        let layers = Layers::from_vars(vars(&[("PORT", "80x")])).unwrap();
        let error = port(&layers).unwrap_err().to_string();
        assert_eq!(
            error,
            r#"PORT="80x": expected a port number from 0 to 65535"#
        );
    }

    #[test]
    fn a_bad_value_from_the_file_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "timeout = \"soon\"\n").unwrap();
        let env = vars(&[("CONFIG_FILE", path.to_str().unwrap())]);
        let layers = Layers::from_vars(env).unwrap();
        let error = layers
            .parse("TIMEOUT", "2s", DURATION_EXPECTED, duration)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(r#"TIMEOUT="soon" (from "#), "{error}");
        assert!(error.contains("settings.toml"), "{error}");
    }

    #[test]
    fn a_bad_default_is_reported_as_the_default() {
        let layers = Layers::from_vars(vars(&[])).unwrap();
        let error = layers.parse("PORT", "x", "a port", str::parse::<u16>);
        assert_eq!(
            error.unwrap_err().to_string(),
            r#"PORT="x" (the default): expected a port"#
        );
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let layers = Layers::from_vars(vars(&[("TOKEN", "hunter2 x")])).unwrap();
        let error = layers
            .parse_secret("TOKEN", "a token without spaces", |text: &str| {
                if text.contains(' ') { Err(()) } else { Ok(()) }
            })
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.starts_with("TOKEN=\"***\""), "{error}");
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let layers = Layers::from_vars(vars(&[("PORT", "")])).unwrap();
        assert_eq!(port(&layers), Ok(8081));
        assert_eq!(
            layers.parse_optional("TOKEN", "", |t| t.parse::<u8>()),
            Ok(None)
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "prot = 1\n").unwrap();
        let env = vars(&[("CONFIG_FILE", path.to_str().unwrap())]);
        let layers = Layers::from_vars(env).unwrap();
        assert_eq!(port(&layers), Ok(8081));
        let error = layers.refuse_unknown_keys().unwrap_err().to_string();
        assert!(error.contains("unknown setting `prot`"), "{error}");
        assert!(error.contains("(known: config_file, port)"), "{error}");
    }

    #[test]
    fn the_variables_read_are_listed_with_their_defaults() {
        let layers = Layers::from_vars(vars(&[])).unwrap();
        port(&layers).unwrap();
        layers
            .parse_optional("TOKEN", "", str::parse::<u8>)
            .unwrap();
        let listed: Vec<(String, Option<String>)> = layers
            .variables()
            .into_iter()
            .map(|variable| (variable.name, variable.default))
            .collect();
        assert_eq!(
            listed,
            [
                ("CONFIG_FILE".to_owned(), None),
                ("PORT".to_owned(), Some("8081".to_owned())),
                ("TOKEN".to_owned(), None),
            ]
        );
    }

    #[test]
    fn a_variable_the_environment_cannot_set_is_found_out() {
        let read = |layers: &Layers| {
            port(layers)?;
            // Not a name the environment can carry: only the file could set it.
            layers.parse("timeout", "2s", DURATION_EXPECTED, duration)
        };
        assert_eq!(not_read_from_the_environment(read), ["timeout"]);
        assert!(not_read_from_the_environment(port).is_empty());
    }

    #[test]
    fn a_missing_file_is_refused_by_name() {
        let env = vars(&[("CONFIG_FILE", "/nonexistent/portbound.toml")]);
        let error = Layers::from_vars(env).unwrap_err().to_string();
        assert!(
            error.starts_with(
                r#"CONFIG_FILE="/nonexistent/portbound.toml": expected a readable TOML file"#
            ),
            "{error}"
        );
    }

    #[test]
    fn unrelated_environment_variables_are_ignored() {
        let layers = Layers::from_vars(vars(&[("HOME", "/root"), ("PORT", "1")])).unwrap();
        assert_eq!(port(&layers), Ok(1));
    }

    #[test]
    fn a_number_out_of_range_is_refused_with_the_range_it_was_checked_against() {
        let layers = Layers::from_vars(vars(&[("WORKERS", "257")])).unwrap();
        let error = layers.parse_in_range::<usize>("WORKERS", 2, "a number of workers", 1..=256);
        assert_eq!(
            error.unwrap_err().to_string(),
            r#"WORKERS="257": expected a number of workers from 1 to 256"#
        );
        let unset = Layers::from_vars(vars(&[])).unwrap();
        assert_eq!(
            unset.parse_in_range("WORKERS", 2, "workers", 1..=256),
            Ok(2)
        );
    }

    #[test]
    fn durations_are_human_and_positive() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert!(duration("0s").is_err());
        assert!(duration("2").is_err());
    }
}
