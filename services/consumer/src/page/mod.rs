//! The page at `/`: what a person sees at the consumer's port.
//!
//! Rendered here from `page.html`, an askama template checked at compile time that escapes
//! every value as HTML, so it works with JavaScript off; `page.js` then enhances it: links
//! made without a reload, a copy button, the backend's status kept live, the links made in
//! this browser (kept in its `localStorage`, never on the server). Everything the page loads
//! is embedded in the binary ([`assets`]); no other origin is ever asked for anything.
//!
//! - `GET /`: the form, the attached backend as `/api/status` reports it, and a place for the
//!   links made here.
//! - `POST /`: the form, `application/x-www-form-urlencoded`. The link is made exactly as
//!   `POST /api/links` makes it, and the answer is the page again with the API's status: 201
//!   with the short link, or 409, 422, 503 … with the error as a sentence beside its field.
//!   A post from another site is refused with a 403 problem.
//! - `GET /assets/{name}`: the stylesheet, the script and the icon.
//!
//! Every answer here carries [`SECURITY_HEADERS`]; the API and the redirect path do not pay for
//! them.

mod assets;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use askama::Template;
use serde::Deserialize;
use shared::problem::Problem;
use url::Url;

use crate::State;
use crate::backend::{BackendStatus, STATUS_WAIT};
use crate::shortener::{Link, LinkError};
pub use assets::ASSETS;

/// The page's headers: nothing runs or loads but from this origin, no inline script or style,
/// no framing, forms post only here, no type sniffing, no `Referer` sent anywhere.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// Registers `/` and `/assets/{name}`; both first segments are reserved words, never codes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .app_data(web::FormConfig::default().limit(crate::BODY_LIMIT))
            .get(show)
            .post(submit),
    )
    .service(web::resource("/assets/{name}").get(assets::serve));
}

/// The form as the browser posts it; a field left out is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Form {
    url: String,
    code: String,
}

/// The page, as the template sees it.
#[derive(Template)]
#[template(path = "page.html")]
struct Page<'a> {
    css: &'a str,
    js: &'a str,
    icon: &'a str,
    backend: &'a BackendStatus,
    form: &'a Form,
    created: Option<&'a Link>,
    url_error: Option<&'a str>,
    code_error: Option<&'a str>,
    form_error: Option<&'a str>,
}

/// What went wrong with a submitted form, said for a person, and where to say it.
struct Answer {
    status: StatusCode,
    sentence: String,
    pointer: Option<&'static str>,
    retry_after: Option<u64>,
}

impl From<LinkError> for Answer {
    fn from(error: LinkError) -> Self {
        error.log();
        let retry_after = error.retry_after();
        Answer {
            status: error.status_code(),
            sentence: sentence(&error.detail(), retry_after),
            pointer: error.pointer(),
            retry_after,
        }
    }
}

/// A problem's detail as a sentence: capitalised, ended, and saying when to try again. The
/// page's script says the same for the API's problems.
pub fn sentence(detail: &str, retry_after: Option<u64>) -> String {
    let detail = if detail.is_empty() {
        "something went wrong"
    } else {
        detail
    };
    let mut chars = detail.chars();
    let mut text: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    if let Some(seconds) = retry_after {
        text.push_str(&format!(" Try again in {seconds} s."));
    }
    text
}

/// `GET /`.
async fn show(state: web::Data<State>) -> HttpResponse {
    let backend = state.shortener.backend.report(Some(STATUS_WAIT)).await;
    render(StatusCode::OK, &backend, &Form::default(), Ok(None))
}

/// `POST /`: the form without JavaScript.
async fn submit(
    request: HttpRequest,
    state: web::Data<State>,
    form: web::Form<Form>,
) -> HttpResponse {
    if !same_origin(&request, &state.shortener.public_url) {
        return Problem::with_detail(
            StatusCode::FORBIDDEN,
            "a form posted from another site is refused; use the page at this address",
        )
        .response();
    }
    let form = form.into_inner();
    let code = Some(form.code.trim()).filter(|code| !code.is_empty());
    let made = state
        .shortener
        .create(form.url.trim(), code)
        .await
        .map_err(Answer::from);
    let backend = state.shortener.backend.report(Some(STATUS_WAIT)).await;
    match made {
        Ok(link) => render(StatusCode::CREATED, &backend, &form, Ok(Some(&link))),
        Err(answer) => render(answer.status, &backend, &form, Err(&answer)),
    }
}

fn render(
    status: StatusCode,
    backend: &BackendStatus,
    form: &Form,
    outcome: Result<Option<&Link>, &Answer>,
) -> HttpResponse {
    let error_at = |pointer: Option<&str>| match outcome {
        Err(answer) if answer.pointer == pointer => Some(answer.sentence.as_str()),
        _ => None,
    };
    let page = Page {
        css: &ASSETS.css.path,
        js: &ASSETS.js.path,
        icon: &ASSETS.icon.path,
        backend,
        // After a success the form is ready for the next link.
        form: if matches!(outcome, Ok(Some(_))) {
            &Form::default()
        } else {
            form
        },
        created: outcome.ok().flatten(),
        url_error: error_at(Some("/url")),
        code_error: error_at(Some("/code")),
        form_error: error_at(None),
    };
    let mut response = HttpResponse::build(status);
    secure(&mut response);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Err(Answer {
        retry_after: Some(seconds),
        ..
    }) = outcome
    {
        response.insert_header((header::RETRY_AFTER, HeaderValue::from(*seconds)));
    }
    match page.render() {
        Ok(html) => response.content_type("text/html; charset=utf-8").body(html),
        Err(error) => {
            log::error!("the page did not render: {error}");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, None).response()
        }
    }
}

/// Adds [`SECURITY_HEADERS`].
fn secure(response: &mut HttpResponseBuilder) {
    for header in SECURITY_HEADERS {
        response.insert_header(header);
    }
}

/// False for a form post that another site made a browser send (cross-site request forgery).
///
/// Browsers say where a post comes from in `Sec-Fetch-Site`; where that is missing, `Origin`
/// must be this shortener's own (its `PUBLIC_URL`, or the host the request was sent to).
/// `Referrer-Policy: no-referrer` makes browsers send `Origin: null` for the page's own posts,
/// so a post with neither header readable as ours is refused, and one with neither header at
/// all (not a browser: curl, a script) is let through.
fn same_origin(request: &HttpRequest, public_url: &Url) -> bool {
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    match (text("sec-fetch-site"), text(header::ORIGIN.as_str())) {
        (Some(site), _) => site == "same-origin" || site == "none",
        (None, Some(origin)) => {
            let info = request.connection_info();
            origin == public_url.origin().ascii_serialization()
                || origin == format!("{}://{}", info.scheme(), info.host())
        }
        (None, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::sentence;

    #[test]
    fn a_detail_becomes_a_sentence_that_says_when_to_try_again() {
        assert_eq!(
            sentence("the backend is unreachable", Some(1)),
            "The backend is unreachable. Try again in 1 s."
        );
        assert_eq!(
            sentence("the url is empty: enter it", None),
            "The url is empty: enter it."
        );
        assert_eq!(sentence("done!", None), "Done!");
        assert_eq!(sentence("", None), "Something went wrong.");
    }
}
