//! The page's stylesheet, script and icon: compiled into the binary, served under names that
//! carry a hash of their content, so a browser may keep each for a year and a new build is
//! fetched under its new name.

use std::sync::LazyLock;

use actix_web::http::header::{self, EntityTag, Header, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};
use shared::problem::Problem;

/// One embedded file and the name it is served under.
pub struct Asset {
    /// `/assets/page.0123456789abcdef.css`: what the page links to.
    pub path: String,
    tag: EntityTag,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            path: format!("/assets/{stem}.{hash}.{extension}"),
            tag: EntityTag::new_strong(hash),
            content_type,
            body,
        }
    }
}

/// Everything the page loads.
pub struct Assets {
    pub css: Asset,
    pub js: Asset,
    pub icon: Asset,
}

pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    css: Asset::new(
        "page",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("page.css"),
    ),
    js: Asset::new(
        "page",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("page.js"),
    ),
    icon: Asset::new("icon", "svg", "image/svg+xml", include_bytes!("icon.svg")),
});

impl Assets {
    fn all(&self) -> [&Asset; 3] {
        [&self.css, &self.js, &self.icon]
    }
}

/// `GET /assets/{name}`: an asset under its current name, immutable for a year; 304 when the
/// browser's copy is this one; 404 for any other name, an earlier build's included.
pub async fn serve(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let path = format!("/assets/{name}");
    let Some(asset) = ASSETS.all().into_iter().find(|asset| asset.path == path) else {
        return Problem::with_detail(
            actix_web::http::StatusCode::NOT_FOUND,
            format_args!("no asset at {path}"),
        )
        .response();
    };
    let unchanged = match IfNoneMatch::parse(&request) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(&asset.tag)),
        Err(_) => false,
    };
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(header::ETag(asset.tag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"));
    super::secure(&mut response);
    if unchanged {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.body)
    }
}
