//! RFC 9457 problem details: the one shape of every error body both services send.
//!
//! Three mechanisms make "never a text/plain error" hold:
//! - services' own errors become a [`Problem`] (their error enums build one);
//! - extractor failures go through the handlers of [`json_config`], [`path_config`] and
//!   [`query_config`], which pick the right status (400, 413, 415, 422) and say what was wrong;
//! - anything else that produces an error status without a problem body — actix's 404 and 405
//!   fallbacks, payload limits, a failed blocking task — is rewritten by [`error_bodies`].
//!
//! 4xx bodies say what the client can fix. 5xx bodies say nothing internal: the cause goes to
//! the log at `error` with the request id, which is also in the body so the two can be matched.

use std::fmt;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{InternalError, JsonPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};

use crate::request_id;

/// The media type of problem bodies.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem: `type` is always `about:blank`, so `title` is the status's reason
/// phrase and `detail` says what happened to this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The `X-Request-Id` of the request, to find it in both services' logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The member of the request body this problem concerns, as a JSON Pointer (`/url`), so a
    /// form can show it beside its field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl Problem {
    /// A problem for `status`, tagged with the current request id.
    pub fn new(status: StatusCode, detail: impl Into<Option<String>>) -> Self {
        Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: request_id::current().map(|id| id.as_str().to_owned()),
            pointer: None,
        }
    }

    /// The same problem, about the request body's member at `pointer`.
    pub fn at(self, pointer: Option<&str>) -> Self {
        Problem {
            pointer: pointer.map(str::to_owned),
            ..self
        }
    }

    /// A problem with a detail message.
    pub fn with_detail(status: StatusCode, detail: impl fmt::Display) -> Self {
        Problem::new(status, Some(detail.to_string()))
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The response carrying this problem.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(CONTENT_TYPE)
            .json(self)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        match &self.detail {
            Some(detail) => write!(f, ": {detail}"),
            None => Ok(()),
        }
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

fn rejection(
    error: impl fmt::Debug + fmt::Display + 'static,
    problem: Problem,
) -> actix_web::Error {
    let response = problem.response();
    InternalError::from_response(error, response).into()
}

/// JSON bodies: 413 over `limit` bytes, 415 without `application/json`, 400 for malformed
/// JSON and 422 for JSON of the wrong shape.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| {
            let problem = match &error {
                JsonPayloadError::OverflowKnownLength { limit, .. }
                | JsonPayloadError::Overflow { limit } => Problem::with_detail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format_args!("the body is larger than {limit} bytes"),
                ),
                JsonPayloadError::ContentType => Problem::with_detail(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected a body with Content-Type: application/json",
                ),
                JsonPayloadError::Deserialize(cause) if cause.is_data() => Problem::with_detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format_args!("the body does not have the expected fields: {cause}"),
                ),
                JsonPayloadError::Deserialize(cause) => Problem::with_detail(
                    StatusCode::BAD_REQUEST,
                    format_args!("the body is not valid JSON: {cause}"),
                ),
                other => Problem::with_detail(StatusCode::BAD_REQUEST, other),
            };
            rejection(error, problem)
        })
}

/// Path parameters that do not parse: 400 naming the cause.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _req| {
        let problem = Problem::with_detail(StatusCode::BAD_REQUEST, &error);
        rejection(error, problem)
    })
}

/// Query strings that do not parse: 400 naming the cause.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req| {
        let problem = Problem::with_detail(
            StatusCode::BAD_REQUEST,
            format_args!("invalid query string: {error}"),
        );
        rejection(error, problem)
    })
}

/// Raw bodies (`web::Bytes`): at most `limit` bytes; the 413 is rendered by [`error_bodies`].
pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}

/// Registers the extractor configurations above on an app or scope.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(json_config(body_limit))
        .app_data(payload_config(body_limit))
        .app_data(path_config())
        .app_data(query_config());
}

/// The fallback for requests no route matches: 404 problem.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::with_detail(
        StatusCode::NOT_FOUND,
        format_args!("no resource at {}", req.path()),
    )
    .response()
}

/// Middleware that rewrites every error response without a problem body into one, keeping its
/// status and headers (`Allow`, `Retry-After`, `WWW-Authenticate`, …).
pub fn error_bodies<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(render_as_problem)
}

/// The response for an error that escaped every handler: its own when that is a problem body,
/// otherwise a problem with its status (and, for 4xx, its message).
pub fn render_error(error: &actix_web::Error) -> HttpResponse {
    let response = error.error_response();
    if is_problem(&response) {
        return response;
    }
    let status = response.status();
    let detail = if status.is_server_error() {
        log_server_error(status, &error.to_string());
        None
    } else {
        Some(error.to_string())
    };
    Problem::new(status, detail).response()
}

fn is_problem<B>(response: &HttpResponse<B>) -> bool {
    has_content_type(response, CONTENT_TYPE)
}

fn has_content_type<B>(response: &HttpResponse<B>, media_type: &str) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(media_type.as_bytes()))
}

fn log_server_error(status: StatusCode, cause: &str) {
    log::error!("{status}: {cause}");
}

fn render_as_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // A page answering an error with the page itself (the sentence beside the field) meant it.
    if is_problem(res.response()) || has_content_type(res.response(), "text/html") {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }

    let status = res.status();
    let cause = res.response().error().map(ToString::to_string);
    let request = res.request();
    let detail = if status.is_server_error() {
        let cause = cause.as_deref().unwrap_or("no cause given");
        log_server_error(
            status,
            &format!("{} {}: {cause}", request.method(), request.path()),
        );
        None
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        Some(format!(
            "{} is not allowed on {}",
            request.method(),
            request.path()
        ))
    } else if status == StatusCode::NOT_FOUND && cause.is_none() {
        Some(format!("no resource at {}", request.path()))
    } else {
        cause
    };

    let (req, old) = res.into_parts();
    let mut new = Problem::new(status, detail).response();
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    new.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    let res: ServiceResponse<EitherBody<B, BoxBody>> =
        ServiceResponse::new(req, new).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_follows_rfc_9457() {
        let problem = Problem::with_detail(StatusCode::CONFLICT, "taken");
        let body = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank", "title": "Conflict", "status": 409, "detail": "taken"
            })
        );
    }
}
