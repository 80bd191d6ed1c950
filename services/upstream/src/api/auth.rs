//! `ACCESS_TOKEN`: the shared secret that guards `/v1`.
//!
//! A client presents it as a Bearer token or as the password of Basic credentials (which is
//! what an `http://user:TOKEN@host/` URL turns into). Both sides are hashed with SHA-256 and the
//! digests compared in constant time, so neither the token's content nor its length leaks
//! through timing.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use shared::problem::Problem;
use subtle::ConstantTimeEq;

use crate::settings::AccessToken;

/// The digest of the expected token; `None` leaves `/v1` open.
#[derive(Clone)]
pub struct Guard(Option<[u8; 32]>);

impl Guard {
    pub fn new(token: Option<&AccessToken>) -> Self {
        Guard(token.map(|token| digest(token.expose())))
    }

    /// Whether the `Authorization` header value satisfies this guard.
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        authorization
            .and_then(|value| value.to_str().ok())
            .and_then(presented_token)
            .is_some_and(|token| bool::from(digest(&token).ct_eq(expected)))
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The token in a `Bearer` or `Basic` authorization value.
fn presented_token(value: &str) -> Option<String> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(credentials).ok()?).ok()?;
        decoded
            .split_once(':')
            .map(|(_user, password)| password.to_owned())
    } else {
        None
    }
}

/// Middleware for the `/v1` scope: 401 problem unless the request carries the token.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let admitted = req
        .app_data::<web::Data<Guard>>()
        .is_none_or(|guard| guard.admits(req.headers().get(header::AUTHORIZATION)));
    if admitted {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let mut response = Problem::with_detail(
        StatusCode::UNAUTHORIZED,
        "missing or wrong access token: send it as a Bearer token or as the Basic password",
    )
    .response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="portbound", Basic realm="portbound""#),
    );
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(Some(&AccessToken::parse("s3cret").unwrap()))
    }

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn bearer_and_basic_password_are_accepted() {
        assert!(guard().admits(Some(&header("Bearer s3cret"))));
        let basic = STANDARD.encode("anyone:s3cret");
        assert!(guard().admits(Some(&header(&format!("Basic {basic}")))));
    }

    #[test]
    fn wrong_missing_or_malformed_credentials_are_refused() {
        assert!(!guard().admits(None));
        assert!(!guard().admits(Some(&header("Bearer s3cre"))));
        assert!(!guard().admits(Some(&header("Bearer s3cret2"))));
        assert!(!guard().admits(Some(&header("s3cret"))));
        assert!(!guard().admits(Some(&header("Basic !!!"))));
        let no_password = STANDARD.encode("s3cret");
        assert!(!guard().admits(Some(&header(&format!("Basic {no_password}")))));
    }

    #[test]
    fn no_token_means_open() {
        assert!(Guard::new(None).admits(None));
    }
}
