//! A real browser for the page's tests: Debian's `chromium`, headless, driven over WebDriver by
//! its `chromedriver`.
//!
//! Each [`Browser`] is its own `chromedriver` on an ephemeral port with its own profile
//! directory, in a process group of its own that is killed (Chromium included) when it is
//! dropped, so a failing test leaves no browser behind. Where `chromedriver` is not installed,
//! [`Browser::start`] says that the test is SKIPPED and returns `None`.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long `chromedriver` may take to say which port it bound.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);

/// How the browser is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub javascript: bool,
    /// `prefers-color-scheme: dark`.
    pub dark: bool,
    pub width: u32,
    pub height: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            javascript: true,
            dark: false,
            width: 1024,
            height: 900,
        }
    }
}

pub use fantoccini;

/// A headless Chromium under WebDriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser for `test`, or `None` (having said SKIPPED) where `chromedriver` is missing.
    pub async fn start(test: &str, options: Options) -> Option<Browser> {
        let Some(driver_path) = crate::installed("chromedriver") else {
            crate::missing(
                test,
                "chromedriver is not installed (Debian: apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let mut driver = Command::new(driver_path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let port = bound_port(&mut driver).await;

        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", options.width, options.height),
        ];
        if options.dark {
            args.push("--blink-settings=preferredColorScheme=0".to_owned());
        }
        let mut chrome = json!({ "args": args });
        if !options.javascript {
            chrome["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver opens a Chromium session");
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// The browser's console messages at level SEVERE since the last call: script errors,
    /// failed loads and Content-Security-Policy violations. An answer the test provoked on
    /// purpose (a 409 for a taken code) is one of them too: Chromium logs every 4xx and 5xx
    /// answer as "Failed to load resource: … status of 409".
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver returns the browser log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The value of `script`'s `return`.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// The text of the element with `id` as the browser renders it, if there is one.
    pub async fn text(&self, id: &str) -> Option<String> {
        self.eval(&format!(
            "const e = document.getElementById({}); return e ? e.innerText : null;",
            json!(id)
        ))
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Ends the session, which closes Chromium, then stops the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group, Chromium's processes included.
        if let Some(pid) = self.driver.id() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Reads chromedriver's "started successfully on port N" line.
async fn bound_port(driver: &mut Child) -> u16 {
    let stdout = driver.stdout.take().unwrap();
    let read = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = line
                .split("on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').parse().ok())
                .filter(|_| line.contains("started successfully"))
            {
                // Keep reading, so the driver never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Some(port);
            }
        }
        None
    };
    tokio::time::timeout(DRIVER_STARTUP, read)
        .await
        .ok()
        .flatten()
        .expect("chromedriver says which port it bound")
}

/// Chromium's console log, which chromedriver serves outside the W3C protocol.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
