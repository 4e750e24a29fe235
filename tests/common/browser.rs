//! A real headless Chromium for the integration tests, driven through
//! chromedriver with the W3C WebDriver HTTP protocol (blocking reqwest).
//!
//! `Browser::start()` finds (or, as root with apt-get, installs) the Debian
//! packages `chromium` and `chromium-driver`, starts chromedriver on a free
//! loopback port in its own process group, and opens a headless session with
//! a throw-away profile. Dropping the `Browser` deletes the session, kills
//! chromedriver and every process it started, and removes the profile.
//!
//! Every request goes to 127.0.0.1 (system proxies are ignored) and every
//! wait is bounded. Errors are one-line `String`s.
//!
//! Environment:
//!   EMORL_REQUIRE_BROWSER=1   `start_or_skip` panics instead of skipping
//!   EMORL_CHROMIUM=path       browser binary to use instead of the default
//!   EMORL_CHROMEDRIVER=path   chromedriver to use instead of the default
//!   EMORL_BROWSER_DEBUG=1     print the processes killed on drop
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key under which W3C WebDriver returns and accepts element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (page loads, scripts included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver may take to answer `/status` after it starts.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `apt-get install` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// An element reference returned by `find`/`find_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementId(pub String);

impl ElementId {
    /// The JSON form WebDriver expects, e.g. as an `execute` argument.
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

impl From<&ElementId> for Value {
    fn from(e: &ElementId) -> Value {
        e.to_json()
    }
}

/// A headless Chromium session; see the module docs.
pub struct Browser {
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:PORT`
    base: String,
    session: String,
    driver: Child,
    profile: tempfile::TempDir,
    /// The chromium binary the session runs.
    pub chromium: PathBuf,
    /// `Chromium 148.0.7778.167` or similar, as the session reports it.
    pub version: String,
}

/// Starts a browser, or prints why not and returns `None` so that the
/// caller can skip; panics instead when `EMORL_REQUIRE_BROWSER=1`.
pub fn start_or_skip() -> Option<Browser> {
    match Browser::start() {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var("EMORL_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("EMORL_REQUIRE_BROWSER=1 but no browser: {e}");
            }
            eprintln!("skipping browser test: {e}");
            None
        }
    }
}

/// The chromium and chromedriver binaries, installing the Debian packages
/// when they are missing and this process is root with apt-get available.
pub fn find_or_install() -> Result<(PathBuf, PathBuf), String> {
    // One installation at a time within this test binary.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = find_binaries() {
        return Ok(found);
    }
    let missing = "chromium/chromedriver not found (Debian packages chromium, chromium-driver)";
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("{missing}; not root, so not installing them"));
    }
    let apt = ["/usr/bin/apt-get", "/bin/apt-get"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{missing}; apt-get is not available to install them"))?;
    let install = || {
        run_bounded(
            Command::new(&apt).args([
                "install",
                "-y",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=300",
                "chromium",
                "chromium-driver",
            ]),
            INSTALL_TIMEOUT,
        )
    };
    eprintln!("browser: installing chromium and chromium-driver with apt-get");
    if let Err(first) = install() {
        eprintln!("browser: apt-get install failed ({first}); running apt-get update");
        run_bounded(
            Command::new(&apt).args(["update", "-q", "-o", "DPkg::Lock::Timeout=300"]),
            INSTALL_TIMEOUT,
        )
        .map_err(|e| format!("{missing}; apt-get update failed: {e}"))?;
        install().map_err(|e| format!("{missing}; apt-get install failed: {e}"))?;
    }
    find_binaries().ok_or_else(|| format!("{missing} even after apt-get install"))
}

fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, candidates: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(var) {
            let p = PathBuf::from(p);
            return is_executable(&p).then_some(p);
        }
        candidates
            .iter()
            .map(PathBuf::from)
            .find(|p| is_executable(p))
    };
    // The real binary rather than Debian's /usr/bin/chromium shell wrapper,
    // which sources /etc/chromium.d and adds flags of its own.
    let chromium = pick(
        "EMORL_CHROMIUM",
        &[
            "/usr/lib/chromium/chromium",
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
        ],
    )?;
    let driver = pick(
        "EMORL_CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    )?;
    Some((chromium, driver))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs a command with a deadline; Err carries its last line of output.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| format!("temp file: {e}"))?;
    let out = log.reopen().map_err(|e| format!("temp file: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("temp file: {e}"))?;
    let mut child = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = log.reopen().and_then(|mut f| f.read_to_string(&mut text));
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(format!("{status}: {last}"))
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The last non-empty line of a file, for error messages.
fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.chars().take(300).collect()
}

/// Makes any text one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Browser {
    /// Finds or installs the binaries and opens a headless session.
    pub fn start() -> Result<Browser, String> {
        let (chromium, driver) = find_or_install()?;
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(COMMAND_TIMEOUT + Duration::from_secs(10))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let profile = tempfile::Builder::new()
            .prefix("emorl-browser-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        // The port is free when picked but could be taken before chromedriver
        // binds it; try a few.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            match start_driver(&http, &driver, port, profile.path()) {
                Ok(child) => {
                    let mut b = Browser {
                        http,
                        base: format!("http://127.0.0.1:{port}"),
                        session: String::new(),
                        driver: child,
                        profile,
                        chromium: chromium.clone(),
                        version: String::new(),
                    };
                    // On error `b` drops here, which kills chromedriver.
                    b.new_session()?;
                    return Ok(b);
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn new_session(&mut self) -> Result<(), String> {
        let data_dir = self.profile.path().join("profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", data_dir.display()),
            // Keep the browser from talking to anything but the test server.
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-default-apps".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-crash-reporter".into(),
            "--disable-breakpad".into(),
            "--metrics-recording-only".into(),
            "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication".into(),
            "--password-store=basic".into(),
            "--use-mock-keychain".into(),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "script": 30_000,
                        "pageLoad": COMMAND_TIMEOUT.as_millis() as u64 - 5_000,
                        "implicit": 0
                    },
                    "goog:chromeOptions": {
                        "binary": self.chromium.to_string_lossy(),
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" }
                }
            }
        });
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .map_err(|e| {
                let log = last_line(&self.profile.path().join("chromedriver.log"));
                format!(
                    "cannot start a chromium session with {}: {e} (chromedriver log: {log})",
                    self.chromium.display()
                )
            })?;
        self.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("new session: no sessionId in {}", one_line(&v.to_string())))?
            .to_string();
        let caps = &v["capabilities"];
        self.version = format!(
            "{} {}",
            caps["browserName"].as_str().unwrap_or("chrome"),
            caps["browserVersion"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    /// One WebDriver command; returns the response's `value`.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .map_err(|e| format!("{method} {path}: {}", one_line(&e.to_string())))?;
        let status = resp.status();
        let text = resp
            .text()
            .map_err(|e| format!("{method} {path}: reading the reply: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{method} {path}: HTTP {status}, not JSON ({e}): {}",
                one_line(&text.chars().take(200).collect::<String>())
            )
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() || value.get("error").is_some_and(|e| e.is_string()) {
            let kind = value["error"].as_str().unwrap_or("error");
            let msg = value["message"].as_str().unwrap_or("");
            // chromedriver appends a multi-line "(Session info: ...)" tail.
            let first = msg.lines().next().unwrap_or("").trim();
            return Err(format!("{method} {path}: {kind}: {}", one_line(first)));
        }
        Ok(value)
    }

    fn s(&self, tail: &str) -> String {
        format!("/session/{}{}", self.session, tail)
    }

    /// Loads `url` and waits for the load event (bounded by the page-load timeout).
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.s("/url"),
            Some(json!({ "url": url })),
        )?;
        Ok(())
    }

    /// The current page's URL.
    pub fn current_url(&self) -> Result<String, String> {
        let v = self.call(reqwest::Method::GET, &self.s("/url"), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// The first element matching a CSS selector; Err if there is none.
    pub fn find(&self, css: &str) -> Result<ElementId, String> {
        let v = self.call(
            reqwest::Method::POST,
            &self.s("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        element_of(&v).ok_or_else(|| format!("find {css}: no element reference in the reply"))
    }

    /// All elements matching a CSS selector, in document order (maybe none).
    pub fn find_all(&self, css: &str) -> Result<Vec<ElementId>, String> {
        let v = self.call(
            reqwest::Method::POST,
            &self.s("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(element_of).collect())
            .unwrap_or_default())
    }

    /// The first element matching `css` inside `parent`.
    pub fn find_in(&self, parent: &ElementId, css: &str) -> Result<ElementId, String> {
        let v = self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{}/element", parent.0)),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        element_of(&v).ok_or_else(|| format!("find {css}: no element reference in the reply"))
    }

    /// All elements matching `css` inside `parent`.
    pub fn find_all_in(&self, parent: &ElementId, css: &str) -> Result<Vec<ElementId>, String> {
        let v = self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{}/elements", parent.0)),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(element_of).collect())
            .unwrap_or_default())
    }

    /// The rendered (visible) text of an element.
    pub fn text(&self, el: &ElementId) -> Result<String, String> {
        let v = self.call(
            reqwest::Method::GET,
            &self.s(&format!("/element/{}/text", el.0)),
            None,
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// An element's attribute, `None` when absent.
    pub fn attribute(&self, el: &ElementId, name: &str) -> Result<Option<String>, String> {
        let v = self.call(
            reqwest::Method::GET,
            &self.s(&format!("/element/{}/attribute/{name}", el.0)),
            None,
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// A DOM property of an element (`value`, `disabled`, ...).
    pub fn property(&self, el: &ElementId, name: &str) -> Result<Value, String> {
        self.call(
            reqwest::Method::GET,
            &self.s(&format!("/element/{}/property/{name}", el.0)),
            None,
        )
    }

    /// Whether a form control is enabled.
    pub fn is_enabled(&self, el: &ElementId) -> Result<bool, String> {
        let v = self.call(
            reqwest::Method::GET,
            &self.s(&format!("/element/{}/enabled", el.0)),
            None,
        )?;
        Ok(v.as_bool().unwrap_or(false))
    }

    /// Types into an element. WebDriver key codes work too, e.g. "\u{E007}" is Enter.
    pub fn send_keys(&self, el: &ElementId, text: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{}/value", el.0)),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// Empties an input or textarea.
    pub fn clear(&self, el: &ElementId) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{}/clear", el.0)),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Clicks an element (WebDriver scrolls it into view; Err if something covers it).
    pub fn click(&self, el: &ElementId) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{}/click", el.0)),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Runs `js` as a function body (`arguments[i]` are `args`) and returns its result.
    /// Pass elements as `ElementId::to_json()`.
    pub fn execute(&self, js: &str, args: Vec<Value>) -> Result<Value, String> {
        self.call(
            reqwest::Method::POST,
            &self.s("/execute/sync"),
            Some(json!({ "script": js, "args": args })),
        )
    }

    /// Polls `cond` every 50 ms until it returns Ok(true); Err after `timeout`
    /// (with the last error `cond` gave, if any). Errors from `cond` count as "not yet".
    pub fn wait_until<F>(&self, timeout: Duration, mut cond: F) -> Result<(), String>
    where
        F: FnMut() -> Result<bool, String>,
    {
        let deadline = Instant::now() + timeout;
        let mut last_err = None;
        loop {
            match cond() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
            if Instant::now() >= deadline {
                return Err(match last_err {
                    Some(e) => format!(
                        "timed out after {:.1}s; last error: {e}",
                        timeout.as_secs_f64()
                    ),
                    None => format!("timed out after {:.1}s", timeout.as_secs_f64()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the browser window (the viewport is somewhat smaller).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.s("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, String> {
        let v = self.call(reqwest::Method::GET, &self.s("/screenshot"), None)?;
        let b64 = v.as_str().ok_or("screenshot: the reply is not a string")?;
        let png = base64_decode(b64)?;
        if !png.starts_with(b"\x89PNG") {
            return Err("screenshot: the data is not a PNG".into());
        }
        Ok(png)
    }

    /// Browser console messages at level SEVERE since the last call
    /// (uncaught exceptions, console.error, failed loads); chromedriver-specific.
    pub fn console_errors(&self) -> Result<Vec<String>, String> {
        let v = self.call(
            reqwest::Method::POST,
            &self.s("/se/log"),
            Some(json!({ "type": "browser" })),
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"].as_str() == Some("SEVERE"))
                    .map(|e| one_line(e["message"].as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The profile/temp directory of this browser (removed on drop).
    pub fn temp_dir(&self) -> &Path {
        self.profile.path()
    }

    /// The pid of chromedriver (its process group holds chromium too).
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }
}

fn element_of(v: &Value) -> Option<ElementId> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|s| ElementId(s.to_string()))
}

/// Starts chromedriver in a new process group and waits for `/status` ready.
fn start_driver(
    http: &reqwest::blocking::Client,
    driver: &Path,
    port: u16,
    dir: &Path,
) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let log = dir.join("chromedriver.log");
    let mut child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .arg("--log-level=WARNING")
        // Chromium (and its crashpad handler) write under $HOME/.config and
        // $HOME/.cache: keep that in the temp dir too.
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", driver.display()))?;
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "chromedriver exited at start ({status}): {}",
                last_line(&log)
            ));
        }
        let ready = http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"].as_bool() == Some(true));
        if ready {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill_tree(&mut child, dir, &[]);
            return Err(format!(
                "chromedriver on 127.0.0.1:{port} not ready after {}s: {}",
                DRIVER_READY_TIMEOUT.as_secs(),
                last_line(&log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (pid, parent pid, process group, command line mentions `marker`) of every
/// process, from /proc; with `zombies` false, those that have exited but not
/// been reaped are left out.
fn processes(zombies: bool, marker: Option<&str>) -> Vec<(i32, i32, i32, bool)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && (zombies || f[0] != "Z") {
            if let (Ok(ppid), Ok(pgrp)) = (f[1].parse(), f[2].parse()) {
                let marked = marker.is_some_and(|m| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(m))
                });
                out.push((pid, ppid, pgrp, marked));
            }
        }
    }
    out
}

/// Kills chromedriver, its process group, all its descendants and every
/// process whose command line mentions `dir` (chromium's crashpad handler
/// double-forks out of the tree, but its database lives in `dir`), then
/// waits (bounded) until they are all gone, zombies reaped too.
fn kill_tree(child: &mut Child, dir: &Path, also: &[i32]) {
    let root = child.id() as i32;
    let mut doomed = vec![root];
    doomed.extend(also.iter().filter(|&&p| p != root));
    let marker = dir.to_string_lossy().into_owned();
    // Zombies too: an orphaned helper that already exited still shows who it was.
    let procs = processes(true, Some(&marker));
    // Marked processes, the process group and descendants (fixed point).
    loop {
        let before = doomed.len();
        for &(pid, ppid, pgrp, marked) in &procs {
            if !doomed.contains(&pid) && (marked || doomed.contains(&ppid) || pgrp == root) {
                doomed.push(pid);
            }
        }
        if doomed.len() == before {
            break;
        }
    }
    unsafe {
        libc::kill(-root, libc::SIGKILL);
        for &pid in &doomed {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
    if std::env::var_os("EMORL_BROWSER_DEBUG").is_some() {
        eprintln!("browser: killed {doomed:?}");
    }
    // Wait (bounded) until the others are gone, zombies reaped too (orphans
    // are reaped by init or the nearest subreaper).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let alive = processes(true, None);
        if !doomed.iter().any(|d| alive.iter().any(|&(p, ..)| p == *d)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Helpers outside the process tree (the crashpad handler), found by the
        // temp dir in their command line while they still have one.
        let marker = self.profile.path().to_string_lossy().into_owned();
        let marked: Vec<i32> = processes(false, Some(&marker))
            .into_iter()
            .filter(|p| p.3)
            .map(|p| p.0)
            .collect();
        if !self.session.is_empty() {
            // Lets chromedriver close chromium cleanly; bounded by a short timeout.
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self
                .http
                .delete(&url)
                .timeout(Duration::from_secs(5))
                .send();
        }
        kill_tree(&mut self.driver, self.profile.path(), &marked);
        // `profile` (a TempDir) removes itself after this.
    }
}

/// Standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut padding = false;
    for (i, c) in s.bytes().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding = true;
            continue;
        }
        if padding {
            return Err(format!("base64: data after padding at byte {i}"));
        }
        let v = val(c).ok_or_else(|| format!("base64: invalid byte {c:#04x} at {i}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("base64: truncated input".into());
    }
    Ok(out)
}
