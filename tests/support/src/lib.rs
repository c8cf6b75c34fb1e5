//! Starting, killing and talking to a real `latch` process: shared by the end-to-end
//! tests and the benchmark.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub mod api_document;
pub mod browser;
pub mod postgres;
pub use postgres::postgres_database;

pub const ADMIN_KEY: &str = "test-admin-key";

/// The workspace root (this crate is tests/support/).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target dir cargo builds into for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target"))
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// The bytes of a plugin's component. Every plugin in `plugins/` is built once per test
/// process: Rust ones with the same cargo and target dir as the tests themselves, Python
/// ones (`app.py`) with componentize-py.
pub fn plugin(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    // `OnceLock` runs one initialiser at a time: concurrent tests wait for one build.
    let dir = match BUILT.get_or_init(build_plugins) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    };
    let path = component_path(dir, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The headers a sender would put on `body`, signed by an implementation other than ours
/// (see `python/sign.py`). The Python packages it needs are installed on first use.
pub fn python_signature(scheme: &str, secret: &str, body: &str, timestamp: u64, id: &str) -> Vec<(String, String)> {
    let packages = python_packages();
    let request =
        serde_json::json!({ "scheme": scheme, "secret": secret, "body": body, "timestamp": timestamp, "id": id });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sign.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(request.to_string())
        .env("PYTHONPATH", packages)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "sign.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let headers: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).expect("headers as JSON");
    headers.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect()
}

/// The Python packages the tests use, pinned: a second Standard Webhooks implementation,
/// the Python component builder, and zig, whose `zig cc` is the clang (with wasi-libc)
/// that builds C workflows.
const PYTHON_PACKAGES: [&str; 3] = ["standardwebhooks==1.1.0", "componentize-py==0.25.1", "ziglang==0.14.1"];

/// `pip install --target` into the target dir: nothing is installed outside the project.
fn install_python_packages() -> Result<PathBuf, String> {
    let dir = target_dir().join("python-packages");
    let installed = ["standardwebhooks", "bin/componentize-py", "ziglang"];
    if installed.iter().all(|path| dir.join(path).exists()) {
        return Ok(dir);
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
        .arg(&dir)
        .args(PYTHON_PACKAGES)
        .status()
        .map_err(|e| format!("running pip: {e}"))?;
    status.success().then_some(dir).ok_or_else(|| format!("pip could not install {PYTHON_PACKAGES:?}"))
}

fn python_packages() -> &'static Path {
    static PACKAGES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PACKAGES.get_or_init(install_python_packages) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// Builds each Python plugin (a folder in `plugins/` with an `app.py`) with componentize-py
/// and the Python SDK, into `out`.
fn build_python_plugins(out: &Path) -> Result<(), String> {
    let packages = python_packages();
    for dir in plugin_dirs_with("app.py")? {
        let output = component_path(out, &folder_name(&dir));
        let inputs =
            [dir.join("app.py"), workspace().join("sdk/python/latch.py"), workspace().join("wit/workflow.wit")];
        if up_to_date(&output, &inputs) {
            continue;
        }
        let status = Command::new(packages.join("bin/componentize-py"))
            .env("PYTHONPATH", packages)
            .arg("-d")
            .arg(workspace().join("wit"))
            .args(["-w", "workflow", "componentize", "-p"])
            .arg(workspace().join("sdk/python"))
            .arg("-p")
            .arg(&dir)
            .args(["app", "-o"])
            .arg(component_path(out, &folder_name(&dir)))
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running componentize-py: {e}"))?;
        if !status.success() {
            return Err(format!("componentize-py could not build {}", dir.display()));
        }
    }
    Ok(())
}

fn build_plugins() -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    let mut packages = Vec::new();
    for dir in plugin_dirs_with("Cargo.toml")? {
        packages.push("-p".to_string());
        packages.push(folder_name(&dir));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "--target", WASM_TARGET])
        .args(&packages)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err("building the plugins failed (see cargo's output above)".into());
    }
    let out = target_dir().join(WASM_TARGET).join("release");
    build_python_plugins(&out)?;
    build_js_plugins(&out)?;
    build_c_plugins(&out)?;
    Ok(out)
}

