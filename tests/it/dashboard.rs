//! `wa-worker dashboard` in a real browser (headless Chromium through WebDriver) and the `dead`
//! command line, over dead jobs made by the real ingress and the real worker.
//!
//! Over 500 lines: its browser tests share one setup (dead jobs from the real binaries) and the
//! page's selectors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::{
    Ingress, Process, http1, redis, redis_url, send, status_body_to, text_body_to, worker_bin,
};

/// The two business numbers the jobs are for.
const PHONE_A: &str = "109876543210987";
const PHONE_B: &str = "109876543210999";
/// A message text that is markup: it must show as text.
const XSS: &str = "<img src=x onerror=alert(1)>";
/// How long a process gets to start, finish or stop.
const LONG: Duration = Duration::from_secs(30);

/// The dead jobs every test here starts from: what the ingress made of six notifications, each
/// sent to dead by a handler that exits 65.
struct DeadSet {
    ingress: Ingress,
}

/// Ids of the jobs, by what they are.
const A_MESSAGES: [&str; 3] = ["wamid.A1", "wamid.A2", "wamid.A3"];
const B_MESSAGES: [&str; 2] = ["wamid.B1", "wamid.B2"];
const A_STATUS: &str = "wamid.A1:delivered";

impl DeadSet {
    async fn make(what: &str) -> DeadSet {
        let ingress = Ingress::start(what).await;
        let texts = ["hello", XSS, "café ✓"];
        for (wamid, text) in A_MESSAGES.iter().zip(texts) {
            assert_eq!(
                ingress
                    .post(text_body_to(PHONE_A, wamid, text))
                    .await
                    .status,
                200
            );
        }
        for wamid in B_MESSAGES {
            assert_eq!(
                ingress
                    .post(text_body_to(PHONE_B, wamid, "hi"))
                    .await
                    .status,
                200
            );
        }
        assert_eq!(
            ingress
                .post(status_body_to(PHONE_A, "wamid.A1"))
                .await
                .status,
            200
        );
        let set = DeadSet { ingress };
        let mut worker = set.worker(&["run", "--exec", "sh -c 'exit 65'"]);
        set.wait_until("six dead jobs", |d, p| d == 6 && p == 0)
            .await;
        worker.signal("TERM");
        assert_eq!(worker.wait_exit(LONG).await, Some(0), "{}", worker.output());
        set
    }

    fn name(&self) -> &str {
        &self.ingress.queue.name
    }

    fn dead_key(&self) -> String {
        format!("wa:{{{}}}:dead", self.name())
    }

    /// `wa-worker` with `args` on this queue.
    fn worker(&self, args: &[&str]) -> Process {
        let url = redis_url();
        Process::spawn_bin(
            worker_bin(),
            args,
            &[("REDIS_URL", url.as_str()), ("WA_QUEUE", self.name())],
        )
    }

