//! The page at `/` over plain HTTP: what it is made of, its headers, and the form without
//! JavaScript. What a person sees in a browser is tested in `tests/page.rs` at the root.

use reqwest::{Response, StatusCode};
use serde_json::json;

use testkit::{assert_problem, inprocess, misbehaving};

/// The page's own headers, as the issue for the page sets them.
fn assert_secure(response: &Response) {
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
}

/// The paths of what the page loads, in the order it names them.
fn assets(html: &str) -> Vec<String> {
    let pattern = regex::Regex::new(r#"(?:href|src)="(/assets/[^"]+)""#).unwrap();
    pattern
        .captures_iter(html)
        .map(|found| found[1].to_owned())
        .collect()
}

async fn post_form(consumer: &inprocess::Consumer, form: &[(&str, &str)]) -> Response {
    consumer
        .client
        .post(consumer.url("/"))
        .header("sec-fetch-site", "same-origin")
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The text of the element with `id`, assuming it holds text only.
fn text_of(html: &str, id: &str) -> String {
    let start = html.find(&format!(r#"id="{id}""#)).unwrap();
    let open = start + html[start..].find('>').unwrap() + 1;
    let close = open + html[open..].find('<').unwrap();
    html[open..close].to_owned()
}

#[tokio::test]
async fn the_page_is_html_from_the_binary_alone_under_30_kb_with_its_headers() {
    let upstream = inprocess::upstream_with(|s| s.instance_name = "upstream-a".to_owned()).await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let page = consumer.client.get(consumer.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_secure(&page);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
    assert_eq!(text_of(&html, "backend-instance"), "upstream-a");
    assert_eq!(text_of(&html, "backend-state"), "reachable");
    // Nothing is loaded from another origin.
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(value.starts_with('/'), "{attribute}{}", &value[..40]);
        }
    }
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains("<script>"));

    let paths = assets(&html);
    assert_eq!(paths.len(), 3, "icon, stylesheet, script: {paths:?}");
    let mut weight = html.len();
    for path in &paths {
        let asset = consumer
            .client
            .get(consumer.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_secure(&asset);
        assert_eq!(
            asset.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let tag = asset.headers()["etag"].to_str().unwrap().to_owned();
        assert!(
            path.contains(tag.trim_matches('"')),
            "{path} named by {tag}"
        );
        weight += asset.bytes().await.unwrap().len();

        let again = consumer
            .client
            .get(consumer.url(path))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    eprintln!("the page weighs {weight} bytes with its assets");
    assert!(weight < 30 * 1024, "{weight} bytes");

    let stale = consumer
        .client
        .get(consumer.url("/assets/page.0000000000000000.css"))
        .send()
        .await
        .unwrap();
    assert_problem(stale, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_form_without_javascript_makes_a_link_and_shows_it() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let made = post_form(
        &consumer,
        &[("url", "https://example.com/from-the-form"), ("code", "")],
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    assert_secure(&made);
    let html = made.text().await.unwrap();
    let short = text_of(&html, "short-link");
    let code = short.rsplit('/').next().unwrap();
    assert_eq!(code.len(), 7, "a random code: {short}");
    let follow = consumer.follow(code).await;
    assert_eq!(follow.status(), StatusCode::FOUND);
    assert_eq!(
        follow.headers()["location"],
        "https://example.com/from-the-form"
    );
    // The redirect path carries none of the page's headers: it pays nothing for the page.
    assert!(!follow.headers().contains_key("content-security-policy"));

    let chosen = post_form(
        &consumer,
        &[
            ("url", "https://example.com/chosen"),
            ("code", "  chosen  "),
        ],
    )
    .await;
    assert_eq!(chosen.status(), StatusCode::CREATED);
    assert!(text_of(&chosen.text().await.unwrap(), "short-link").ends_with("/chosen"));
}

#[tokio::test]
async fn form_errors_are_sentences_beside_their_field_with_the_apis_status() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let taken = consumer
        .shorten(json!({"url": "https://example.com/", "code": "taken"}))
        .await;
    assert_eq!(taken.status(), StatusCode::CREATED);

    let cases = [
        (
            "https://example.com/",
            "taken",
            StatusCode::CONFLICT,
            "code-error",
            "The code \"taken\" is already taken",
        ),
        (
            "ftp://example.com/",
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
            "url-error",
            "The url must use http or https.",
        ),
        (
            "",
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
            "url-error",
            "The url is empty",
        ),
        (
            "https://example.com/",
            "api",
            StatusCode::UNPROCESSABLE_ENTITY,
            "code-error",
            "The code \"api\" is reserved",
        ),
    ];
    for (url, code, status, field, sentence) in cases {
        let answer = post_form(&consumer, &[("url", url), ("code", code)]).await;
        assert_eq!(answer.status(), status, "{url} {code}");
        assert_secure(&answer);
        let html = answer.text().await.unwrap();
        // Askama escapes the quotes; the browser shows them as quotes.
        let shown = text_of(&html, field).replace("&#34;", "\"");
        assert!(shown.starts_with(sentence), "{url} {code}: {shown}");
        let other = if field == "url-error" {
            "code-error"
        } else {
            "url-error"
        };
        assert_eq!(text_of(&html, other), "", "{url} {code}");
        // What was typed stays in the form, to be corrected.
        assert!(html.contains(&format!(r#"value="{url}""#)), "{url}");
        assert!(html.contains(&format!(r#"value="{code}""#)), "{code}");
    }

    // The API says the same, and names the field.
    let api = consumer
        .shorten(json!({"url": "https://example.com/", "code": "taken"}))
        .await;
    let problem = assert_problem(api, StatusCode::CONFLICT).await;
    assert_eq!(problem["pointer"], "/code");
}

#[tokio::test]
async fn a_target_holding_markup_is_shown_as_text() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    let target = r#"https://example.com/?q="><script>alert(1)</script>"#;
    let made = post_form(&consumer, &[("url", target), ("code", "")]).await;
    // The url crate percent-encodes what a URL cannot hold; a refused one is echoed back.
    let html = made.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    let refused = post_form(&consumer, &[("url", "<b>bold</b>"), ("code", "<i>")]).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(!html.contains("<b>bold") && !html.contains("<i>"), "{html}");
    assert!(html.contains("&#60;b&#62;bold&#60;/b&#62;"), "{html}");
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let upstream = inprocess::upstream().await;
    let consumer = inprocess::consumer(&upstream.attach_url()).await;
    async fn post(consumer: &inprocess::Consumer, headers: &[(&str, &str)]) -> Response {
        let mut request = consumer
            .client
            .post(consumer.url("/"))
            .form(&[("url", "https://example.com/")]);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
    for refused in [
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ][..],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
    ] {
        assert_problem(post(&consumer, refused).await, StatusCode::FORBIDDEN).await;
    }
    let port = consumer.url.rsplit(':').next().unwrap();
    let own_origin = format!("http://127.0.0.1:{port}");
    for allowed in [
        &[("sec-fetch-site", "same-origin"), ("origin", "null")][..],
        &[("origin", own_origin.as_str())],
        // PUBLIC_URL's origin: the page served behind a proxy under its public name.
        &[("origin", "http://localhost:8080")],
        // Not a browser at all.
        &[],
    ] {
        let answer = post(&consumer, allowed).await;
        assert_eq!(answer.status(), StatusCode::CREATED, "{allowed:?}");
    }
}

#[tokio::test]
async fn with_the_backend_away_the_page_says_so_and_the_form_says_when_to_retry() {
    let (port, _held) = misbehaving::refusing_port();
    let consumer = inprocess::consumer(&format!("http://127.0.0.1:{port}/")).await;
    let page = consumer.client.get(consumer.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        text_of(&html, "backend-state").starts_with("unreachable: "),
        "{html}"
    );
    assert_eq!(text_of(&html, "backend-instance"), "unknown");

    let answer = post_form(&consumer, &[("url", "https://example.com/")]).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = answer.headers()["retry-after"].to_str().unwrap().to_owned();
    let html = answer.text().await.unwrap();
    let sentence = text_of(&html, "form-error");
    assert!(
        sentence.ends_with(&format!("Try again in {retry} s.")),
        "{sentence}"
    );
}
