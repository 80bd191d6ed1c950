//! `X-Request-Id`: one id follows a request through both services and into their logs.
//!
//! A client's id is kept when it is sane (1–128 characters of `A-Za-z0-9._:-`), so a caller can
//! correlate its own logs; anything else is replaced by a fresh UUID. The id is echoed on the
//! response, printed by the access log, and available while the request is handled through
//! [`current`], which is how problem bodies and log lines carry it without every error type
//! having to be handed the request. The middleware that assigns it is in [`crate::app`].

use actix_web::http::header::HeaderName;

use crate::pattern::Pattern;

/// The header carrying the id, in requests and responses.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What a client's id must look like to be kept.
pub static PATTERN: Pattern = Pattern::new("^[A-Za-z0-9._:-]{1,128}$");

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Keeps `candidate` if it is a sane id, or makes a new one.
    pub fn accept_or_generate(candidate: Option<&str>) -> Self {
        match candidate {
            Some(id) if is_sane(id) => RequestId(id.to_owned()),
            _ => RequestId(uuid::Uuid::new_v4().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_sane(id: &str) -> bool {
    PATTERN.is_match(id)
}

/// The id of the request this task is handling, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `id` as the [`current`] request id.
pub async fn scope<F: Future>(id: RequestId, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_id_is_kept() {
        let id = RequestId::accept_or_generate(Some("client-42.a:b_c"));
        assert_eq!(id.as_str(), "client-42.a:b_c");
    }

    #[test]
    fn an_unsafe_or_oversized_id_is_replaced() {
        for bad in ["", "has space", "semi;colon", "new\nline", &"x".repeat(129)] {
            let id = RequestId::accept_or_generate(Some(bad));
            assert_ne!(id.as_str(), bad);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
        }
    }

    #[test]
    fn a_missing_id_is_generated() {
        let a = RequestId::accept_or_generate(None);
        let b = RequestId::accept_or_generate(None);
        assert_ne!(a, b);
    }
}
