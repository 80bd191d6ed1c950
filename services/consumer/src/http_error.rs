//! How the shortener's failures are answered over HTTP, for the API and the page alike: the
//! status, what the client is told, the request member at fault, and when to try again.
//!
//! The domain ([`crate::shortener`]) and the adapters ([`crate::backend`]) say what went wrong
//! in their own words; this is the one place that turns those words into statuses. The API
//! answers them as problem+json, the page as a sentence beside the field.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use shared::problem::Problem;

use crate::backend::BackendError;
use crate::shortener::LinkError;

/// The status the consumer answers with when its backend failed.
pub fn backend_status(error: &BackendError) -> StatusCode {
    match error {
        BackendError::Unreachable(_)
        | BackendError::CircuitOpen(_)
        | BackendError::Full
        | BackendError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        BackendError::Failed(_)
        | BackendError::Rejected(_)
        | BackendError::Untrusted(_)
        | BackendError::Malformed(_)
        | BackendError::TooLarge(_) => StatusCode::BAD_GATEWAY,
    }
}

impl LinkError {
    /// What the client is told: the error itself for what it can fix, a fixed sentence for
    /// what happened in the backend (whose cause goes to the log instead).
    pub fn detail(&self) -> String {
        match self {
            LinkError::Backend(error) => error.public_detail(),
            LinkError::NoFreeCode(_) => "no free code found; try again".to_owned(),
            _ => self.to_string(),
        }
    }

    /// The request member at fault, as a JSON Pointer, when there is one.
    pub fn pointer(&self) -> Option<&'static str> {
        match self {
            LinkError::InvalidCode(_) | LinkError::CodeTaken(_) => Some("/code"),
            LinkError::InvalidTarget(_) => Some("/url"),
            _ => None,
        }
    }

    /// Seconds after which the same request is worth trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LinkError::Backend(error) => error.retry_after(),
            LinkError::NoFreeCode(_) => Some(1),
            _ => None,
        }
    }

    /// Logs the cause of a server-side failure; client errors are the client's to read. A
    /// certificate that does not verify was logged once already, where it was found.
    pub fn log(&self) {
        match self {
            LinkError::Backend(BackendError::Untrusted(_)) => {}
            LinkError::Backend(_) | LinkError::NoFreeCode(_) => log::error!("{self}"),
            _ => {}
        }
    }
}

impl ResponseError for LinkError {
    fn status_code(&self) -> StatusCode {
        match self {
            LinkError::InvalidCode(_) | LinkError::InvalidTarget(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            LinkError::CodeTaken(_) => StatusCode::CONFLICT,
            LinkError::NotFound(_) => StatusCode::NOT_FOUND,
            LinkError::NoFreeCode(_) => StatusCode::SERVICE_UNAVAILABLE,
            LinkError::Backend(error) => backend_status(error),
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
