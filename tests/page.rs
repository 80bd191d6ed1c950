//! The page in a real browser: headless Chromium over WebDriver, against the real binaries.
//!
//! Each test starts its own upstream, consumer and browser, and ends by asserting that the
//! browser logged no console error and no Content-Security-Policy violation. Where
//! `chromedriver` is not installed, each test says SKIPPED and passes.
//!
//! The README's screenshot is made here too, on request:
//! `cargo test --test page -- --ignored --exact readme_screenshot`.

// Test code: an unwrap that fails is a failing test, with its message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::browser::fantoccini::Locator;
use testkit::browser::fantoccini::key::Key;
use testkit::browser::{Browser, Options};
use testkit::process::{Service, attach, spawn_consumer, spawn_upstream};

/// How long the page may take to show what the backend is doing: two status checks.
const LIVE: Duration = Duration::from_secs(8);

/// An upstream and a consumer attached to it.
struct Stack {
    upstream: Service,
    consumer: Service,
    dir: tempfile::TempDir,
}

async fn stack(instance: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let upstream = spawn_upstream(dir.path(), instance, &[]).await;
    let consumer = spawn_consumer(&attach(upstream.port), &[("CIRCUIT_COOLDOWN", "1s")]).await;
    Stack {
        upstream,
        consumer,
        dir,
    }
}

