//! What guards `/v1`: `ACCESS_TOKEN`, a shared secret, and with `TLS_CLIENT_CA_FILE` a client
//! certificate (mutual TLS); either, both (then both are required) or neither.
//!
//! The certificate is verified during the handshake ([`shared::tls`]); here a request is only
//! asked whether its connection carried one.
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
use shared::tls::ClientCertificate;
use subtle::ConstantTimeEq;

use crate::settings::AccessToken;

/// What `/v1` asks for: the digest of the expected token (`None`: no token), and whether a
/// client certificate is required.
#[derive(Clone)]
pub struct Guard {
    token: Option<[u8; 32]>,
    client_certificate: bool,
}

impl Guard {
    pub fn new(token: Option<&AccessToken>, client_certificate: bool) -> Self {
        Guard {
            token: token.map(|token| digest(token.expose())),
            client_certificate,
        }
    }

    /// Whether the `Authorization` header value satisfies this guard's token.
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.token else {
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

/// Middleware for the `/v1` scope: 401 problem unless the request carries what the guard asks
/// for.
pub async fn require_credentials(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let refusal = req.app_data::<web::Data<Guard>>().and_then(|guard| {
        if guard.client_certificate && req.conn_data::<ClientCertificate>().is_none() {
            Some(
                "a client certificate is required: connect with one signed by a CA this \
                 service trusts (mutual TLS)",
            )
        } else if !guard.admits(req.headers().get(header::AUTHORIZATION)) {
            Some(
                "missing or wrong access token: send it as a Bearer token or as the Basic password",
            )
        } else {
            None
        }
    });
    let Some(detail) = refusal else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let mut response = Problem::with_detail(StatusCode::UNAUTHORIZED, detail).response();
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
        Guard::new(Some(&AccessToken::parse("s3cret").unwrap()), false)
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
        assert!(Guard::new(None, false).admits(None));
    }
}
