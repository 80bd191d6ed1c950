//! Short links: what a code may be, what a target may be, and what is stored in the backend.
//!
//! A code is 1–[`MAX_CODE_LEN`] characters of `A-Z a-z 0-9 _ -`, minus the consumer's own route names. That
//! alphabet has no `.`, `/` or `%`, so a code can never address anything in the backend but its own
//! `links/{code}` and `clicks/{code}`. Random codes are 7 characters from a CSPRNG (62^7 ≈
//! 3.5 × 10^12), hard to enumerate.

use std::fmt;
use std::time::SystemTime;

use rand::RngExt;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::pattern::Pattern;
use url::Url;
use utoipa::openapi::{RefOr, Schema};

/// Longest target URL accepted, in characters.
pub const MAX_URL_LEN: usize = 2048;
const RANDOM_CODE_LEN: usize = 7;

/// Longest code, in characters: the bound in [`CODE_PATTERN`] (a test holds them together).
pub const MAX_CODE_LEN: usize = 64;

/// What a code looks like (reserved words aside).
pub static CODE_PATTERN: Pattern = Pattern::new("^[A-Za-z0-9_-]{1,64}$");

/// What a target looks like: `http` or `https`; a host that is a DNS name whose last label
/// starts with a letter (so it can never be read as a number) or a dotted IPv4 address; an
/// optional port up to 65535 without leading zeros; then nothing, or a path, query or fragment
/// of any characters but spaces and controls. No credentials, since `@` cannot appear before
/// the path. Everything it admits parses as a URL with a host, except labels starting with
/// `xn--` that are not valid punycode.
pub static TARGET_PATTERN: Pattern = Pattern::new(concat!(
    "^[Hh][Tt][Tt][Pp][Ss]?://",
    "(?:(?:[A-Za-z0-9_-]+\\.)*[A-Za-z][A-Za-z0-9_-]*",
    "|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))",
    "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0))?",
    "(?:[/?#][^\\x00-\\x20\\x7F]*)?$",
));

/// Codes that would shadow the consumer's own routes, or that people expect to be pages.
pub const RESERVED: &[&str] = &[
    "admin", "api", "assets", "favicon", "health", "healthz", "index", "livez", "metrics",
    "openapi", "readyz", "robots", "static", "status", "v1",
];

/// A valid short code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code(String);

/// Why a code was refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCode {
    #[error("the code {0:?} must be 1 to {MAX_CODE_LEN} characters of A-Z a-z 0-9 _ -")]
    Shape(String),
    #[error("the code {0:?} is reserved for the shortener's own pages")]
    Reserved(String),
}

impl Code {
    pub fn parse(text: &str) -> Result<Self, InvalidCode> {
        if !CODE_PATTERN.is_match(text) {
            return Err(InvalidCode::Shape(text.to_owned()));
        }
        if RESERVED.iter().any(|word| word.eq_ignore_ascii_case(text)) {
            return Err(InvalidCode::Reserved(text.to_owned()));
        }
        Ok(Code(text.to_owned()))
    }

    /// A fresh random code.
    pub fn random() -> Self {
        let code: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(RANDOM_CODE_LEN)
            .map(char::from)
            .collect();
        Code(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Code {
    /// The shape only. A path that is not a code is simply not found, and a reserved word that
    /// is one of the consumer's own paths is that path's operation; a new link's code must also
    /// not be reserved, which the document adds from [`reserved_schema`].
    fn schema() -> RefOr<Schema> {
        CODE_PATTERN
            .string()
            .description(Some(format!(
                "1–{MAX_CODE_LEN} characters of A-Z a-z 0-9 _ -"
            )))
            .into()
    }
}

/// The reserved words as a schema that matches them (and only strings) in any case, as
/// `Code::parse` does.
pub fn reserved_schema() -> serde_json::Value {
    let any_case: Vec<String> = RESERVED
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| match c {
                    'a'..='z' => format!("[{}{c}]", c.to_ascii_uppercase()),
                    _ => c.to_string(),
                })
                .collect()
        })
        .collect();
    json!({"type": "string", "pattern": format!("^(?:{})$", any_case.join("|"))})
}

impl utoipa::ToSchema for Code {}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The schema of a target, for the OpenAPI document.
pub fn target_schema() -> utoipa::openapi::Object {
    TARGET_PATTERN
        .string()
        .max_length(Some(MAX_URL_LEN))
        .description(Some(format!(
            "The target: an absolute http(s) URL of at most {MAX_URL_LEN} characters whose host \
             is a DNS name or an IPv4 address, without credentials, and not this shortener's \
             own PUBLIC_URL host and port. Punycode labels (xn--) must decode."
        )))
        .build()
}

/// Why a target URL was refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTarget {
    #[error("the url is empty: enter the link to shorten")]
    Empty,
    #[error("the url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error(
        "the url must be an http(s) URL: a host name or IPv4 address, an optional port, then an optional path, query or fragment without spaces"
    )]
    Shape,
    #[error("the url is not an absolute URL: {0}")]
    Unparsable(String),
    #[error("the url must use http or https")]
    Scheme,
    #[error("the url must have a host")]
    NoHost,
    #[error("the url must not contain credentials")]
    Credentials,
    #[error("the url points back to this shortener")]
    OwnHost,
}

