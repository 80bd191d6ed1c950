//! Creating links, following them, and reading them back with their clicks.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use shared::json::Object;

use super::State;
use crate::links::{Code, target_schema};
use crate::shortener::{Link, LinkError};

/// A request to shorten `url`, optionally under a chosen `code`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    #[schema(schema_with = target_schema)]
    pub url: String,
    /// A custom code; random when absent or null.
    #[schema(value_type = Option<Code>)]
    pub code: Option<String>,
}

/// How an operation that calls the backend fails: the same for every such operation. Only the
/// document uses it; [`ApiError`] builds the responses.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes responses for the OpenAPI document only"
)]
pub enum BackendFailures {
    /// The backend answered 5xx, refused the credentials in UPSTREAM_URL, or answered outside
    /// its contract
    #[response(status = 502)]
    Failed,
    /// The backend is unreachable, its circuit is open, or it is busy or full
    #[response(status = 503, headers(
        ("Retry-After" = u64, description = "Seconds until calling the backend is worth trying again")))]
    Unavailable,
    /// The backend did not answer within UPSTREAM_TIMEOUT
    #[response(status = 504)]
    Timeout,
}

#[utoipa::path(post, path = "/api/links", tag = "links", operation_id = "createLink",
    request_body = NewLink,
    responses(
        (status = 201, description = "Created", body = Link, headers(
            ("Location" = String, description = "The link's API resource, `/api/links/{code}`"))),
        (status = 400, description = "The body is not JSON"),
        (status = 409, description = "The custom code is taken"),
        (status = 413, description = "The body is larger than {BODY_LIMIT_KIB} KiB"),
        (status = 415, description = "The body is not declared as application/json"),
        (status = 422, description = "An invalid url or code, or a field that is not url or code"),
        BackendFailures))]
pub async fn create(
    state: web::Data<State>,
    body: web::Json<Object<NewLink>>,
) -> Result<HttpResponse, LinkError> {
    let NewLink { url, code } = body.into_inner().into_inner();
    let link = state.shortener.create(&url, code.as_deref()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/links/{}", link.code)))
        .json(link))
}

#[utoipa::path(get, path = "/{code}", tag = "links", operation_id = "followLink",
    params(("code" = Code, Path)),
    responses(
        (status = 302, description = "A redirect to the target", headers(
            ("Location" = String, description = "The target"),
            ("Cache-Control" = String, description = "`no-store`: every click reaches the shortener"))),
        (status = 404, description = "No link has this code"),
        BackendFailures))]
pub async fn follow(
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, LinkError> {
    let target = state.shortener.follow(&path).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, target))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[utoipa::path(get, path = "/api/links/{code}", tag = "links", operation_id = "showLink",
    params(("code" = Code, Path)),
    responses(
        (status = 200, description = "The link and its clicks (including ones not yet sent to the backend)", body = Link),
        (status = 404, description = "No link has this code"),
        BackendFailures))]
pub async fn show(
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, LinkError> {
    Ok(HttpResponse::Ok().json(state.shortener.show(&path).await?))
}
