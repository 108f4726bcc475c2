//! The dashboard's speed over a big server, printed as a table: a real
//! `kiln serve` (in process) holding 100,000 finished builds, one of them
//! with a 100,000-line log, and Debian's chromium (headless, through
//! chromedriver) showing its pages.
//!
//! * server time for the builds page's call (`GET /v1/builds?pageSize=50`,
//!   as the page makes it): first page, filtered, and a page deep in the
//!   history;
//! * in the browser, from the route change to the page shown: the builds
//!   page (50 rows), and the log view of the 100,000-line log (its first
//!   step shown; every line received, steps folded; then "Expand all" until
//!   every line is on the page) — measured in the page with
//!   `performance.now()` at each animation frame.
//!
//! `cargo bench -p kiln-server --bench dashboard` (after `scripts/test.sh`
//! or `KILN_BROWSER=1 scripts/setup.sh`, and axe-core is not needed here).

use kiln_server::store::{LogLine, Store};
use kiln_tests::browser::Browser;
use kiln_tests::*;
use serde_json::Value;

const RECORDS: usize = 100_000;
const LOG_LINES: u64 = 100_000;
/// The build whose log is 100,000 lines: the newest of the filled ones.
const LOG_BUILD: &str = "bench-099999";

/// A BuildKit-style log: 100 steps of 1,000 lines each.
fn fill_log(dir: &std::path::Path) {
    let store = Store::open(&dir.join("db")).unwrap();
    let time = chrono::Utc::now();
    let steps = 100;
    let per_step = LOG_LINES / steps;
    let mut seq = 0;
    let mut lines = Vec::with_capacity(LOG_LINES as usize);
    for step in 1..=steps {
        for i in 0..per_step {
            seq += 1;
            let line = match i {
                0 => format!("#{step} [{step}/{steps}] RUN ./generate --part {step}"),
                i if i == per_step - 1 => format!("#{step} DONE 1.{step:02}s"),
                i => format!(
                    "#{step} {:.3} part {step}: wrote file {i} of {per_step} (sha256 {:016x})",
                    i as f64 / 100.0,
                    i * 7919
                ),
            };
            lines.push(LogLine {
                seq,
                time,
                stream: "build".into(),
                line,
            });
        }
    }
    store.append_log_lines(LOG_BUILD, &lines).unwrap();
    store.flush_blocking().unwrap();
}

async fn server_times(t: &TestServer, query: &str, rows: &mut Vec<(String, String)>, what: &str) {
    let (p50, p99) = list_page_latencies(t, query).await;
    rows.push((
        what.to_string(),
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms (200 requests)"),
    ));
}

/// In the page: switch to `hash` and resolve with the milliseconds until
/// `done()` holds at an animation frame, and until `first()` first held.
async fn time_view(browser: &Browser, hash: &str, first: &str, done: &str) -> (f64, f64) {
    // Start from another view, so the route change renders from nothing.
    browser.go("#/plugins").await;
    browser
        .wait_for(
            "the plugins page",
            "return document.title.startsWith('Plugins')",
            std::time::Duration::from_secs(30),
        )
        .await;
    let script = format!(
        "return new Promise(resolve => {{
           const t0 = performance.now();
           let firstAt = null;
           location.hash = {hash:?};
           (function check() {{
             if (firstAt === null && ({first})) firstAt = performance.now() - t0;
             if ({done}) resolve([firstAt, performance.now() - t0]);
             else requestAnimationFrame(check);
           }})();
         }});"
    );
    let answer: Value = browser.client.execute(&script, vec![]).await.unwrap();
    (answer[0].as_f64().unwrap(), answer[1].as_f64().unwrap())
}

#[tokio::main]
async fn main() {
    let mut rows: Vec<(String, String)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let fill = fill_finished_builds(dir.path(), RECORDS);
    fill_log(dir.path());
    rows.push((
        "data".into(),
        format!(
            "{RECORDS} finished builds ({:.1} s to fill), {LOG_LINES}-line log on {LOG_BUILD}",
            fill.as_secs_f64()
        ),
    ));
    let t = TestServer::start_with(|c| c.data_dir = dir.path().to_path_buf()).await;

    server_times(&t, "", &mut rows, "builds page call, first page").await;
    server_times(
        &t,
        "&status=BUILD_STATUS_FAILED",
        &mut rows,
        "… filtered by status",
    )
    .await;
    server_times(&t, "&name=app-7", &mut rows, "… filtered by name").await;
    server_times(
        &t,
        "&pageToken=50000",
        &mut rows,
        "… a page 50,000 builds deep",
    )
    .await;

    let browser = Browser::start(&t.url("")).await;
    browser.sign_in(&t.token).await;
    let mut list = Vec::new();
    let mut log_first = Vec::new();
    let mut log_all = Vec::new();
    let mut log_expanded = Vec::new();
    for _ in 0..5 {
        let (_, all) = time_view(
            &browser,
            "#/builds",
            "document.querySelectorAll('tbody tr').length === 50",
            "document.querySelectorAll('tbody tr').length === 50",
        )
        .await;
        list.push(all);
        let (first, all) = time_view(
            &browser,
            &format!("#/builds/{LOG_BUILD}"),
            "document.querySelector('.log details[data-step=\"1\"]') !== null",
            &format!("document.querySelector('.log') && document.querySelector('.log').dataset.lines === '{LOG_LINES}'"),
        )
        .await;
        log_first.push(first);
        log_all.push(all);
        let expanded: Value = browser
            .client
            .execute(
                &format!(
                    "return new Promise(resolve => {{
                       const t0 = performance.now();
                       document.querySelector('.logbar button.expand-all').click();
                       (function check() {{
                         if (document.querySelectorAll('.log .l').length === {LOG_LINES}) resolve(performance.now() - t0);
                         else requestAnimationFrame(check);
                       }})();
                     }});"
                ),
                vec![],
            )
            .await
            .unwrap();
        log_expanded.push(expanded.as_f64().unwrap());
    }
    let list = sorted(list);
    let log_first = sorted(log_first);
    let log_all = sorted(log_all);
    let log_expanded = sorted(log_expanded);
    rows.push((
        "browser: builds page, route change → 50 rows".into(),
        format!(
            "median {:.0} ms, max {:.0} ms (5 runs)",
            percentile(&list, 0.5),
            list[4]
        ),
    ));
    rows.push((
        format!("browser: log view, {LOG_LINES} lines → first step shown"),
        format!(
            "median {:.0} ms, max {:.0} ms",
            percentile(&log_first, 0.5),
            log_first[4]
        ),
    ));
    rows.push((
        format!("browser: log view, {LOG_LINES} lines → all in, steps folded"),
        format!(
            "median {:.0} ms, max {:.0} ms",
            percentile(&log_all, 0.5),
            log_all[4]
        ),
    ));
    rows.push((
        format!("browser: … Expand all → {LOG_LINES} lines on the page"),
        format!(
            "median {:.0} ms, max {:.0} ms",
            percentile(&log_expanded, 0.5),
            log_expanded[4]
        ),
    ));
    browser.close().await;

    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!("\nKiln dashboard ({RECORDS} records)\n");
    for (what, value) in rows {
        println!("{what:width$}  {value}");
    }
}
