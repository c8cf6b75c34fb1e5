//! A real headless browser for the dashboard's tests: Debian's Chromium driven through
//! ChromeDriver's WebDriver protocol (plain JSON over HTTP, so no client crate). Both are
//! installed with apt-get on first use when missing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `find` and `wait_until` wait for the page.
const PATIENCE: Duration = Duration::from_secs(15);

/// One browser session; the browser and its driver end when it is dropped.
pub struct Browser {
    driver: Child,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Element {
    /// WebDriver's id of the element, to pass it to `execute` as
    /// `{"element-6066-11e4-a52e-4f735466cecf": id}`.
    pub fn id(&self) -> &str {
        &self.0
    }
}

impl Browser {
    /// A headless Chromium with a fresh profile and a laptop-sized window.
    pub async fn start() -> Browser {
        install().unwrap_or_else(|e| panic!("headless Chromium: {e}"));
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER);
        driver.arg(format!("--port={port}")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe, as code between fork and exec must be.
        unsafe {
            driver.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
        let driver = driver.spawn().expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile dir");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_for_driver(&http, &base).await;
        // This machine's network is closed: without the background-networking flags
        // Chromium keeps trying to reach Google's hosts.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Its crash handler would outlive the browser, with no profile dir to find it by.
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let answer = call(&http, reqwest::Method::POST, &format!("{base}/session"), Some(capabilities)).await;
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Browser { driver, session: format!("{base}/session/{id}"), http, _profile: profile }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_until(&format!("an element {css}"), || self.try_find(css)).await
    }

    /// The first element matching `css`, if there is one now.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let found = self.command(reqwest::Method::POST, "/elements", Some(body)).await;
        found.as_array()?.first()?.get(ELEMENT)?.as_str().map(|id| Element(id.to_string()))
    }

    /// Waits until `check` gives something, for at most `PATIENCE`.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            if Instant::now() > deadline {
                let text = self.execute("return document.body.innerText", json!([])).await;
                panic!("waited {PATIENCE:?} for {what}; the page says:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element `css` has exactly `text`. Read in the page in one step: a
    /// live list may replace the element between a find and a read.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> Element {
        let read = "const found = document.querySelector(arguments[0]); return found ? found.innerText.trim() : null";
        self.wait_until(&format!("{css} to say {text:?}"), || async {
            let now = self.execute(read, json!([css])).await;
            (now.as_str() == Some(text)).then_some(())?;
            self.try_find(css).await
        })
        .await
    }

    pub async fn click(&self, element: &Element) {
        self.command(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await;
    }

    /// Empties an input, then types `text` into it.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{}/clear", element.0), Some(json!({}))).await;
        let keys = json!({ "text": text });
        self.command(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(keys)).await;
    }

    pub async fn text(&self, element: &Element) -> String {
        let text = self.command(reqwest::Method::GET, &format!("/element/{}/text", element.0), None).await;
        text.as_str().unwrap_or_default().to_string()
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let path = format!("/element/{}/attribute/{name}", element.0);
        self.command(reqwest::Method::GET, &path, None).await.as_str().map(str::to_string)
    }

    /// Resizes the window (CSS pixels of the whole window).
    pub async fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.command(reqwest::Method::POST, "/window/rect", Some(rect)).await;
    }

    /// Makes the page see the system in dark mode (`prefers-color-scheme: dark`), through
    /// Chromium's DevTools protocol, which ChromeDriver passes on.
    pub async fn prefer_dark(&self) {
        let dark = json!({ "cmd": "Emulation.setEmulatedMedia",
            "params": { "features": [{ "name": "prefers-color-scheme", "value": "dark" }] } });
        self.command(reqwest::Method::POST, "/goog/cdp/execute", Some(dark)).await;
    }

    /// Saves what the window shows as a PNG at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, bytes.expect("a PNG in base64")).expect("screenshot written");
    }
}

impl Browser {
    /// Ends the session, and with it Chromium.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).timeout(Duration::from_secs(10)).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A session that did not end (a test that failed half-way) leaves Chromium's
        // processes behind the driver: each names this browser's own profile dir.
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = Command::new("pkill").args(["-KILL", "-f", "--", &profile]).status();
    }
}

/// Where the dashboard tests leave their screenshots, for a person to look at.
pub fn screenshot_dir() -> PathBuf {
    crate::target_dir().join("screenshots")
}

/// Sends one WebDriver command; its `value`, or a panic with the driver's error.
async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut request = http.request(method, url).timeout(Duration::from_secs(60));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "WebDriver {url}: {status} {answer}");
    answer["value"].clone()
}

async fn wait_for_driver(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/status")).send().await;
        if let Ok(response) = ready
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        assert!(Instant::now() < deadline, "chromedriver is not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Installs Debian's chromium and chromium-driver when missing; concurrent test processes
/// take turns under a lock and the later ones find them in place.
fn install() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    let install = "apt-get install -y --no-install-recommends chromium chromium-driver";
    let script = format!("test -x {CHROMEDRIVER} && test -x {CHROMIUM} || {install} || (apt-get update && {install})");
    let status = Command::new("flock")
        .args(["/tmp/latch-apt.lock", "sh", "-c", &script])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running flock (to install Chromium): {e}"))?;
    match status.success() && Path::new(CHROMEDRIVER).exists() {
        true => Ok(()),
        false => Err(format!("`{install}` failed ({status}; its output is above)")),
    }
}
