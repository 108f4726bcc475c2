//! The web dashboard and what it stands on: sign-in sessions (cookie,
//! CSRF, revocation), `GET /v1/events`, and the pages themselves driven in
//! a real browser — Debian's chromium through chromedriver (WebDriver) —
//! against a real server, engine and registry, with axe-core checking each
//! page's accessibility. Screenshots of every page are saved under
//! `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use kiln_tests::browser::{Browser, BROWSER};
use kiln_tests::*;
use serde_json::{json, Value};

const BUSYBOX: &str = "127.0.0.1:5000/base/busybox:1";

// ---- sessions and events over HTTP ----

/// Signs in with `token`; returns the session cookie (`name=value`) and the
/// CSRF token.
async fn sign_in(api: &Api, token: &str) -> (String, String) {
    let body = json!({ "token": token });
    let answer = as_session(api, Method::POST, "/ui/session", "", None, Some(&body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        !answer
            .body
            .windows(token.len())
            .any(|w| w == token.as_bytes()),
        "the sign-in answer repeats the token"
    );
    (cookie, answer.json()["csrf"].as_str().unwrap().to_string())
}

/// A request as a signed-in browser makes it: the session cookie, the
/// CSRF header when given, a JSON body when given.
async fn as_session(
    api: &Api,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut headers = vec![("cookie", cookie.to_string())];
    if let Some(csrf) = csrf {
        headers.push(("x-kiln-csrf", csrf.to_string()));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json".to_string()));
    }
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    api.request_with(method, path, &headers, body).await
}

#[tokio::test]
async fn dashboard_sessions_use_a_cookie_need_csrf_and_end_with_their_token() {
    let t = TestServer::start().await;
    let org_token = t
        .server
        .create_org_with_token(&unique_name("sess"))
        .unwrap();
    let (cookie, csrf) = sign_in(&t, &org_token).await;

    // The cookie opens the API as the token's organization.
    let list = as_session(&t, Method::GET, "/v1/builds", &cookie, None, None).await;
    assert_eq!(list.status, StatusCode::OK);
    // Every answer carries a strict Content-Security-Policy.
    let csp = list.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    // A state-changing request with the cookie alone, or a wrong CSRF
    // token, is refused; with the session's CSRF token it is accepted.
    let secrets = json!({"buildSecrets": {"API_KEY": "1234abcd"}});
    for (given, expected) in [
        (None, StatusCode::FORBIDDEN),
        (Some("0000"), StatusCode::FORBIDDEN),
        (Some(csrf.as_str()), StatusCode::OK),
    ] {
        let answer = as_session(
            &t,
            Method::PUT,
            "/v1/secrets",
            &cookie,
            given,
            Some(&secrets),
        )
        .await;
        assert_eq!(answer.status, expected, "CSRF {given:?}: {:?}", answer.body);
        if expected == StatusCode::FORBIDDEN {
            assert!(answer.error_message().contains("X-Kiln-CSRF"));
        }
    }

    // A wrong token does not sign in, and says why.
    let bad = as_session(
        &t,
        Method::POST,
        "/ui/session",
        "",
        None,
        Some(&json!({"token": "kiln_nope"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.error_message().contains("not valid"));

    // Revoking the token ends its sessions (and only them).
    let org = as_session(&t, Method::GET, "/ui/session", &cookie, None, None)
        .await
        .json()["org"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens: Value = t
        .post_json(&format!("/v1/orgs/{org}/tokens"), &json!({}))
        .await
        .json();
    let (second_cookie, _) = sign_in(&t, tokens["token"].as_str().unwrap()).await;
    let revoked = t
        .request_as(
            Some(&t.token),
            Method::DELETE,
            &format!(
                "/v1/orgs/{org}/tokens/{}",
                tokens["tokenId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let ended = as_session(&t, Method::GET, "/v1/builds", &second_cookie, None, None).await;
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
    assert!(ended.error_message().contains("sign in again"));
    let still = as_session(&t, Method::GET, "/v1/builds", &cookie, None, None).await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "another token's session ended too"
    );

    // Signing out needs the CSRF token, then ends the session.
    let no_csrf = as_session(&t, Method::DELETE, "/ui/session", &cookie, None, None).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let out = as_session(
        &t,
        Method::DELETE,
        "/ui/session",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = as_session(&t, Method::GET, "/v1/builds", &cookie, None, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

/// Reads a Server-Sent Events body until `enough` says so (or `limit`):
/// the events as (id, event, data).
async fn read_events(
    url: &str,
    headers: &[(&str, String)],
    limit: Duration,
    enough: impl Fn(&[(u64, String, Value)]) -> bool,
) -> Vec<(u64, String, Value)> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(url).header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = client
        .request(request.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + limit;
    while !enough(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no more events within {limit:?}: {text}");
        let Ok(Some(Ok(frame))) = tokio::time::timeout(left, body.frame()).await else {
            panic!("the stream ended or stalled: {text}");
        };
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (0, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if !event.is_empty() {
                events.push((id, event, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn build_events_stream_per_organization_and_resume_after_last_event_id() {
    let t = TestServer::start().await;
    let other = t.as_token(&t.server.create_org_with_token(&unique_name("ev")).unwrap());
    let name = unique_name("events");
    let auth = vec![("authorization", format!("Bearer {}", t.token))];
    let url = t.url("/v1/events");

    // Follow from now, then build: queued, started, succeeded, in order.
    let follow = {
        let url = url.clone();
        let auth = auth.clone();
        let name = name.clone();
        tokio::spawn(async move {
            read_events(&url, &auth, Duration::from_secs(120), |events| {
                events
                    .iter()
                    .any(|(_, e, d)| e == "build.succeeded" && d["data"]["name"] == name.as_str())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let build_id = t.create_build(&hello_request(&name)).await;
    t.wait_succeeded(&build_id, Duration::from_secs(120)).await;
    // Another organization's build happens meanwhile.
    let theirs = other
        .create_build(&dockerfile_request(
            &unique_name("theirs"),
            &format!("FROM {BUSYBOX}\n"),
        ))
        .await;
    other.wait_finished(&theirs, Duration::from_secs(120)).await;
    let events = follow.await.unwrap();
    let ours: Vec<&(u64, String, Value)> = events
        .iter()
        .filter(|(_, _, d)| d["data"]["buildId"] == build_id.as_str())
        .collect();
    let kinds: Vec<&str> = ours.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["build.queued", "build.started", "build.succeeded"]);
    assert!(ours.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    assert_eq!(ours[2].2["type"], "build.succeeded");
    assert_eq!(ours[2].2["data"]["status"], "BUILD_STATUS_SUCCEEDED");
    assert!(
        events
            .iter()
            .all(|(_, _, d)| d["data"]["buildId"] != theirs.as_str()),
        "another organization's events reached this stream"
    );

    // Resuming after the first event replays exactly the ones after it.
    let first = ours[0].0;
    let replayed = read_events(
        &url,
        &[auth[0].clone(), ("last-event-id", first.to_string())],
        Duration::from_secs(10),
        |events| events.iter().any(|(_, e, _)| e == "build.succeeded"),
    )
    .await;
    let replayed_ours: Vec<&str> = replayed
        .iter()
        .filter(|(_, _, d)| d["data"]["buildId"] == build_id.as_str())
        .map(|(_, e, _)| e.as_str())
        .collect();
    assert_eq!(replayed_ours, ["build.started", "build.succeeded"]);
    assert!(replayed.iter().all(|(id, _, _)| *id > first));
    // The other organization's stream replays only its own.
    let theirs_replayed = read_events(
        &url,
        &[
            ("authorization", format!("Bearer {}", other.token)),
            ("last-event-id", "0".into()),
        ],
        Duration::from_secs(10),
        |events| {
            events
                .iter()
                .any(|(_, e, _)| e == "build.succeeded" || e == "build.failed")
        },
    )
    .await;
    assert!(theirs_replayed
        .iter()
        .all(|(_, _, d)| d["data"]["buildId"] == theirs.as_str()));

    // A malformed resume point is a 400 that says what it must be.
    let bad = t.get("/v1/events?after=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error_message().contains("event id"));
}

// ---- the browser ----

/// The status badge of the build page, once it is one of `wanted`.
async fn wait_status(browser: &Browser, wanted: &[&str], limit: Duration) -> String {
    let list = serde_json::to_string(wanted).unwrap();
    browser
        .wait_for(
            &format!("status {wanted:?}"),
            &format!(
                "const b = document.querySelector('main .head .badge'); return b && {list}.includes(b.textContent) ? b.textContent : null;"
            ),
            limit,
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

fn hello_zip_file(dir: &std::path::Path) -> PathBuf {
    let zip = zip_dir(&workspace().join("examples/hello"));
    let path = dir.join("hello.zip");
    std::fs::write(&path, zip).unwrap();
    path
}

#[tokio::test]
async fn dashboard_in_a_browser_builds_streams_rebuilds_and_passes_axe() {
    let _one = BROWSER.lock().await;
    let t = TestServer::start().await;
    let token = t.server.create_org_with_token(&unique_name("ui")).unwrap();
    let browser = Browser::start(&t.url("")).await;

    // Signed out, the page asks for a token.
    browser.go("").await;
    browser
        .wait_shown("the sign-in form", "input[name=token]")
        .await;
    browser.check_accessibility("sign-in").await;
    browser.screenshot("sign-in").await;
    browser.sign_in(&token).await;
    // The session cookie is HttpOnly: the page's script cannot read it, and
    // the token is nowhere a script can reach.
    let readable = browser
        .client
        .execute("return document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + location.href + document.documentElement.outerHTML", vec![])
        .await
        .unwrap();
    let readable = readable.as_str().unwrap();
    assert!(
        !readable.contains("kiln_session"),
        "the session cookie is readable by script"
    );
    assert!(
        !readable.contains(&token),
        "the token is readable by script"
    );

    // New build: upload an archive, name it, start it.
    let scratch = tempfile::tempdir().unwrap();
    let zip = hello_zip_file(scratch.path());
    browser.go("#/new").await;
    browser
        .wait_shown("the new-build form", "input[name=name]")
        .await;
    browser.check_accessibility("new-build").await;
    browser.screenshot("new-build").await;
    let name = unique_name("uihello");
    browser.type_into("input[name=name]", &name).await;
    browser.click("#kind-upload").await;
    browser
        .client
        .find(Locator::Css("input[name=archive]"))
        .await
        .unwrap()
        .send_keys(zip.to_str().unwrap())
        .await
        .unwrap();
    browser
        .type_into(
            "textarea[name=buildArgs]",
            "GREETING=Hello from the dashboard",
        )
        .await;
    browser.click("form button.primary[type=submit]").await;

    // The build page follows the log live to SUCCEEDED.
    let status = wait_status(&browser, &["succeeded", "failed"], Duration::from_secs(180)).await;
    let build_id = browser
        .client
        .current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap()
        .trim_start_matches("/builds/")
        .to_string();
    let record = t.as_token(&token).build(&build_id).await;
    assert_eq!(status, "succeeded", "{record:#}");
    assert_eq!(record["source"]["kind"], "upload");
    assert_eq!(
        record["request"]["buildArgs"]["GREETING"],
        "Hello from the dashboard"
    );
    let stored = t.as_token(&token).log(&build_id).await.len() as u64;
    // Every line reaches the view (finished steps folded: their lines are
    // put on the page when opened), and "Expand all" shows each once.
    browser
        .wait_for(
            "every stored line in the view",
            &format!("return Number(document.querySelector('.log').dataset.lines) >= {stored}"),
            Duration::from_secs(20),
        )
        .await;
    browser.click(".logbar button.expand-all").await;
    let lines = browser
        .wait_for(
            "every line on the page",
            &format!("const n = document.querySelectorAll('.log .l').length; return n >= {stored} ? n : null;"),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(lines.as_u64().unwrap(), stored, "each line shown once");
    // Steps are folded by `#N`, with their badges.
    let steps = browser
        .client
        .execute("return Array.from(document.querySelectorAll('.log details[data-step]')).filter(d => d.dataset.step !== 'setup').map(d => d.querySelector('.state').textContent)", vec![])
        .await
        .unwrap();
    let steps = steps.as_array().unwrap();
    assert!(!steps.is_empty(), "no #N steps");
    assert!(steps.iter().any(|s| s == "DONE"), "{steps:?}");
    let image = record["imageRefs"][0].as_str().unwrap();
    let shown = browser.text("main").await;
    assert!(shown.contains(image), "{image} not in:\n{shown}");
    // Where it ran (issue 15: the record's engine).
    let engine = record["engine"]
        .as_str()
        .expect("the record names its engine");
    assert!(
        shown.contains(&format!("Engine\n{engine}")) || shown.contains(&format!("Engine {engine}")),
        "engine {engine} not shown:\n{shown}"
    );
    // Find in the log.
    browser
        .type_into(
            "input[type=search][aria-label='Find in log']",
            "Hello from the dashboard",
        )
        .await;
    browser.click(".logbar button[type=submit]").await;
    let hits = browser
        .wait_for(
            "find results",
            "return document.querySelectorAll('.log .l.hit').length || null",
            Duration::from_secs(5),
        )
        .await;
    assert!(hits.as_u64().unwrap() >= 1);
    browser.check_accessibility("build").await;
    browser.screenshot("build").await;

    // Rebuild: a new build of the same uploaded context and request.
    browser.click("main .actions button:not(.danger)").await;
    browser
        .wait_for(
            "the rebuild's page",
            &format!("return location.hash.startsWith('#/builds/') && !location.hash.endsWith('{build_id}')"),
            Duration::from_secs(10),
        )
        .await;
    let status = wait_status(&browser, &["succeeded", "failed"], Duration::from_secs(180)).await;
    assert_eq!(status, "succeeded");
    let rebuild_id = browser
        .client
        .current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap()
        .trim_start_matches("/builds/")
        .to_string();
    let rebuilt = t.as_token(&token).build(&rebuild_id).await;
    assert_eq!(rebuilt["number"], 2);
    assert_eq!(
        rebuilt["source"]["contextId"],
        record["source"]["contextId"]
    );
    assert_eq!(
        rebuilt["request"]["buildArgs"],
        record["request"]["buildArgs"]
    );

    // The builds page lists both, newest first, and adds a new build live
    // (from /v1/events) without a reload.
    browser.go("#/builds").await;
    browser
        .wait_for(
            "two rows",
            "return document.querySelectorAll('tbody tr').length === 2",
            Duration::from_secs(10),
        )
        .await;
    let first_row = browser.text("tbody tr:first-child").await;
    assert!(first_row.contains(&format!("#2 {name}")), "{first_row}");
    browser
        .client
        .execute("window.__notReloaded = true; return true", vec![])
        .await
        .unwrap();
    let live = t
        .as_token(&token)
        .create_build(&dockerfile_request(
            &unique_name("live"),
            &format!("FROM {BUSYBOX}\n"),
        ))
        .await;
    browser
        .wait_for(
            "the new build's row, live",
            &format!("return window.__notReloaded && !!document.querySelector('tr[data-build=\"{live}\"]')"),
            Duration::from_secs(30),
        )
        .await;
    t.as_token(&token)
        .wait_finished(&live, Duration::from_secs(120))
        .await;
    browser
        .wait_for(
            "the live row's final status",
            &format!("const r = document.querySelector('tr[data-build=\"{live}\"] .badge'); return r && r.textContent === 'succeeded'"),
            Duration::from_secs(30),
        )
        .await;
    browser.check_accessibility("builds").await;
    browser.screenshot("builds").await;

    // Trends, secrets and plugins pages.
    browser.go(&format!("#/trends?name={name}")).await;
    browser
        .wait_for(
            "the charts",
            "return document.querySelectorAll('svg.chart').length === 2",
            Duration::from_secs(10),
        )
        .await;
    browser.check_accessibility("trends").await;
    browser.screenshot("trends").await;

    browser.go("#/secrets").await;
    browser
        .wait_shown("the secret form", "input[name=secretName]")
        .await;
    browser
        .type_into("input[name=secretName]", "NPM_TOKEN")
        .await;
    browser
        .type_into("input[name=secretValue]", "s3cr3t-value")
        .await;
    browser.click("main form button.primary").await;
    browser
        .wait_for("the saved secret", "return document.querySelector('main table') && document.querySelector('main table').textContent.includes('NPM_TOKEN')", Duration::from_secs(10))
        .await;
    assert!(
        !browser.text("main").await.contains("s3cr3t-value"),
        "a secret's value is shown"
    );
    browser.check_accessibility("secrets").await;
    browser.screenshot("secrets").await;

    browser.go("#/plugins").await;
    browser
        .wait_for("the plugin table", "return document.querySelector('main table') && document.querySelector('main table').textContent.includes('buildkit')", Duration::from_secs(10))
        .await;
    browser.check_accessibility("plugins").await;
    browser.screenshot("plugins").await;

    // Narrow (375 px): the builds page still reads.
    browser.client.set_window_size(375, 800).await.unwrap();
    browser.go("#/builds").await;
    browser
        .wait_for(
            "rows at 375 px",
            "return document.querySelectorAll('tbody tr').length >= 3",
            Duration::from_secs(10),
        )
        .await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways at 375 px by {overflow}"
    );
    browser.screenshot("builds-375px").await;
    browser.close().await;
}

#[tokio::test]
async fn dashboard_in_a_browser_cancels_shows_failures_pages_isolates_orgs_and_signs_out() {
    let _one = BROWSER.lock().await;
    let t = TestServer::start().await;
    let token = t.server.create_org_with_token(&unique_name("ui2")).unwrap();
    let api = t.as_token(&token);
    // This one in dark mode: its pages are checked (contrast included) in
    // the dark palette.
    let browser = Browser::start_with(&t.url(""), true).await;
    browser.sign_in(&token).await;
    let dark = browser
        .client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(dark, true, "the browser does not prefer dark");

    // Cancel a running build from its page.
    let slow = api
        .create_build(&dockerfile_request(
            &unique_name("slow"),
            &format!("FROM {BUSYBOX}\nRUN echo started && sleep 120\n"),
        ))
        .await;
    browser.go(&format!("#/builds/{slow}")).await;
    wait_status(&browser, &["running"], Duration::from_secs(60)).await;
    browser
        .wait_for(
            "the step running",
            "return document.querySelector('.log').textContent.includes('started')",
            Duration::from_secs(60),
        )
        .await;
    browser.click("main .actions button.danger").await;
    wait_status(&browser, &["cancelled"], Duration::from_secs(60)).await;
    assert_eq!(api.build(&slow).await["status"], "BUILD_STATUS_CANCELLED");

    // A failing build: its banner (reason, message, hint) above the log, and
    // the failing step opened.
    let failing = api
        .create_build(&dockerfile_request(
            &unique_name("failing"),
            &format!("FROM {BUSYBOX}\nRUN echo about to fail && exit 3\n"),
        ))
        .await;
    let record = api.wait_finished(&failing, Duration::from_secs(120)).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED");
    browser.go(&format!("#/builds/{failing}")).await;
    wait_status(&browser, &["failed"], Duration::from_secs(30)).await;
    let banner = browser.text(".banner").await;
    assert!(
        banner.contains(record["failure"]["reason"].as_str().unwrap()),
        "{banner}"
    );
    assert!(
        banner.contains(record["failure"]["hint"].as_str().unwrap()),
        "{banner}"
    );
    let opened = browser
        .wait_for(
            "the failing step, opened",
            "const d = Array.from(document.querySelectorAll('.log details')).find(d => d.querySelector('.b-ERROR')); return d && d.open ? d.textContent : null",
            Duration::from_secs(20),
        )
        .await;
    assert!(opened.as_str().unwrap().contains("exit 3"), "{opened}");
    browser.check_accessibility("failed build (dark)").await;
    browser.screenshot("build-failed-dark").await;

    // Paging: 3 to a page, newest first, every build once.
    let mut ids = vec![slow.clone(), failing.clone()];
    for _ in 0..3 {
        ids.push(
            api.create_build(&json!({"name": "paged", "zippedCode": base64(&zip_entries(&[("x", b"x", 0o644)])), "dockerfile": "missing/Dockerfile"}))
                .await,
        );
    }
    for id in &ids[2..] {
        api.wait_finished(id, Duration::from_secs(60)).await;
    }
    let mut seen = Vec::new();
    browser.go("#/builds?pageSize=3").await;
    loop {
        let rows = browser
            .wait_for(
                "a page of rows",
                "const r = Array.from(document.querySelectorAll('tbody tr')).map(r => r.dataset.build); return r.length ? r : null",
                Duration::from_secs(10),
            )
            .await;
        let rows: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(rows.len() <= 3);
        seen.extend(rows.clone());
        let older = browser
            .client
            .execute("const a = document.querySelector('nav.pager a[rel=next]'); if (a) { a.click(); return true; } return false;", vec![])
            .await
            .unwrap();
        if older != Value::Bool(true) {
            break;
        }
        browser
            .wait_for(
                "the next page",
                &format!("const r = document.querySelector('tbody tr'); return r && r.dataset.build !== {:?}", rows[0]),
                Duration::from_secs(10),
            )
            .await;
    }
    ids.reverse();
    assert_eq!(seen, ids, "pages newest first, each build once");

    // Another organization's build is not there for this one: the same
    // 404 as the API.
    let theirs = t
        .create_build(&dockerfile_request(
            &unique_name("admins"),
            &format!("FROM {BUSYBOX}\n"),
        ))
        .await;
    browser.go(&format!("#/builds/{theirs}")).await;
    let shown = browser
        .wait_for(
            "the not-found message",
            "const e = document.querySelector('main .error-text'); return e ? e.textContent : null",
            Duration::from_secs(10),
        )
        .await;
    assert!(shown.as_str().unwrap().contains("not found"), "{shown}");
    browser.go("#/builds").await;
    browser
        .wait_for(
            "the list",
            "return document.querySelectorAll('tbody tr').length > 0",
            Duration::from_secs(10),
        )
        .await;
    assert!(!browser.text("main").await.contains(&theirs));
    browser.check_accessibility("builds (dark)").await;
    browser.screenshot("builds-dark").await;

    // New build from a monorepo: the wizard's detection lists its
    // sub-projects, and picking one sets the context directory.
    let scratch = tempfile::tempdir().unwrap();
    let mono = scratch.path().join("mono.zip");
    std::fs::write(
        &mono,
        zip_dir(&workspace().join("examples/wizard/monorepo-pnpm")),
    )
    .unwrap();
    browser.go("#/new").await;
    browser
        .wait_shown("the new-build form", "#kind-upload")
        .await;
    browser.click("#kind-upload").await;
    browser
        .client
        .find(Locator::Css("input[name=archive]"))
        .await
        .unwrap()
        .send_keys(mono.to_str().unwrap())
        .await
        .unwrap();
    browser.click("button.detect").await;
    let listed = browser
        .wait_for(
            "the detected sub-projects",
            "const b = Array.from(document.querySelectorAll('button.use-project')).map(b => b.textContent); return b.length ? b : null",
            Duration::from_secs(60),
        )
        .await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(listed.contains(&"Use packages/web"), "{listed:?}");
    let chosen = browser
        .client
        .execute(
            "Array.from(document.querySelectorAll('button.use-project')).find(b => b.textContent === 'Use packages/web').click(); return document.querySelector('input[name=contextDir]').value",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(chosen, "packages/web");
    // (Fields render nothing stray beside them.)
    let upload = browser.text("main form fieldset:nth-of-type(3)").await;
    assert!(upload.contains("Context directory"), "{upload}");
    assert!(
        !upload.contains("null") && !upload.contains("undefined"),
        "{upload}"
    );
    browser
        .check_accessibility("new build with detection (dark)")
        .await;
    browser.screenshot("new-build-detected-dark").await;

    // Sign out: back to the sign-in form, and the session is gone.
    browser.click("#sign-out").await;
    browser
        .wait_shown("the sign-in form", "input[name=token]")
        .await;
    let status = browser
        .client
        .execute("return fetch('/v1/builds').then(r => r.status)", vec![])
        .await
        .unwrap();
    assert_eq!(status, 401);
    browser.close().await;
}
