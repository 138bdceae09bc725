//! A headless Chromium driven over WebDriver, for the dashboard's end-to-end tests.
//!
//! `Browser::start()` runs Debian's `chromedriver` on a free port, opens a
//! session with `/usr/bin/chromium` (headless, its own temporary profile,
//! background networking off so it never reaches for the internet) and asks
//! for the browser console log. The handful of WebDriver calls the tests need
//! are plain JSON over HTTP, so no WebDriver crate is pulled in. Dropping the
//! browser ends the session and kills the driver's process group (with
//! `pkill -g`, see `Drop`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    /// `/session/<id>` once the session exists, empty before.
    session: String,
    http: reqwest::Client,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    ///
    /// # Panics
    /// When Chromium or chromedriver is missing or does not start: the tests
    /// must fail with a way to fix it, never skip.
    pub async fn start(width: u32, height: u32) -> Browser {
        let install = "install them: `apt-get install -y chromium chromium-driver` (Debian/Ubuntu)";
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing; {install}");
        let port = crate::free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}); {install}"))
        };
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{root}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready within 20 s on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("temp dir for the Chromium profile");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--disable-breakpad".to_owned(),
            "--disable-crash-reporter".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-default-apps".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--mute-audio".to_owned(),
            "--disable-features=MediaRouter,DialMediaRouteProvider,OptimizationHints,Translate".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser { driver, session: String::new(), http, port, _profile: profile };
        let session = browser.call(reqwest::Method::POST, &format!("{root}/session"), Some(caps)).await;
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session id in {session}"));
        browser.session = format!("/session/{id}");
        browser
    }

    async fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = res.status();
        let v: Value = res.json().await.unwrap_or_else(|e| panic!("WebDriver {method} {url}: not JSON ({e})"));
        assert!(status.is_success(), "WebDriver {method} {url} answered {status}: {}", v["value"]);
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, &format!("http://127.0.0.1:{}{}{path}", self.port, self.session), Some(body))
            .await
    }

    /// Opens `url` and waits for the document to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Resizes the window (CSS pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height})).await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Polls `script` until it returns something other than `null`/`false`, and returns that.
    ///
    /// # Panics
    /// After `limit`, naming `what`.
    pub async fn wait_for(&self, what: &str, limit: Duration, script: &str, args: Value) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(script, args.clone()).await;
            if !(v.is_null() || v == false) {
                return v;
            }
            assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching the CSS `selector`.
    pub async fn click(&self, selector: &str) {
        let found = self.post("/element", json!({"using": "css selector", "value": selector})).await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element for `{selector}`"))
            .to_owned();
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self
            .call(reqwest::Method::GET, &format!("http://127.0.0.1:{}{}/screenshot", self.port, self.session), None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot is base64 text"))
            .expect("screenshot decodes");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Browser console entries at level SEVERE (console.error, uncaught
    /// exceptions, failed loads, CSP violations) since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.post("/se/log", json!({"type": "browser"})).await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Ends the session without an async runtime: a blocking DELETE over a plain socket.
    fn end_session(&self) {
        let path = &self.session;
        if path.is_empty() {
            return;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req =
                format!("DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(req.as_bytes());
            let _ = s.read(&mut [0u8; 512]);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end_session();
        // Whatever the session left behind in the driver's process group.
        // Never `kill -KILL -<pgid>`: procps-ng 4.0.2's kill can read a
        // negative pid as `-1`, which signals every process we may signal.
        let _ = Command::new("pkill").arg("-KILL").arg("-g").arg(self.driver.id().to_string()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