    /// `wa-worker` with `args` run to its end: exit code and stdout+stderr.
    async fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut p = self.worker(args);
        let code = p.wait_exit(LONG).await;
        (code, p.output())
    }

    /// (dead, pending) as Redis holds them.
    async fn depths(&self) -> (u64, u64) {
        let mut c = redis(&redis_url()).await;
        redis::pipe()
            .llen(self.dead_key())
            .llen(self.ingress.queue.pending_key())
            .query_async(&mut c)
            .await
            .expect("LLEN")
    }

    async fn wait_until(&self, what: &str, ok: impl Fn(u64, u64) -> bool) {
        let deadline = Instant::now() + LONG;
        loop {
            let (dead, pending) = self.depths().await;
            if ok(dead, pending) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {what}: dead {dead}, pending {pending}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Job ids in dead, as a set.
    async fn dead_ids(&self) -> BTreeSet<String> {
        let mut c = redis(&redis_url()).await;
        let raws: Vec<String> = redis::cmd("LRANGE")
            .arg(self.dead_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .expect("LRANGE");
        raws.iter().map(|r| job_id(r)).collect()
    }

    /// Job ids in pending, as a set.
    async fn pending_ids(&self) -> BTreeSet<String> {
        let raws = self.ingress.queue.pending_raw().await;
        raws.iter().map(|r| job_id(r)).collect()
    }

    /// Starts the dashboard with `args` on a free loopback port; its base URL.
    async fn dashboard(&self, args: &[&str]) -> (Process, String) {
        let mut all = vec!["dashboard", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut p = self.worker(&all);
        let addr = p
            .wait_addr("wa-worker dashboard listening", "addr", LONG)
            .await;
        (p, format!("http://{addr}"))
    }
}

fn job_id(raw: &str) -> String {
    let v: Value = serde_json::from_str(raw).expect("a job");
    v["id"].as_str().expect("an id").to_owned()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Where a screenshot goes: `docs/img/` (the ones docs/operations.md shows) when
/// `WA_UPDATE_SCREENSHOTS=1`, else `target/screenshots/`, so that a test run leaves the
/// checkout as it found it.
fn screenshot(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var("WA_UPDATE_SCREENSHOTS").as_deref() {
        Ok("1") => root.join("docs/img"),
        _ => root.join("target/screenshots"),
    };
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir.join(name)
}

/// The ids the dead table shows, once it is on screen, shows `n` rows and no page is on its
/// way.
async fn rows(b: &Browser, n: usize) -> BTreeSet<String> {
    let script = format!(
        "const r = [...document.querySelectorAll('#dead-table tbody tr')];
         const view = document.querySelector('#view-dead');
         const done = !view.hidden && !view.dataset.loading;
         return done && r.length === {n} ? r.map((tr) => tr.cells[1].textContent) : null;"
    );
    let v = b.wait_for(&format!("{n} rows"), &script).await;
    v.as_array()
        .expect("ids")
        .iter()
        .map(|s| s.as_str().expect("text").to_owned())
        .collect()
}

/// Sets the filter form (kind by script, the rest typed) and applies it.
async fn filter(b: &Browser, kind: &str, phone: &str) {
    b.eval(
        "document.querySelector('#filter select[name=kind]').value = arguments[0];",
        json!([kind]),
    )
    .await;
    b.type_into("#filter input[name=phone_number_id]", phone)
        .await;
    b.click("#apply").await;
}

/// Clicks `button`, checks the confirmation states `says`, and confirms.
async fn confirm(b: &Browser, button: &str, says: &str, shot: Option<&str>) {
    b.click(button).await;
    let text = b
        .wait_for(
            "the confirmation",
            "const d = document.querySelector('#confirm');
             return d.open ? document.querySelector('#confirm-text').textContent : null;",
        )
        .await;
    let text = text.as_str().expect("text");
    assert!(
        text.contains(says),
        "the confirmation says {text:?}, not {says:?}"
    );
    if let Some(name) = shot {
        b.screenshot(&screenshot(name)).await;
    }
    b.click("#confirm-ok").await;
}

/// POSTs `body` to the dashboard's `path` with these headers.
async fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::post(format!("{base}{path}")).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let a = send(&http1(), req).await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let a = send(
        &http1(),
        req.body(Full::new(Bytes::new())).expect("request"),
    )
    .await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

/// In Chromium: the overview shows what Redis holds; filters by kind and by phone number show
/// exactly the matching jobs; "replay all matching" moves exactly those to pending and a
/// worker handles them; purging one job removes only it; a message text of markup renders as
/// text (no element, no dialog); an action without the CSRF token is refused. Saves the
/// screenshots docs/operations.md shows.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_a_browser() {
    let jobs = DeadSet::make("dash-browser").await;
    let (mut dashboard, base) = jobs.dashboard(&[]).await;
    let b = Browser::start().await;

    // The overview: the counts Redis holds.
    b.goto(&format!("{base}/#/")).await;
    let (dead, pending) = jobs.depths().await;
    b.wait_for(
        "the counts",
        &format!(
            "const t = (s) => document.querySelector('[data-stat=' + s + ']').textContent;
             return t('dead') === '{dead}' && t('pending') === '{pending}' && t('in_hand') === '0';"
        ),
    )
    .await;

    // Actions without the CSRF token change nothing.
    let (status, _) = post(&base, "/api/purge", &[], r#"{"all":true}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let wrong = [("x-csrf-token", "0000")];
    let (status, _) = post(&base, "/api/replay", &wrong, r#"{"all":true}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(jobs.depths().await, (6, 0));

    // The dead list; markup in a message shows as text.
    b.goto(&format!("{base}/#/dead")).await;
    let all = rows(&b, 6).await;
    let mut everything = set(&A_MESSAGES);
    everything.extend(set(&B_MESSAGES));
    everything.insert(A_STATUS.into());
    assert_eq!(all, everything);
    let shown = b
        .eval(
            "return [...document.querySelectorAll('#dead-table td')].some((td) => td.textContent === arguments[0])
                 && document.querySelectorAll('main img').length === 0;",
            json!([XSS]),
        )
        .await;
    assert_eq!(shown, true, "the text shows as text and makes no element");
    assert!(!b.dialog_open().await);
    b.screenshot(&screenshot("dashboard-dead.png")).await;

    // Filters: exactly the matches.
    filter(&b, "status", "").await;
    assert_eq!(rows(&b, 1).await, set(&[A_STATUS]));
    filter(&b, "", PHONE_B).await;
    assert_eq!(rows(&b, 2).await, set(&B_MESSAGES));

    // Replay what the filter matches: exactly those go to pending, and a worker handles them.
    let says = format!("Replay 2 dead jobs matching phone_number_id = {PHONE_B}");
    confirm(&b, "#replay-matching", &says, Some("dashboard-confirm.png")).await;
    b.wait_for(
        "the replay's count",
        "return document.querySelector('#message').textContent === 'Replayed 2 dead jobs.';",
    )
    .await;
    assert_eq!(jobs.pending_ids().await, set(&B_MESSAGES));
    assert_eq!(jobs.depths().await.0, 4);
    let out = tempfile::tempdir().expect("tempdir");
    let handled = out.path().join("handled");
    let exec = format!("sh -c 'echo \"$WA_JOB_ID\" >> {}'", handled.display());
    let mut worker = jobs.worker(&["run", "--exec", &exec]);
    jobs.wait_until("the replayed jobs handled", |_, p| p == 0)
        .await;
    let deadline = Instant::now() + LONG;
    let lines = loop {
        let text = std::fs::read_to_string(&handled).unwrap_or_default();
        let lines: BTreeSet<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        lines,
        set(&B_MESSAGES),
        "the worker handled exactly the replayed jobs"
    );

    // A job's page: fields, payload, and the markup as text.
    b.click("#clear").await;
    rows(&b, 4).await;
    b.eval(
        "[...document.querySelectorAll('#dead-table tbody a')].find((a) => a.textContent === 'wamid.A2').click();",
        json!([]),
    )
    .await;
    b.wait_for(
        "the job page",
        "return document.querySelector('#job-title').textContent.includes('wamid.A2');",
    )
    .await;
    let page = b
        .eval(
            "return {fields: document.querySelector('#job-fields').textContent,
                     payload: document.querySelector('#job-payload').textContent,
                     images: document.querySelectorAll('img').length};",
            json!([]),
        )
        .await;
    assert!(page["fields"].as_str().unwrap().contains(XSS), "{page}");
    assert!(
        page["payload"]
            .as_str()
            .unwrap()
            .contains("\n  \"text\": {"),
        "pretty JSON: {page}"
    );
    assert_eq!(page["images"], 0);
    assert!(!b.dialog_open().await);
    b.screenshot(&screenshot("dashboard-job.png")).await;

    // Purge one job: only it goes.
    b.goto(&format!("{base}/#/dead")).await;
    rows(&b, 4).await;
    let key = b
        .eval(
            "return [...document.querySelectorAll('#dead-table tbody tr')]
                 .find((tr) => tr.cells[1].textContent === 'wamid.A3').dataset.key;",
            json!([]),
        )
        .await;
    b.click(&format!(
        "tr[data-key='{}'] input.pick",
        key.as_str().unwrap()
    ))
    .await;
    confirm(&b, "#purge-selected", "Purge 1 dead job selected", None).await;
    rows(&b, 3).await;
    let mut left = set(&["wamid.A1", "wamid.A2"]);
    left.insert(A_STATUS.into());
    assert_eq!(jobs.dead_ids().await, left);

    // The overview again, with a live worker and the chart sampled meanwhile.
    b.goto(&format!("{base}/#/")).await;
    b.wait_for(
        "the new counts and a chart",
        "const t = (s) => document.querySelector('[data-stat=' + s + ']').textContent;
         return t('dead') === '3' && t('live_consumers') === '1'
             && document.querySelector('#chart polyline').getAttribute('points') !== '';",
    )
    .await;
    b.screenshot(&screenshot("dashboard-overview.png")).await;
    b.close().await;

    worker.signal("TERM");
    assert_eq!(worker.wait_exit(LONG).await, Some(0));
    dashboard.signal("TERM");
    assert_eq!(dashboard.wait_exit(LONG).await, Some(0));
}

/// Beyond loopback the dashboard refuses to start without a token (exit 64, naming the flag);
/// with one, a request needs the token (bearer or the login form's cookie), and a wrong one
/// gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn token_outside_loopback() {
    let jobs = DeadSet::make("dash-token").await;
    let (code, out) = jobs.cli(&["dashboard", "--listen", "0.0.0.0:0"]).await;
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("--token/WA_DASHBOARD_TOKEN"), "{out}");

    let token = "let-me-in-7f3a";
    let (mut dashboard, base) = jobs.dashboard(&["--token", token]).await;
    assert!(
        !dashboard.output().contains(token),
        "the token is never logged"
    );
    assert_eq!(
        get(&base, "/api/overview", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get(
        &base,
        "/api/overview",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"dead\":6"), "{body}");
    assert!(!body.contains("redis://"), "no Redis URL on any page");
    let wrong = [("authorization", "Bearer let-me-in")];
    assert_eq!(
        get(&base, "/api/overview", &wrong).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The page itself sends to the login form, which sets a session cookie for the right token.
    assert_eq!(get(&base, "/", &[]).await.0, StatusCode::SEE_OTHER);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let req = |body: &str| {
        let mut r = Request::post(format!("{base}/login"));
        for (k, v) in form {
            r = r.header(k, v);
        }
        r.body(Full::new(Bytes::from(body.to_owned())))
            .expect("request")
    };
    assert_eq!(
        send(&http1(), req("token=wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ok = send(&http1(), req(&format!("token={token}"))).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = ok.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let (status, page) = get(&base, "/", &[("cookie", session)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(token) && !page.contains("redis://"));
    dashboard.signal("TERM");
    assert_eq!(dashboard.wait_exit(LONG).await, Some(0));
}

/// `dead list` filters on the command line show exactly the matching jobs, `dead show` prints
/// one, and a filtered purge without `--yes` only counts; with it, exactly the matches go.
#[tokio::test(flavor = "multi_thread")]
async fn dead_command_line_filters() {
    let jobs = DeadSet::make("dash-cli").await;
    let list = |args: &'static [&'static str]| {
        let jobs = &jobs;
        async move {
            let mut all = vec!["dead", "list", "--json"];
            all.extend_from_slice(args);
            let (code, out) = jobs.cli(&all).await;
            assert_eq!(code, Some(0), "{out}");
            let line = out
                .lines()
                .find(|l| l.starts_with('['))
                .expect("a JSON array");
            let docs: Vec<Value> = serde_json::from_str(line).expect("JSON");
            docs.iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<String>>()
        }
    };
    assert_eq!(list(&["--kind", "status"]).await, set(&[A_STATUS]));
    assert_eq!(
        list(&["--phone-number-id", PHONE_B]).await,
        set(&B_MESSAGES)
    );
    assert_eq!(
        list(&["--kind", "message", "--phone-number-id", PHONE_A]).await,
        set(&A_MESSAGES)
    );
    assert_eq!(
        list(&["--error", "EXIT"]).await.len(),
        6,
        "every handler exited 65"
    );
    assert_eq!(list(&["--error", "no such error"]).await.len(), 0);
    assert_eq!(list(&["--newer-than", "1h"]).await.len(), 6);
    assert_eq!(list(&["--older-than", "1h"]).await.len(), 0);

    let (code, out) = jobs.cli(&["dead", "show", "wamid.A2"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(XSS) && out.contains("phone_number_id") && out.contains("payload"),
        "{out}"
    );
    let (code, _) = jobs.cli(&["dead", "show", "wamid.nope"]).await;
    assert_eq!(code, Some(1));

    let (code, out) = jobs
        .cli(&["dead", "purge", "--phone-number-id", PHONE_A])
        .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 dead jobs match; nothing purged"), "{out}");
    assert_eq!(jobs.depths().await.0, 6, "nothing changed without --yes");
    let (code, out) = jobs.cli(&["dead", "purge"]).await;
    assert_eq!(code, Some(64), "a bare purge names nothing: {out}");

    let (code, out) = jobs
        .cli(&["dead", "purge", "--phone-number-id", PHONE_A, "--yes"])
        .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("purged 4"), "{out}");
    assert_eq!(jobs.dead_ids().await, set(&B_MESSAGES));
    let (code, out) = jobs.cli(&["dead", "replay", "--kind", "message"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("replayed 2"), "{out}");
    assert_eq!(jobs.pending_ids().await, set(&B_MESSAGES));
    assert_eq!(jobs.depths().await, (0, 2));
}
