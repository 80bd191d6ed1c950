//! The shortener's operations: make a link, follow one, show one with its clicks, say which
//! backend is attached. The API and the page both call these; neither knows the other.
//!
//! Failures are [`LinkError`]s, in the domain's words. Only the HTTP layer
//! ([`crate::http_error`]) decides which status each one is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::backend::{Backend, BackendError, Created};
use crate::clicks::Clicks;
use crate::links::{Code, InvalidCode, InvalidTarget, LinkDocument, validate_target};

/// Random codes tried before giving up (each collision is a ~1 in 10^12 event).
pub const RANDOM_TRIES: usize = 5;

/// Why a link could not be made, followed or shown.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    InvalidCode(#[from] InvalidCode),
    #[error(transparent)]
    InvalidTarget(#[from] InvalidTarget),
    #[error("the code {0:?} is already taken; choose another, or leave it empty for a random one")]
    CodeTaken(String),
    #[error("no link with code {0:?}")]
    NotFound(String),
    #[error("no free code found after {0} tries")]
    NoFreeCode(usize),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A short link as it is handed out.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    pub code: String,
    pub url: String,
    /// `PUBLIC_URL` + code: the link to hand out.
    pub short_url: String,
    pub created_at: String,
    /// Clicks so far (with `GET /api/links/{code}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clicks: Option<i64>,
}

/// The link shortener: its backend, its click counter and the base of the links it hands out.
pub struct Shortener {
    pub backend: Arc<Backend>,
    pub clicks: Arc<Clicks>,
    pub public_url: Url,
}

impl Shortener {
    /// Makes a link to `url`, under `code` when one is chosen. A chosen code that is taken is
    /// [`LinkError::CodeTaken`]; a random code never overwrites a link: each is created only if
    /// absent, and a collision draws another.
    pub async fn create(&self, url: &str, code: Option<&str>) -> Result<Link, LinkError> {
        let target = validate_target(url, &self.public_url)?;
        let document = LinkDocument::new(&target);
        let code = match code {
            Some(code) => {
                let code = Code::parse(code)?;
                match self.backend.create_link(&code, &document).await? {
                    Created::Yes => code,
                    Created::Taken => return Err(LinkError::CodeTaken(code.to_string())),
                }
            }
            None => self.create_with_random_code(&document).await?,
        };
        Ok(self.link(&code, document, None))
    }

    async fn create_with_random_code(&self, document: &LinkDocument) -> Result<Code, LinkError> {
        for _ in 0..RANDOM_TRIES {
            let code = Code::random();
            if self.backend.create_link(&code, document).await? == Created::Yes {
                return Ok(code);
            }
        }
        Err(LinkError::NoFreeCode(RANDOM_TRIES))
    }

    /// The target of the link under `path`, its click counted without waiting for the backend.
    pub async fn follow(&self, path: &str) -> Result<String, LinkError> {
        let (code, document) = self.find(path).await?;
        self.clicks.record(&code);
        Ok(document.url)
    }

    /// The link under `path` with its clicks, those not yet sent to the backend included.
    pub async fn show(&self, path: &str) -> Result<Link, LinkError> {
        let (code, document) = self.find(path).await?;
        let counted = self.backend.clicks(&code).await?;
        let clicks = counted.saturating_add(self.clicks.pending_for(&code) as i64);
        Ok(self.link(&code, document, Some(clicks)))
    }

    /// The link under `path`; a path that cannot be a code is as unknown as a missing one.
    async fn find(&self, path: &str) -> Result<(Code, LinkDocument), LinkError> {
        let code = Code::parse(path).map_err(|_| LinkError::NotFound(path.to_owned()))?;
        match self.backend.link(&code).await? {
            Some(document) => Ok((code, document)),
            None => Err(LinkError::NotFound(code.to_string())),
        }
    }

    fn link(&self, code: &Code, document: LinkDocument, clicks: Option<i64>) -> Link {
        Link {
            code: code.to_string(),
            short_url: self.public_url.join(code.as_str()).map_or_else(
                |_| format!("{}{code}", self.public_url),
                |url| url.to_string(),
            ),
            url: document.url,
            created_at: document.created_at,
            clicks,
        }
    }
}
