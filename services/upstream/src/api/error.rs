//! The upstream's errors and the problem+json each becomes.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use shared::problem::Problem;

use crate::key::InvalidKey;
use crate::storage::StoreError;

/// Seconds a writer refused for a full queue is asked to wait: about a hundred group commits.
const BUSY_RETRY_AFTER: u64 = 1;

/// Everything a request to the upstream can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("{0}")]
    BadRequest(String),
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unprocessable(String),
    #[error("no value at key {0:?}")]
    NotFound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidKey(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Storage(StoreError::Closed | StoreError::Busy) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Storage(StoreError::Full) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Storage logs a full disk once per burst, not once per refused request; a busy writer
        // is counted in a metric (upstream_storage_busy_total).
        let problem = if let ApiError::Storage(StoreError::Full) = self {
            Problem::with_detail(status, "storage is full")
        } else if let ApiError::Storage(StoreError::Busy) = self {
            let mut response = Problem::with_detail(
                status,
                format_args!(
                    "too many writes are waiting for storage; try again in {BUSY_RETRY_AFTER} s"
                ),
            )
            .response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER));
            return response;
        } else if status.is_server_error() {
            log::error!("{self}");
            Problem::new(status, None)
        } else {
            Problem::with_detail(status, self)
        };
        problem.response()
    }
}
