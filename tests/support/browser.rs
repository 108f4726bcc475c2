//! A headless chromium for the dashboard's browser tests and benchmarks:
//! Debian's `chromium` driven through `chromedriver` (WebDriver) with
//! fantoccini, axe-core for accessibility, screenshots under
//! `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{free_port, workspace};

/// One browser at a time: two cores do not run several chromiums and the
/// builds they start side by side in reasonable time.
pub static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// chromedriver on a free port, and a headless chromium session.
pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
    pub base: String,
    shots: PathBuf,
}

impl Browser {
    pub async fn start(base: &str) -> Browser {
        Self::start_with(base, false).await
    }

    /// With `dark`, the page sees `prefers-color-scheme: dark`.
    pub async fn start_with(base: &str, dark: bool) -> Browser {
        let chromedriver =
            std::env::var("KILN_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = free_port();
        let driver = std::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {chromedriver} ({e}): scripts/test.sh installs Debian's chromium and chromium-driver")
            });
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        if dark {
            args.extend([
                "--force-dark-mode",
                "--blink-settings=preferredColorScheme=0",
            ]);
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("KILN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": args,
            }),
        );
        // The process's rustls provider (fantoccini's client builds on it);
        // another test may have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver gives no session: {e}"),
            }
        };
        let shots = workspace().join("target/dashboard-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            driver,
            base: base.to_string(),
            shots,
        }
    }

    pub async fn go(&self, hash: &str) {
        self.client
            .goto(&format!("{}/ui/{hash}", self.base))
            .await
            .unwrap();
    }

    /// Evaluates `script` (a function body) until it returns something
    /// other than null/false; panics after `limit` with `what`.
    pub async fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let value = self.client.execute(script, vec![]).await.unwrap();
            if !(value.is_null() || value == Value::Bool(false)) {
                return value;
            }
            if started.elapsed() > limit {
                let text = self
                    .client
                    .execute("return document.querySelector('main').innerText", vec![])
                    .await
                    .unwrap();
                panic!(
                    "waited {limit:?} for {what}; the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The rendered text of the first element `css` selects, read in one
    /// step in the page (a view re-rendering between a find and a read
    /// would leave a stale element).
    /// Waits (up to 10 s) until `css` selects something; `what` names it
    /// in the failure.
    pub async fn wait_shown(&self, what: &str, css: &str) {
        self.wait_for(
            what,
            &format!("return !!document.querySelector({css:?})"),
            Duration::from_secs(10),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let text = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![json!(css)],
            )
            .await
            .unwrap();
        text.as_str()
            .unwrap_or_else(|| panic!("no {css} on the page"))
            .to_string()
    }

    /// Clicks the first element `css` selects; found again when a view
    /// re-rendered it between the find and the click.
    pub async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if tries < 3 && e.to_string().contains("stale element") => tries += 1,
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn sign_in(&self, token: &str) {
        self.go("#/signin").await;
        self.wait_shown("the sign-in form", "input[name=token]")
            .await;
        self.type_into("input[name=token]", token).await;
        self.click("form.signin button[type=submit]").await;
        self.wait_for(
            "the builds page",
            "return document.title.startsWith('Builds')",
            Duration::from_secs(10),
        )
        .await;
    }

    /// axe-core on the page as it is: no serious or critical violation.
    pub async fn check_accessibility(&self, page: &str) {
        let axe_path = std::env::var("KILN_AXE_JS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target/npm/node_modules/axe-core/axe.min.js"));
        let axe = std::fs::read_to_string(&axe_path).unwrap_or_else(|e| {
            panic!(
                "no axe-core at {} ({e}): scripts/test.sh installs it from npm",
                axe_path.display()
            )
        });
        self.client
            .execute(&format!("{axe}\nreturn true;"), vec![])
            .await
            .unwrap();
        let result = self
            .client
            .execute(
                "return axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})));",
                vec![],
            )
            .await
            .unwrap();
        let bad: Vec<&Value> = result
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(bad.is_empty(), "axe-core on the {page} page: {bad:#?}");
    }

    pub async fn screenshot(&self, page: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{page}.png")), png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
