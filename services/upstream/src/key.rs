//! Keys and counter names: what the store accepts as a name.
//!
//! 1–256 bytes of `A-Z a-z 0-9 . _ : / -`, split by `/` into segments none of which is empty,
//! `.` or `..`. So a key is also a safe, unambiguous URL path: it cannot start with `/`, hide a
//! traversal, or need percent-encoding.

use std::fmt;

use shared::pattern::Pattern;
use utoipa::openapi::{RefOr, Schema};

/// The longest key, in bytes.
pub const MAX_LEN: usize = 256;

/// The shape of a key: `/`-separated segments of `A-Z a-z 0-9 . _ : -`, none empty, `.` or
/// `..`. A segment starts with a character other than a dot, or with one dot and another
/// character, or with two dots and at least one more character.
pub static PATTERN: Pattern = Pattern::new(concat!(
    r"^(?:[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.\.[A-Za-z0-9._:-]+)",
    r"(?:/(?:[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.\.[A-Za-z0-9._:-]+))*$",
));

/// What a listing's `prefix` may hold: the start of a key (up to [`MAX_LEN`] bytes).
pub static PREFIX_PATTERN: Pattern = Pattern::new("^[A-Za-z0-9._:/-]*$");

/// A validated key or counter name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(String);

/// Why a text is not a key; the message is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key {0:?}: expected 1 to {MAX_LEN} characters of A-Z a-z 0-9 . _ : / - in segments that are not empty, '.' or '..'"
)]
pub struct InvalidKey(pub String);

impl Key {
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        if (1..=MAX_LEN).contains(&text.len()) && PATTERN.is_match(text) {
            Ok(Key(text.to_owned()))
        } else {
            Err(InvalidKey(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` may start a key: what a listing's `prefix` accepts.
pub fn is_prefix(text: &str) -> bool {
    text.len() <= MAX_LEN && PREFIX_PATTERN.is_match(text)
}

impl utoipa::PartialSchema for Key {
    fn schema() -> RefOr<Schema> {
        PATTERN
            .string()
            .min_length(Some(1))
            .max_length(Some(MAX_LEN))
            .description(Some(format!(
                "1–{MAX_LEN} characters of A-Z a-z 0-9 . _ : / -, in segments split by `/` none \
                 of which is empty, `.` or `..`. In a path, write each `/` of a key as `%2F` (a \
                 raw `/` is accepted too)."
            )))
            .into()
    }
}

impl utoipa::ToSchema for Key {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_accepted() {
        for key in ["a", "links/abc", "clicks/x-y_z.1", "a:b", &"k".repeat(256)] {
            assert_eq!(Key::parse(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn traversal_empty_segments_and_odd_bytes_are_refused() {
        for key in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "a b",
            "a%2e",
            "é",
            "a?b",
            "a\n",
            &"k".repeat(257),
        ] {
            assert!(Key::parse(key).is_err(), "{key:?} was accepted");
        }
    }

    #[test]
    fn dots_are_refused_only_as_whole_segments() {
        for key in [".a", "..a", "...", "a/.b/..c/...", "a.", "a..", "a/b."] {
            assert!(Key::parse(key).is_ok(), "{key:?} was refused");
        }
    }

    #[test]
    fn prefixes_are_key_characters_up_to_the_key_length() {
        assert!(is_prefix(""));
        assert!(is_prefix("links/"));
        assert!(is_prefix(&"k".repeat(256)));
        assert!(!is_prefix(&"k".repeat(257)));
        assert!(!is_prefix("a b"));
    }
}
