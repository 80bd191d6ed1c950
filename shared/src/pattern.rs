//! Text rules shared by a validator and a published document.
//!
//! A [`Pattern`] is one regular expression that is both the validator (compiled once with the
//! `regex` crate) and the `pattern` an OpenAPI document publishes, so the two cannot drift.
//! Patterns keep to the syntax on which ECMA-262 (what JSON Schema readers use), Python and
//! the `regex` crate agree: `^…$` anchors, ASCII classes and ranges, `(?:…)` groups,
//! alternation and counted repetition; never `\d`, `\w` or `\s`, whose meaning differs outside
//! ASCII.

use std::sync::OnceLock;

use regex::Regex;

/// A rule on text: one regular expression, used by the validator and published in the document.
pub struct Pattern {
    source: &'static str,
    compiled: OnceLock<Regex>,
}

impl Pattern {
    /// `source` must be anchored (`^…$`) and use only the syntax described in the module docs.
    pub const fn new(source: &'static str) -> Self {
        Pattern {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// The expression as the document publishes it.
    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| Regex::new(self.source).expect("a pattern of this crate compiles"))
            .is_match(text)
    }

    /// A string schema with this pattern, as `utoipa` builds schemas.
    pub fn string(&self) -> utoipa::openapi::schema::ObjectBuilder {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_texts_only() {
        let pattern = Pattern::new("^[a-z]{1,3}$");
        assert!(pattern.is_match("abc"));
        for text in ["", "abcd", "ab\n", "\nab", "aB"] {
            assert!(!pattern.is_match(text), "{text:?}");
        }
        assert_eq!(pattern.source(), "^[a-z]{1,3}$");
    }
}