/// Builds each JavaScript plugin (a folder in `plugins/` with an `app.js`) with
/// componentize-js, installed by `npm ci` from `sdk/js/package-lock.json`. The engine's
/// `fetch` is left out: runs make HTTP calls through `outbound`, which records them.
fn build_js_plugins(out: &Path) -> Result<(), String> {
    let root = workspace();
    let apps: Vec<String> = plugin_dirs_with("app.js")?.iter().map(|dir| folder_name(dir)).collect();
    if apps.is_empty() {
        return Ok(());
    }
    let sdk = root.join("sdk/js");
    if !installed_from_lockfile(&sdk) {
        let status = Command::new("npm")
            .current_dir(&sdk)
            .args(["ci", "--no-audit", "--no-fund"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running npm: {e}"))?;
        if !status.success() {
            return Err("`npm ci` in sdk/js failed".into());
        }
    }
    let componentize = sdk.join("node_modules/.bin/componentize-js");
    for app in apps {
        let output = component_path(out, &app);
        let inputs = [
            root.join(format!("plugins/{app}/app.js")),
            sdk.join("latch.js"),
            sdk.join("package-lock.json"),
            root.join("wit/workflow.wit"),
        ];
        if up_to_date(&output, &inputs) {
            continue;
        }
        // Module paths resolve from the working directory: the workspace root.
        let status = Command::new(&componentize)
            .current_dir(&root)
            .arg(format!("plugins/{app}/app.js"))
            .args(["--wit", "wit", "-n", "workflow", "-d", "http", "fetch-event", "-o"])
            .arg(component_path(out, &app))
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running componentize-js: {e}"))?;
        if !status.success() {
            return Err(format!("componentize-js could not build plugins/{app}"));
        }
    }
    Ok(())
}

/// Whether `output` was built after every one of `inputs` last changed: the Python and
/// JavaScript builders take seconds a component, and each test process would run them.
fn up_to_date(output: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let Some(built) = modified(output).filter(|_| std::fs::metadata(output).is_ok_and(|meta| meta.len() > 0)) else {
        return false;
    };
    inputs.iter().all(|input| modified(input).is_some_and(|changed| changed < built))
}

/// Builds each C plugin (a folder in `plugins/` with an `app.c`) with `latch-c-build`:
/// wit-bindgen's C bindings, `zig cc` for wasm32-wasi, and wit-component.
fn build_c_plugins(out: &Path) -> Result<(), String> {
    let packages = python_packages();
    let build = latch_c_build::CBuild {
        wit: workspace().join("wit"),
        sdk: workspace().join("sdk/c"),
        work_dir: target_dir().join("c-build"),
    };
    for dir in plugin_dirs_with("app.c")? {
        let mut zig = Command::new("python3");
        zig.args(["-m", "ziglang", "cc"])
            .env("PYTHONPATH", packages)
            .env("ZIG_GLOBAL_CACHE_DIR", target_dir().join("zig-cache"))
            .env("ZIG_LOCAL_CACHE_DIR", target_dir().join("zig-cache"));
        build.build(&dir, &component_path(out, &folder_name(&dir)), zig).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Where plugin `name`'s component is in `dir`: cargo's naming (dashes become underscores),
/// which the Python, JavaScript and C builds follow too.
fn component_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

/// The folders in `plugins/` that hold `file`.
fn plugin_dirs_with(file: &str) -> Result<Vec<PathBuf>, String> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(workspace().join("plugins")).map_err(|e| e.to_string())? {
        let dir = entry.map_err(|e| e.to_string())?.path();
        if dir.join(file).exists() {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

/// Whether `node_modules` was installed from the current lockfile: npm writes its own copy,
/// `node_modules/.package-lock.json`, at every install.
fn installed_from_lockfile(sdk: &Path) -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(sdk.join("package-lock.json")), modified(sdk.join("node_modules/.package-lock.json"))) {
        (Some(lockfile), Some(installed)) => installed >= lockfile,
        _ => false,
    }
}

/// `rust-toolchain.toml` lists the target, but rustup installs it on its own only when it
/// installs the whole toolchain (and not at all with `RUSTUP_AUTO_INSTALL=0`).
fn ensure_wasm_target() -> Result<(), String> {
    let sysroot = Command::new("rustc").current_dir(workspace()).args(["--print", "sysroot"]).output();
    let has_target = sysroot.is_ok_and(|out| {
        Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("lib/rustlib").join(WASM_TARGET).exists()
    });
    if has_target {
        return Ok(());
    }
    let status = Command::new("rustup")
        .current_dir(workspace())
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("the {WASM_TARGET} target is missing and rustup cannot run: {e}"))?;
    status.success().then_some(()).ok_or_else(|| format!("`rustup target add {WASM_TARGET}` failed"))
}

/// An HTTP client for talking to servers under test.
pub fn http_client() -> reqwest::Client {
    // The workspace builds reqwest with TLS but no crypto provider of its own (the engine
    // installs ring's); a client in this process needs one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client")
}

/// A running `latch serve`; killed (SIGKILL) when dropped.
pub struct Latch {
    binary: PathBuf,
    child: Option<Child>,
    pub base: String,
    listen: String,
    data: PathBuf,
    args: Vec<String>,
    spawns: u32,
    pub http: reqwest::Client,
    /// An API key for resuming webhooks whose token the run chose, made on first use.
    resume_key: tokio::sync::OnceCell<String>,
    /// The most file descriptors the process may open, when the test sets one.
    descriptor_limit: Option<u64>,
    /// Whether every answer the server gives is checked against its OpenAPI document.
    answers_checked: bool,
    /// Variables set in the server's environment, besides the admin key and `RUST_LOG`.
    env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Latch {
    /// Starts `binary serve` on a fresh data dir and a free port, with extra arguments.
    pub async fn start(binary: &Path, args: &[&str]) -> Latch {
        let mut latch = Latch::start_unspawned(binary, args);
        latch.spawn().await;
        latch
    }

    /// Starts `binary serve` as `start` does, and checks, when dropped, that every answer it
    /// gave (route, method and status) is one its OpenAPI document lists.
    pub async fn start_checking_answers(binary: &Path, args: &[&str]) -> Latch {
        let mut latch = Latch::start_unspawned(binary, args);
        latch.answers_checked = true;
        latch.spawn().await;
        latch
    }

    /// Starts `binary serve` as `start_checking_answers` does, with `env` in its environment.
    pub async fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Latch {
        let mut latch = Latch::start_unspawned(binary, args);
        latch.answers_checked = true;
        latch.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        latch.spawn().await;
        latch
    }

    /// Starts `binary serve` as `start` does, in a process that may open at most `limit`
    /// file descriptors.
    pub async fn start_with_descriptor_limit(binary: &Path, args: &[&str], limit: u64) -> Latch {
        let mut latch = Latch::start_unspawned(binary, args);
        latch.descriptor_limit = Some(limit);
        latch.spawn().await;
        latch
    }

    fn start_unspawned(binary: &Path, args: &[&str]) -> Latch {
        let tmp = tempfile::tempdir().expect("temp dir");
        Latch {
            binary: binary.to_path_buf(),
            child: None,
            base: String::new(),
            listen: "127.0.0.1:0".into(),
            data: tmp.path().to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            spawns: 0,
            http: http_client(),
            resume_key: tokio::sync::OnceCell::new(),
            descriptor_limit: None,
            answers_checked: false,
            env: Vec::new(),
            _tmp: Some(tmp),
        }
    }

    async fn spawn(&mut self) {
        self.spawns += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut command = match self.descriptor_limit {
            // The shell lowers its limit, then becomes the server (same pid).
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.arg("-c").arg(format!("ulimit -n {limit} && exec \"$@\"")).arg("latch").arg(&self.binary);
                shell
            }
            None => Command::new(&self.binary),
        };
        let mut child = command
            .args(["serve", "--data"])
            .arg(&self.data)
            .args(["--listen", &self.listen])
            .args(&self.args)
            .env("LATCH_ADMIN_KEY", ADMIN_KEY)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                if self.answers_checked { "latch=info,latch::access=debug,warn" } else { "latch=info,warn" },
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("latch starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("latch listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("latch prints its address");
        self.listen = addr.clone();
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server's process has ended by itself (it was not killed).
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_some()))
    }

    /// What the server was started with for `flag`, if it was.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let at = self.args.iter().position(|arg| arg == flag)?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts it again on the same data dir and address.
    pub async fn restart(&mut self) {
        self.kill();
        // Pooled connections went to the killed process.
        self.http = http_client();
        self.spawn().await;
    }

    fn log_path(&self) -> PathBuf {
        self.data.join(format!("latch-{}.log", self.spawns))
    }

    /// What the current process has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(ADMIN_KEY)
    }

    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let request = self.http.put(format!("{}/v1/modules/{name}", self.base)).body(bytes);
        send(self.admin(request)).await
    }

    pub async fn upload_plugin(&self, name: &str) {
        let (status, body) = self.upload(name, plugin(name)).await;
        assert!(status.is_success(), "upload of {name}: {status} {body}");
    }

    /// A new API key with these roles (`POST /v1/keys`).
    pub async fn new_key(&self, name: &str, roles: &[&str]) -> String {
        let request = self.http.post(format!("{}/v1/keys", self.base));
        let (status, body) = send(self.admin(request).json(&serde_json::json!({ "name": name, "roles": roles }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().expect("key").to_string()
    }

    /// Resumes a webhook whose token the run chose, as an API would (`POST
    /// /v1/hooks/{token}` with an API key): a chosen token is no capability on its own.
    pub async fn resume(&self, token: &str, data: &Value) -> (StatusCode, Value) {
        let key = self.resume_key.get_or_init(|| self.new_key("test-resumer", &[])).await;
        send(self.http.post(format!("{}/v1/hooks/{token}", self.base)).bearer_auth(key).json(data)).await
    }

    pub async fn start_run(&self, module: &str, input: Value) -> String {
        let request = self.http.post(format!("{}/v1/modules/{module}/runs", self.base)).json(&input);
        let (status, body) = send(self.admin(request)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("run id").to_string()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.admin(self.http.get(format!("{}{path}", self.base)))).await
    }

    /// Every run (of `status`, if given), newest first, following the listing's pages.
    pub async fn all_runs(&self, status: Option<&str>) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = String::from("/v1/runs?limit=1000");
            if let Some(status) = status {
                path += &format!("&status={status}");
            }
            if let Some(cursor) = &cursor {
                path += &format!("&cursor={cursor}");
            }
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            runs.extend(page["runs"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return runs,
            }
        }
    }

    pub async fn run(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (_, body) = self.get(&format!("/v1/runs/{id}/events")).await;
        body["events"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the run until `ready` accepts it.
    async fn wait_until(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{id}")).await;
            // A node between leaders (several nodes on one database) asks to retry.
            assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE, "{status} {run}");
            if ready(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never reached {what}: {run}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the run until it has `status`.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        self.wait_until(id, status, |run| run["status"] == status).await
    }

    /// The URL of the webhook the run waits on now.
    pub async fn waiting_url(&self, id: &str) -> String {
        let waits_on_a_url = |run: &Value| run["status"] == "waiting" && run["waiting_on"][0]["url"].is_string();
        let run = self.wait_until(id, "waiting on a URL", waits_on_a_url).await;
        run["waiting_on"][0]["url"].as_str().expect("url").to_string()
    }

    /// The URL the run waits on once it has moved past `previous`.
    pub async fn waiting_url_other_than(&self, id: &str, previous: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = self.waiting_url(id).await;
            if url != previous {
                return url;
            }
            assert!(Instant::now() < deadline, "run {id} still waits on {previous}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A URL handed out before a restart, pointed at this process.
    pub fn rebase(&self, url: &str) -> String {
        let path = url.find("/hooks/").map(|i| &url[i..]).expect("hook url");
        format!("{}{path}", self.base)
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.kill();
        if self.answers_checked && !std::thread::panicking() {
            let logs = (1..=self.spawns).map(|n| std::fs::read_to_string(self.data.join(format!("latch-{n}.log"))));
            let undocumented = api_document::undocumented_answers(&self.binary, logs.map(Result::unwrap_or_default));
            assert!(
                undocumented.is_empty(),
                "answers the OpenAPI document does not list:\n{}",
                undocumented.join("\n")
            );
        }
    }
}

/// Sends a request and reads its JSON answer (`null` for an empty or non-JSON body).
pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts the JSON error shape and returns its code.
pub fn error_code(body: &Value) -> &str {
    assert!(body["error"]["message"].is_string(), "not a JSON error: {body}");
    body["error"]["code"].as_str().expect("error code")
}
