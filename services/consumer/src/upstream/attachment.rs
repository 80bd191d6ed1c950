//! `UPSTREAM_URL`: the handle of the attached resource, credentials and all.
//!
//! The URL is split once, at startup, into a base without credentials and the credentials
//! themselves. Requests are built from the base and carry the credentials as an
//! `Authorization` header, so no URL the client builds, logs or reports can contain the secret.
//! The base path always ends in `/`, so joining `v1/kv/…` onto `http://host/prefix` or
//! `http://host/prefix/` gives `/prefix/v1/kv/…` either way, never dropping or doubling a
//! segment.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use reqwest::header::HeaderValue;
use url::Url;

/// A parsed `UPSTREAM_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    base: Url,
    credentials: Option<Credentials>,
    /// The credentials as an `Authorization` header, built once.
    authorization: Option<HeaderValue>,
}

/// How the consumer proves itself to the upstream.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// From `user:token@`.
    Basic { user: String, password: String },
    /// From a lone `token@`.
    Bearer(String),
}

/// `UPSTREAM_URL` is not an attachable URL; see [`Attachment::EXPECTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an http(s) URL with a host and no query or fragment")]
pub struct NotAttachable;

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
        let mut value = HeaderValue::from_str(&text).map_err(|_| NotAttachable)?;
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
    pub const EXPECTED: &str = "an http(s) URL with a host and no query or fragment, like http://user:token@upstream:8081/";

    pub fn parse(text: &str) -> Result<Self, NotAttachable> {
        let mut url = Url::parse(text).map_err(|_| NotAttachable)?;
        let valid = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|host| !host.is_empty())
            && url.query().is_none()
            && url.fragment().is_none();
        if !valid {
            return Err(NotAttachable);
        }
        let decode = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| NotAttachable)
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
        url.set_username("").map_err(|_| NotAttachable)?;
        url.set_password(None).map_err(|_| NotAttachable)?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let authorization = credentials.as_ref().map(Credentials::header).transpose()?;
        Ok(Attachment {
            base: url,
            credentials,
            authorization,
        })
    }

    /// The URL of `path` (relative, like `v1/kv/links/abc`) on the upstream.
    pub fn endpoint(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("a relative path joins onto an http base URL")
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The `Authorization` header every request to the upstream carries, if any.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(base: &str) -> String {
        Attachment::parse(base)
            .unwrap()
            .endpoint("v1/kv/links/abc")
            .to_string()
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
        let attachment = Attachment::parse("http://up/p/").unwrap();
        assert_eq!(
            attachment.endpoint("/v1/info").as_str(),
            "http://up/p/v1/info"
        );
    }

    #[test]
    fn userinfo_becomes_credentials_and_leaves_the_url() {
        let attachment = Attachment::parse("http://portbound:s%40cret@up:8081/").unwrap();
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

        let bearer = Attachment::parse("http://t0ken@up/").unwrap();
        assert_eq!(
            bearer.credentials(),
            Some(&Credentials::Bearer("t0ken".into()))
        );
        assert_eq!(bearer.redacted(), "http://***@up/");
    }

    #[test]
    fn credentials_become_an_authorization_header() {
        let basic = Attachment::parse("http://portbound:s3cret@up/").unwrap();
        let header = basic.authorization().unwrap();
        assert_eq!(header, "Basic cG9ydGJvdW5kOnMzY3JldA==");
        assert!(header.is_sensitive());
        let bearer = Attachment::parse("http://t0ken@up/").unwrap();
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
        ] {
            assert!(Attachment::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
