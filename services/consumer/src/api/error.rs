//! The consumer's errors and the problem+json each becomes.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use shared::problem::Problem;

use crate::links::{InvalidCode, InvalidTarget};
use crate::upstream::UpstreamError;

/// Everything a request to the consumer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
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
    Upstream(#[from] UpstreamError),
}

impl ApiError {
    /// What the client is told: the error itself for what it can fix, a fixed sentence for
    /// what happened upstream (whose cause goes to the log instead).
    pub fn detail(&self) -> String {
        match self {
            ApiError::Upstream(error) => error.public_detail().to_owned(),
            ApiError::NoFreeCode(_) => "no free code found; try again".to_owned(),
            _ => self.to_string(),
        }
    }

    /// The request member at fault, as a JSON Pointer, when there is one.
    pub fn pointer(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidCode(_) | ApiError::CodeTaken(_) => Some("/code"),
            ApiError::InvalidTarget(_) => Some("/url"),
            _ => None,
        }
    }

    /// Seconds after which the same request is worth trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Upstream(error) => error.retry_after(),
            ApiError::NoFreeCode(_) => Some(1),
            _ => None,
        }
    }

    /// Logs the cause of a server-side failure; client errors are the client's to read.
    pub fn log(&self) {
        if matches!(self, ApiError::Upstream(_) | ApiError::NoFreeCode(_)) {
            log::error!("{self}");
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidCode(_) | ApiError::InvalidTarget(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::CodeTaken(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NoFreeCode(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(error) => error.status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let mut response = Problem::with_detail(self.status_code(), self.detail())
            .at(self.pointer())
            .response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