impl Stack {
    /// Makes a link through the API, as another client would.
    async fn shorten(&self, url: &str, code: &str) {
        let made = reqwest::Client::new()
            .post(format!("{}/api/links", self.consumer.url))
            .json(&json!({ "url": url, "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), StatusCode::CREATED);
    }
}

/// Asserts that the element `id`, a live region with nothing in it yet, is drawn as nothing: no
/// height, so no empty box or gap under the form.
async fn assert_takes_no_space(browser: &Browser, id: &str) {
    let height = browser
        .eval(&format!(
            "return document.getElementById('{id}').getBoundingClientRect().height;"
        ))
        .await;
    assert_eq!(
        height.as_f64(),
        Some(0.0),
        "#{id} is empty but drawn {height} px high"
    );
}

/// Fills the form and submits it with the keyboard.
async fn submit(browser: &Browser, url: &str, code: &str) {
    let client = &browser.client;
    let field = client.find(Locator::Id("url")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(url).await.unwrap();
    let field = client.find(Locator::Id("code")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(code).await.unwrap();
    field.send_keys(&Key::Enter.to_string()).await.unwrap();
}

/// Waits until the element `id` shows text that `accept` takes, and returns it.
async fn shows(browser: &Browser, id: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let shown = testkit::within(LIVE, async || {
        browser.text(id).await.filter(|text| accept(text))
    })
    .await;
    match shown {
        Some(text) => text,
        None => panic!(
            "not within {LIVE:?}: {what}; #{id} shows {:?}",
            browser.text(id).await
        ),
    }
}

/// Marks the document, so a test can tell that it was not reloaded.
async fn mark(browser: &Browser) {
    browser.eval("window.notReloaded = true;").await;
}

async fn assert_not_reloaded(browser: &Browser) {
    assert_eq!(
        browser.eval("return window.notReloaded === true;").await,
        json!(true)
    );
}

/// Asserts that the browser logged no error but the failed answers with `provoked` statuses
/// that the test asked for.
async fn assert_quiet_console(browser: &Browser, provoked: &[u16]) {
    assert_quiet_console_but_at(browser, provoked, None).await;
}

/// The same, ignoring what happened at another site the test visited (`elsewhere`, an origin).
async fn assert_quiet_console_but_at(browser: &Browser, provoked: &[u16], elsewhere: Option<&str>) {
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|error| !elsewhere.is_some_and(|origin| error.starts_with(origin)))
        .filter(|error| {
            !provoked.iter().any(|status| {
                error.ends_with(&format!(
                    "Failed to load resource: the server responded with a status of {status} ({})",
                    StatusCode::from_u16(*status)
                        .unwrap()
                        .canonical_reason()
                        .unwrap()
                ))
            })
        })
        .collect();
    assert!(errors.is_empty(), "the browser logged: {errors:#?}");
}

#[tokio::test]
async fn the_page_names_its_instance_makes_a_link_that_redirects_and_lists_it() {
    let test = "the_page_names_its_instance_makes_a_link_that_redirects_and_lists_it";
    let Some(browser) = Browser::start(test, Options::default()).await else {
        return;
    };
    let stack = stack("page-a").await;
    let client = &browser.client;
    client.goto(&stack.consumer.url).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "portbound · shorten a link");
    let paint = browser
        .eval("const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;")
        .await;
    eprintln!("first contentful paint: {paint} ms");
    assert_eq!(browser.text("backend-instance").await.unwrap(), "page-a");
    assert_eq!(browser.text("backend-state").await.unwrap(), "reachable");
    for empty in ["result", "url-error", "code-error", "form-error"] {
        assert_takes_no_space(&browser, empty).await;
    }
    mark(&browser).await;

    let target = format!("{}/livez", stack.upstream.url);
    submit(&browser, &target, "").await;
    let short = shows(&browser, "short-link", "the short link is shown", |text| {
        text.starts_with("http")
    })
    .await;
    assert_not_reloaded(&browser).await;
    let code = short.rsplit('/').next().unwrap().to_owned();
    assert_eq!(code.len(), 7, "{short}");
    // The copy button answers (the clipboard, or selecting the link where there is none).
    let copy = client.find(Locator::Css("#result button")).await.unwrap();
    copy.click().await.unwrap();
    shows(
        &browser,
        "result",
        "the copy button says what it did",
        |text| text.contains("Copied") || text.contains("Selected"),
    )
    .await;
    // The link is listed as made in this browser.
    shows(&browser, "mine", "the new link is listed", |text| {
        text.contains(&code) && text.contains(&target)
    })
    .await;

    assert_quiet_console(&browser, &[]).await;

    // Following the short link redirects the browser to the target; what the browser logs
    // there (a favicon the target does not have) is that site's own.
    client
        .goto(&format!("{}/{code}", stack.consumer.url))
        .await
        .unwrap();
    assert_eq!(client.current_url().await.unwrap().as_str(), target);
    client.goto(&stack.consumer.url).await.unwrap();
    shows(
        &browser,
        "mine",
        "the click is counted in the list",
        |text| {
            text.lines()
                .any(|line| line.contains(&code) && line.ends_with('1'))
        },
    )
    .await;
    assert_quiet_console_but_at(&browser, &[], Some(&stack.upstream.url)).await;
    browser.close().await;
}

#[tokio::test]
async fn a_taken_code_is_explained_beside_the_code_field_without_a_reload() {
    let test = "a_taken_code_is_explained_beside_the_code_field_without_a_reload";
    let Some(browser) = Browser::start(test, Options::default()).await else {
        return;
    };
    let stack = stack("page-taken").await;
    stack.shorten("https://example.com/first", "taken").await;
    browser.client.goto(&stack.consumer.url).await.unwrap();
    mark(&browser).await;
    submit(&browser, "https://example.com/second", "taken").await;
    let error = shows(
        &browser,
        "code-error",
        "the code's error is shown",
        |text| !text.is_empty(),
    )
    .await;
    assert!(
        error.starts_with("The code \"taken\" is already taken"),
        "{error}"
    );
    assert_eq!(browser.text("url-error").await.unwrap(), "");
    let invalid = browser
        .eval("return document.getElementById('code').getAttribute('aria-invalid');")
        .await;
    assert_eq!(invalid, json!("true"));

    submit(&browser, "ftp://example.com/", "").await;
    shows(&browser, "url-error", "the url's error is shown", |text| {
        text == "The url must use http or https."
    })
    .await;
    assert_eq!(browser.text("code-error").await.unwrap(), "");
    assert_not_reloaded(&browser).await;
    assert_quiet_console(&browser, &[409, 422]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_status_follows_the_backend_without_a_reload() {
    let test = "the_status_follows_the_backend_without_a_reload";
    let Some(browser) = Browser::start(test, Options::default()).await else {
        return;
    };
    let Stack {
        upstream,
        consumer,
        dir,
    } = stack("page-status").await;
    browser.client.goto(&consumer.url).await.unwrap();
    mark(&browser).await;
    assert_eq!(browser.text("backend-state").await.unwrap(), "reachable");

    upstream.kill9().await;
    shows(
        &browser,
        "backend-state",
        "the page shows the upstream gone",
        |text| text.starts_with("unreachable"),
    )
    .await;
    assert_eq!(browser.text("backend-instance").await.unwrap(), "unknown");

    // Started again on its data: the consumer's address for it stays the same.
    let again = spawn_upstream(dir.path(), "page-status", &[]).await;
    consumer
        .upstream_proxy()
        .retarget(([127, 0, 0, 1], again.port).into());
    shows(
        &browser,
        "backend-state",
        "the page shows it back",
        |text| text == "reachable",
    )
    .await;

    // Swapped for another instance (and the old one gone, with the consumer's connections to
    // it): the page names the new one.
    let other = spawn_upstream(dir.path(), "page-other", &[]).await;
    again.kill9().await;
    consumer
        .upstream_proxy()
        .retarget(([127, 0, 0, 1], other.port).into());
    shows(
        &browser,
        "backend-instance",
        "the page names the new instance",
        |text| text == "page-other",
    )
    .await;
    assert_not_reloaded(&browser).await;
    // The browser's failed status checks while the upstream was gone are answered 200 by the
    // consumer, so nothing is logged.
    assert_quiet_console(&browser, &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn with_javascript_off_the_form_still_makes_a_link_and_explains_errors() {
    let test = "with_javascript_off_the_form_still_makes_a_link_and_explains_errors";
    let options = Options {
        javascript: false,
        ..Options::default()
    };
    let Some(browser) = Browser::start(test, options).await else {
        return;
    };
    let stack = stack("page-nojs").await;
    stack.shorten("https://example.com/first", "taken").await;
    let client = &browser.client;
    client.goto(&stack.consumer.url).await.unwrap();
    // The script did not run: the status says when it was checked, not that it is live.
    assert!(
        browser
            .text("backend-checked")
            .await
            .unwrap()
            .starts_with("As it was")
    );

    submit(&browser, "https://example.com/no-script", "").await;
    let short = shows(
        &browser,
        "short-link",
        "the server shows the short link",
        |text| text.starts_with("http"),
    )
    .await;
    let code = short.rsplit('/').next().unwrap();
    let follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/{code}", stack.consumer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        follow.headers()["location"],
        "https://example.com/no-script"
    );

    submit(&browser, "https://example.com/second", "taken").await;
    shows(
        &browser,
        "code-error",
        "the server explains the taken code",
        |text| text.starts_with("The code \"taken\" is already taken"),
    )
    .await;
    let kept = client.find(Locator::Id("url")).await.unwrap();
    assert_eq!(
        kept.prop("value").await.unwrap().as_deref(),
        Some("https://example.com/second")
    );
    assert_quiet_console(&browser, &[409]).await;
    browser.close().await;
}

#[tokio::test]
async fn a_target_holding_markup_is_shown_inert() {
    let test = "a_target_holding_markup_is_shown_inert";
    let Some(browser) = Browser::start(test, Options::default()).await else {
        return;
    };
    let stack = stack("page-markup").await;
    browser.client.goto(&stack.consumer.url).await.unwrap();
    let target =
        "https://example.com/?q=<script>window.pwned=1</script><img/src=x/onerror=window.pwned=2>";
    submit(&browser, target, "").await;
    shows(&browser, "result", "the link is shown", |text| {
        text.contains("example.com")
    })
    .await;
    shows(&browser, "mine", "the link is listed", |text| {
        text.contains("example.com")
    })
    .await;
    let injected = browser
        .eval("return [window.pwned === undefined, document.querySelectorAll('main script, main img').length];")
        .await;
    assert_eq!(injected, json!([true, 0]));
    assert_quiet_console(&browser, &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_page_is_usable_by_keyboard_at_360_px_and_in_dark_mode() {
    let test = "the_page_is_usable_by_keyboard_at_360_px_and_in_dark_mode";
    let options = Options {
        dark: true,
        width: 360,
        height: 800,
        ..Options::default()
    };
    let Some(browser) = Browser::start(test, options).await else {
        return;
    };
    let stack = stack("page-narrow").await;
    let client = &browser.client;
    client.goto(&stack.consumer.url).await.unwrap();
    let fits = browser
        .eval("return [document.documentElement.scrollWidth, window.innerWidth];")
        .await;
    assert!(
        fits[0].as_u64() <= fits[1].as_u64(),
        "no sideways scrolling: {fits}"
    );
    let background = browser
        .eval("return getComputedStyle(document.body).backgroundColor;")
        .await;
    assert_eq!(background, json!("rgb(13, 17, 23)"), "dark colours");

    // Tab from the URL field reaches the code, then the button, each visibly focused.
    client
        .find(Locator::Id("url"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..2 {
        client
            .active_element()
            .await
            .unwrap()
            .send_keys(&Key::Tab.to_string())
            .await
            .unwrap();
        let focused: Value = browser
            .eval("const e = document.activeElement; return [e.id || e.tagName, getComputedStyle(e).outlineStyle];")
            .await;
        order.push(focused);
    }
    assert_eq!(
        order,
        [json!(["code", "solid"]), json!(["BUTTON", "solid"])]
    );
    // Every input has its label; results are announced.
    let unlabelled = browser
        .eval(
            "return [...document.querySelectorAll('input')].filter(i => !i.labels.length).length;",
        )
        .await;
    assert_eq!(unlabelled, json!(0));
    let live = browser
        .eval("return ['result', 'url-error', 'code-error', 'form-error'].every(id => document.getElementById(id).getAttribute('aria-live') === 'polite');")
        .await;
    assert_eq!(live, json!(true));
    assert_quiet_console(&browser, &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_console_check_catches_a_csp_violation() {
    let test = "the_console_check_catches_a_csp_violation";
    let Some(browser) = Browser::start(test, Options::default()).await else {
        return;
    };
    let stack = stack("page-csp").await;
    browser.client.goto(&stack.consumer.url).await.unwrap();
    // What an injection would try: an inline script. The policy refuses it, and says so.
    browser
        .eval("const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.append(s); return null;")
        .await;
    assert_eq!(
        browser.eval("return window.ran === undefined;").await,
        json!(true)
    );
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("Content Security Policy")),
        "{errors:#?}"
    );
    browser.close().await;
}

/// Writes `docs/page.png`: the page after two links were made, as the README shows it.
#[tokio::test]
#[ignore = "writes docs/page.png; run on purpose to refresh the README's screenshot"]
async fn readme_screenshot() {
    let options = Options {
        height: 1250,
        ..Options::default()
    };
    let Some(browser) = Browser::start("readme_screenshot", options).await else {
        return;
    };
    let stack = stack("upstream-a").await;
    browser.client.goto(&stack.consumer.url).await.unwrap();
    for (url, code) in [
        ("https://12factor.net/port-binding", "port-binding"),
        ("https://12factor.net/backing-services", ""),
    ] {
        submit(&browser, url, code).await;
        shows(&browser, "mine", "the link is listed", |text| {
            text.contains(url)
        })
        .await;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/page.png");
    std::fs::write(path, browser.client.screenshot().await.unwrap()).unwrap();
    eprintln!("wrote {path}");
    browser.close().await;
}
