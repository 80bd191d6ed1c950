//! URLs with their credentials hidden.
//!
//! An attached resource is named by a URL that may carry a token in its userinfo
//! (`http://portbound:TOKEN@upstream:8081/`). That URL is logged at startup, reported by
//! `/api/status` and quoted in configuration errors; every one of those goes through here.

use url::Url;

/// `url` as text, with the password (or a lone username, which is then the secret) as `***`.
pub fn url(url: &Url) -> String {
    credentials_in(url.as_str())
}

/// Hides the userinfo credentials of a URL-like text, even one that does not parse as a URL.
/// Text without `scheme://…@` is returned as it is.
pub fn credentials_in(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let shown = match authority[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!(
        "{}{shown}{}",
        &text[..authority_start],
        &text[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_hidden_and_the_rest_kept() {
        let parsed = Url::parse("http://portbound:s3cret@upstream:8081/kv/").unwrap();
        assert_eq!(url(&parsed), "http://portbound:***@upstream:8081/kv/");
    }

    #[test]
    fn a_lone_username_is_taken_for_a_secret() {
        assert_eq!(credentials_in("https://tok3n@host/"), "https://***@host/");
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        assert_eq!(credentials_in("http://host:1/a@b"), "http://host:1/a@b");
        assert_eq!(credentials_in("not a url"), "not a url");
    }

    #[test]
    fn text_that_does_not_parse_is_still_redacted() {
        assert_eq!(
            credentials_in("http://user:p@ss@bad host:x/"),
            "http://user:***@bad host:x/"
        );
    }
}