/// Checks a target URL: at most [`MAX_URL_LEN`] characters, of the shape [`TARGET_PATTERN`] describes (so
/// http(s), a host, no userinfo), a URL that parses, and not a link back to this shortener
/// (`public`), which would make a redirect loop.
pub fn validate_target(text: &str, public: &Url) -> Result<Url, InvalidTarget> {
    if text.is_empty() {
        return Err(InvalidTarget::Empty);
    }
    if text.chars().count() > MAX_URL_LEN {
        return Err(InvalidTarget::TooLong);
    }
    let url = Url::parse(text).map_err(|e| InvalidTarget::Unparsable(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidTarget::Scheme);
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(InvalidTarget::NoHost);
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidTarget::Credentials);
    }
    let own = public
        .host_str()
        .is_some_and(|own| own.eq_ignore_ascii_case(host))
        && public.port_or_known_default() == url.port_or_known_default();
    if own {
        return Err(InvalidTarget::OwnHost);
    }
    // Last, so that the common mistakes above get their own sentence.
    if !TARGET_PATTERN.is_match(text) {
        return Err(InvalidTarget::Shape);
    }
    Ok(url)
}

/// The largest link document the consumer reads from any backend: one whose URL of
/// [`MAX_URL_LEN`] characters is all four-byte characters, stored percent-encoded (12 bytes
/// each), with its creation time and id. A stored value larger than this is none the consumer
/// wrote; every adapter refuses it without reading it whole.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;

const _: () = assert!(MAX_URL_LEN * 12 + 1024 <= MAX_DOCUMENT_BYTES);

/// What is stored in the backend at `links/{code}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDocument {
    pub url: String,
    /// RFC 3339, UTC, seconds.
    pub created_at: String,
    /// Unique to the request that created the link, so that a create retried after a lost
    /// answer can recognise its own document. Absent in documents written by other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_id: Option<String>,
}

impl LinkDocument {
    pub fn new(url: &Url) -> Self {
        LinkDocument {
            url: url.to_string(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            creation_id: Some(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Whether `self` is the document `ours` wrote (not merely an equal one).
    pub fn written_by(&self, ours: &LinkDocument) -> bool {
        self.creation_id.is_some() && self.creation_id == ours.creation_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        Url::parse("http://localhost:8080/").unwrap()
    }

    #[test]
    fn codes_are_a_safe_alphabet_and_not_reserved() {
        for good in ["abc", "A-b_9", &"x".repeat(64)] {
            assert!(Code::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "%2e%2e",
            "a/b",
            "a.b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert_eq!(
                Code::parse(bad),
                Err(InvalidCode::Shape(bad.to_owned())),
                "{bad}"
            );
        }
        for reserved in ["api", "API", "livez", "metrics", "readyz"] {
            assert!(matches!(
                Code::parse(reserved),
                Err(InvalidCode::Reserved(_))
            ));
        }
    }

    #[test]
    fn the_documented_reserved_words_are_the_refused_ones_in_any_case() {
        let schema = reserved_schema();
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        for word in RESERVED {
            let upper = word.to_ascii_uppercase();
            assert!(pattern.is_match(word) && pattern.is_match(&upper), "{word}");
            assert!(matches!(Code::parse(&upper), Err(InvalidCode::Reserved(_))));
        }
        for code in ["apis", "xapi", "v2", "docs"] {
            assert!(!pattern.is_match(code), "{code}");
            assert!(Code::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn the_code_pattern_states_the_longest_code() {
        assert!(
            CODE_PATTERN
                .source()
                .ends_with(&format!("{{1,{MAX_CODE_LEN}}}$")),
            "{}",
            CODE_PATTERN.source()
        );
        assert!(Code::parse(&"x".repeat(MAX_CODE_LEN)).is_ok());
        assert!(Code::parse(&"x".repeat(MAX_CODE_LEN + 1)).is_err());
    }

    #[test]
    fn random_codes_are_valid_and_differ() {
        let a = Code::random();
        assert_eq!(Code::parse(a.as_str()), Ok(a.clone()));
        assert_ne!(a, Code::random());
    }

    #[test]
    fn targets_must_be_plain_http_urls_elsewhere() {
        let ok = validate_target("https://example.com/a?b#c", &public()).unwrap();
        assert_eq!(ok.as_str(), "https://example.com/a?b#c");
        let cases = [
            ("ftp://example.com/", InvalidTarget::Scheme),
            ("javascript:alert(1)", InvalidTarget::Scheme),
            ("https://user:pw@example.com/", InvalidTarget::Credentials),
            ("https://user@example.com/", InvalidTarget::Credentials),
            ("http://localhost:8080/abc", InvalidTarget::OwnHost),
            ("http://LOCALHOST:8080/", InvalidTarget::OwnHost),
        ];
        for (text, expected) in cases {
            assert_eq!(validate_target(text, &public()), Err(expected), "{text}");
        }
        assert!(validate_target("http://localhost:9999/", &public()).is_ok());
        assert!(matches!(
            validate_target("example.com", &public()),
            Err(InvalidTarget::Unparsable(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(
            validate_target(&long, &public()),
            Err(InvalidTarget::TooLong)
        );
    }
}
