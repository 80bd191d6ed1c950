//! The consumer's errors and the problem+json each becomes.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
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
    #[error("code {0:?} is already taken")]
    CodeTaken(String),
    #[error("no link with code {0:?}")]
    NotFound(String),
    #[error("no free code found after {0} tries")]
    NoFreeCode(usize),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
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
        let status = self.status_code();
        let problem = match self {
            ApiError::Upstream(error) => {
                log::error!("{error}");
                Problem::with_detail(status, error.public_detail())
            }
            ApiError::NoFreeCode(_) => {
                log::error!("{self}");
                Problem::with_detail(status, "no free code found; try again")
            }
            _ => Problem::with_detail(status, self),
        };
        let mut response = problem.response();
        let retry_after = match self {
            ApiError::Upstream(error) => error.retry_after(),
            ApiError::NoFreeCode(_) => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                RETRY_AFTER,
                seconds
                    .to_string()
                    .parse()
                    .expect("digits are a header value"),
            );
        }
        response
    }
}
