//! A real browser for the dashboard test: Debian's headless Chromium driven by its
//! chromedriver over W3C WebDriver (plain JSON over HTTP, through the suite's hyper client).
//!
//! chromedriver runs on a free loopback port in a process group of its own, so that dropping
//! the [`Browser`] ends it and the Chromium it started, even when a test panics.

#![allow(dead_code)] // not every test uses every command

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use crate::support::{free_port, http1};

/// How long the page gets to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// The key WebDriver names an element with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One chromedriver and one browser session.
pub struct Browser {
    driver: Child,
    url: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// A WebDriver error: its `error` code and message.
#[derive(Debug)]
pub struct DriverError {
    pub error: String,
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, 1280x900.
    pub async fn start() -> Browser {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver must be installed (Debian: apt-get install chromium-driver)");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut b = Browser {
            driver,
            url: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        b.wait_ready().await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium(), "args": args},
        }}});
        let created = b
            .raw("POST", "/session", Some(caps))
            .await
            .expect("new session");
        b.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        b
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(v) = self.raw("GET", "/status", None).await
                && v["ready"] == true
            {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited ({status})");
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One WebDriver call; the answer's `value`, or the error it names.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DriverError> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let unanswered = |why: String| DriverError {
            error: "no answer".into(),
            message: why,
        };
        let response = tokio::time::timeout(PATIENCE, http1().request(req))
            .await
            .map_err(|_| unanswered(format!("none within {PATIENCE:?}")))?
            .map_err(|e| unanswered(e.to_string()))?;
        let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
            .await
            .map_err(|_| unanswered(format!("no body within {PATIENCE:?}")))?
            .map_err(|e| unanswered(e.to_string()))?
            .to_bytes();
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let value = doc.get("value").cloned().unwrap_or(Value::Null);
        match value.get("error").and_then(Value::as_str) {
            Some(error) => Err(DriverError {
                error: error.to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            }),
            None => Ok(value),
        }
    }

    /// A call on this session that must succeed.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e:?}"))
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// The element `css` selects (it must exist).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Clears the field `css` selects and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/clear"), Some(json!({})))
            .await;
        if !text.is_empty() {
            self.call(
                "POST",
                &format!("/element/{id}/value"),
                Some(json!({"text": text})),
            )
            .await;
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script` until it returns something other than null or false.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.eval(script, json!([])).await;
            if !v.is_null() && v != false {
                return v;
            }
            assert!(Instant::now() < deadline, "the page did not show {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True when a JavaScript dialog (alert, confirm, prompt) is open.
    pub async fn dialog_open(&self) -> bool {
        match self
            .raw(
                "GET",
                &format!("/session/{}/alert/text", self.session),
                None,
            )
            .await
        {
            Ok(_) => true,
            Err(e) if e.error == "no such alert" => false,
            Err(e) => panic!("asking for a dialog: {e:?}"),
        }
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("base64 text"));
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self
            .raw("DELETE", &format!("/session/{}", self.session), None)
            .await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: chromedriver and the browser it started.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.driver.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian names the browser `chromium`.
fn chromium() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("chromium")
        .to_owned()
}

/// Standard base64 (WebDriver's screenshots), padding and line breaks allowed.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

/// The decoder reads what RFC 4648 lists.
#[test]
fn base64_vectors() {
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode("Zm9vYg=="), b"foob");
    assert_eq!(base64_decode("Zm9vYmE="), b"fooba");
    assert_eq!(base64_decode(""), b"");
}
