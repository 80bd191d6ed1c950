//! Keys and counter names: what the store accepts as a name.
//!
//! 1–256 bytes of `A-Z a-z 0-9 . _ : / -`, split by `/` into segments none of which is empty,
//! `.` or `..`. So a key is also a safe, unambiguous URL path: it cannot start with `/`, hide a
//! traversal, or need percent-encoding.

use std::fmt;

/// The longest key, in bytes.
pub const MAX_LEN: usize = 256;

/// A validated key or counter name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(String);

/// Why a text is not a key; the message is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key {0:?}: expected 1 to 256 characters of A-Z a-z 0-9 . _ : / - in segments that are not empty, '.' or '..'"
)]
pub struct InvalidKey(pub String);

impl Key {
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        let valid = (1..=MAX_LEN).contains(&text.len())
            && text.bytes().all(is_key_byte)
            && text.split('/').all(|s| !matches!(s, "" | "." | ".."));
        if valid {
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

/// Whether `b` may appear in a key.
pub fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
}

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
            &"k".repeat(257),
        ] {
            assert!(Key::parse(key).is_err(), "{key:?} was accepted");
        }
    }
}
