//! A request's body must arrive within [`REQUEST_BODY_TIMEOUT`] of its head.
//!
//! The server's own request timeout covers the head alone ([`crate::server::REQUEST_HEAD_TIMEOUT`]);
//! a client could then send a body a byte at a time and hold its request open for as long as it
//! likes. [`deadline`] wraps the body of every request that has one in a stream that fails once
//! the time is up, and answers such a request `408` with a problem body, closing the connection
//! (the rest of the body is never read). Requests without a body, the redirects among them,
//! pass untouched and pay nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ConnectionType;
use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::Stream;

use crate::problem::Problem;

/// How long a client may take to send a request's body, counted from when its head has
/// arrived: ample for the largest body either service takes (64 KiB) on a slow link.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware: the body deadline on every request that has a body.
pub async fn deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !has_body(req.headers()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let expired = Arc::new(AtomicBool::new(false));
    let body = Timed {
        body: req.take_payload(),
        timer: Box::pin(tokio::time::sleep(REQUEST_BODY_TIMEOUT)),
        expired: expired.clone(),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(body),
    });
    let response = next.call(req).await?;
    if !expired.load(Ordering::Relaxed) {
        return Ok(response.map_into_left_body());
    }
    // Whatever the handler made of a body cut short, the answer is that it came too slowly.
    let (req, _) = response.into_parts();
    let mut timeout = Problem::with_detail(
        StatusCode::REQUEST_TIMEOUT,
        format_args!(
            "the request body did not arrive within {} s",
            REQUEST_BODY_TIMEOUT.as_secs()
        ),
    )
    .response();
    timeout
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    Ok(ServiceResponse::new(req, timeout).map_into_right_body())
}

/// Whether the request says a body follows.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// A request body that fails once its deadline has passed.
struct Timed {
    body: Payload,
    timer: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl Stream for Timed {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(chunk) = Pin::new(&mut this.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive in time",
        )))))
    }
}
