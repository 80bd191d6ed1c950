//! Creating links, following them, and reading them back with their clicks.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use shared::json::Object;

use super::{ApiError, State};
use crate::links::{Code, LinkDocument, target_schema, validate_target};
use crate::upstream::Created;

/// Random codes tried before giving up (each collision is a ~1 in 10^12 event).
const RANDOM_TRIES: usize = 5;

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

/// How an operation that calls the upstream fails: the same for every such operation. Only the
/// document uses it; [`ApiError`] builds the responses.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes responses for the OpenAPI document only"
)]
pub enum UpstreamFailures {
    /// The upstream answered 5xx, refused the credentials in UPSTREAM_URL, or answered outside
    /// its contract
    #[response(status = 502)]
    Failed,
    /// The upstream is unreachable, its circuit is open, or it is busy or full
    #[response(status = 503, headers(
        ("Retry-After" = u64, description = "Seconds until calling the upstream is worth trying again")))]
    Unavailable,
    /// The upstream did not answer within UPSTREAM_TIMEOUT
    #[response(status = 504)]
    Timeout,
}

/// A short link.
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

impl State {
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

#[utoipa::path(post, path = "/api/links", tag = "links", operation_id = "createLink",
    request_body = NewLink,
    responses(
        (status = 201, description = "Created", body = Link, headers(
            ("Location" = String, description = "The link's API resource, `/api/links/{code}`"))),
        (status = 400, description = "The body is not JSON"),
        (status = 409, description = "The custom code is taken"),
        (status = 413, description = "The body is larger than 32 KiB"),
        (status = 415, description = "The body is not declared as application/json"),
        (status = 422, description = "An invalid url or code, or a field that is not url or code"),
        UpstreamFailures))]
pub async fn create(
    state: web::Data<State>,
    body: web::Json<Object<NewLink>>,
) -> Result<HttpResponse, ApiError> {
    let NewLink { url, code } = body.into_inner().into_inner();
    let link = shorten(&state, &url, code.as_deref()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/links/{}", link.code)))
        .json(link))
}

/// Makes a link to `url`, under `code` when one is chosen: what the API and the page's form
/// both do.
pub async fn shorten(state: &State, url: &str, code: Option<&str>) -> Result<Link, ApiError> {
    let target = validate_target(url, &state.public_url)?;
    let document = LinkDocument::new(&target);
    let code = match code {
        Some(code) => {
            let code = Code::parse(code)?;
            match state.upstream.create_link(&code, &document).await? {
                Created::Yes => code,
                Created::Taken => return Err(ApiError::CodeTaken(code.to_string())),
            }
        }
        None => create_with_random_code(state, &document).await?,
    };
    Ok(state.link(&code, document, None))
}

/// A random code never overwrites a link: each is created only if absent, and a collision
/// draws another.
async fn create_with_random_code(state: &State, document: &LinkDocument) -> Result<Code, ApiError> {
    for _ in 0..RANDOM_TRIES {
        let code = Code::random();
        if state.upstream.create_link(&code, document).await? == Created::Yes {
            return Ok(code);
        }
    }
    Err(ApiError::NoFreeCode(RANDOM_TRIES))
}

/// The link under `path`; a path that cannot be a code is as unknown as a missing one.
async fn find(state: &State, path: &str) -> Result<(Code, LinkDocument), ApiError> {
    let code = Code::parse(path).map_err(|_| ApiError::NotFound(path.to_owned()))?;
    match state.upstream.link(&code).await? {
        Some(document) => Ok((code, document)),
        None => Err(ApiError::NotFound(code.to_string())),
    }
}

#[utoipa::path(get, path = "/{code}", tag = "links", operation_id = "followLink",
    params(("code" = Code, Path)),
    responses(
        (status = 302, description = "A redirect to the target", headers(
            ("Location" = String, description = "The target"),
            ("Cache-Control" = String, description = "`no-store`: every click reaches the shortener"))),
        (status = 404, description = "No link has this code"),
        UpstreamFailures))]
pub async fn follow(
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (code, document) = find(&state, &path).await?;
    state.clicks.record(&code);
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, document.url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[utoipa::path(get, path = "/api/links/{code}", tag = "links", operation_id = "showLink",
    params(("code" = Code, Path)),
    responses(
        (status = 200, description = "The link and its clicks (including ones not yet sent upstream)", body = Link),
        (status = 404, description = "No link has this code"),
        UpstreamFailures))]
pub async fn show(
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (code, document) = find(&state, &path).await?;
    let counted = state.upstream.clicks(&code).await?;
    let clicks = counted.saturating_add(state.clicks.pending_for(&code) as i64);
    Ok(HttpResponse::Ok().json(state.link(&code, document, Some(clicks))))
}
