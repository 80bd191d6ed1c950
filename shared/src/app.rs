//! The application both services start from: the middleware every request passes through and
//! the fallbacks for what no route matches.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, Error, HttpResponse, web};

use crate::metrics::{self, RequestMetrics};
use crate::{logging, problem, request_id};

/// An app with, from the outside in: the access log (when `RUST_LOG` lets its lines through),
/// request ids, metrics and problem bodies
/// for every error; extractor errors as problems (bodies up to `body_limit` bytes); `/livez`;
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
        .wrap(problem::error_bodies())
        .wrap(from_fn(metrics::middleware))
        .wrap(from_fn(request_id::middleware))
        .wrap(Condition::new(
            logging::access_log_enabled(),
            logging::access_log(),
        ))
}
