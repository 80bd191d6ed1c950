//! The application both services start from: the middleware every request passes through and
//! the fallbacks for what no route matches.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::HeaderValue;
use actix_web::middleware::{Condition, Next, from_fn};
use actix_web::{App, Error, HttpResponse, web};

use crate::metrics::{self, RequestMetrics};
use crate::request_id::{self, RequestId};
use crate::{logging, problem};

/// An app with, from the outside in: the access log (when `RUST_LOG` lets its lines through),
/// request ids, metrics, problem bodies for every error, and the body deadline; extractor errors as problems (bodies up to `body_limit` bytes); `/livez`;
/// `openapi` (the service's rendered OpenAPI document) at `/openapi.json`; and a 404 problem for
/// unknown paths. The service adds its own routes and `/readyz`.
pub fn base(
    metrics: RequestMetrics,
    body_limit: usize,
    openapi: String,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(|cfg| problem::configure_extractors(cfg, body_limit))
        .app_data(web::Data::new(metrics))
        .service(web::resource("/livez").get(crate::health::livez))
        .service(web::resource("/metrics").get(RequestMetrics::render))
        .service(web::resource("/openapi.json").get(move || {
            let document = openapi.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(document)
            }
        }))
        .default_service(web::to(problem::not_found))
        .wrap(from_fn(crate::request_body::deadline))
        .wrap(problem::error_bodies())
        .wrap(from_fn(metrics::middleware))
        .wrap(from_fn(request_ids))
        .wrap(Condition::new(
            logging::access_log_enabled(),
            logging::access_log(),
        ))
}

/// Middleware that assigns the request id, makes it [`request_id::current`] for everything the
/// request runs, and puts it on the response; an error that escaped every handler is rendered
/// as a problem here, inside the scope, so its body can name the request.
async fn request_ids(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let candidate = req
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok());
    let id = RequestId::accept_or_generate(candidate);
    let header = HeaderValue::from_str(id.as_str()).ok();
    let for_error = header.clone();
    // The request itself cannot be kept for rendering the error: routing needs it unshared.
    let served = request_id::scope(id, async move {
        next.call(req).await.map_err(|error| {
            let mut response = problem::render_error(&error);
            if let Some(value) = for_error {
                response.headers_mut().insert(request_id::HEADER, value);
            }
            Error::from(InternalError::from_response(error.to_string(), response))
        })
    })
    .await;
    let mut response = served?;
    if let Some(value) = header {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    Ok(response)
}
