//! A headless Chromium driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` (the same build, so their versions match), installed by
//! `scripts/test` like redis-server. Nothing is downloaded.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thirtyfour::prelude::*;

/// How a test finds an element (`By::Id`, `By::Css`).
pub use thirtyfour::By;

/// A private `chromedriver` on a free port and one browser session on it.
pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
    endpoint: String,
}

impl Browser {
    /// Starts chromedriver (`CHROMEDRIVER`, else `chromedriver` on the
    /// PATH) and a headless Chromium window of `width` × `height`, its
    /// console recorded.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = crate::redis::free_port();
        let chromedriver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {program}: install Debian's chromium and chromium-driver (scripts/test does)")
            })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            let ready = client.get(format!("{endpoint}/status")).send().await;
            if let Ok(response) = ready
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{program} did not answer on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = DesiredCapabilities::chrome();
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
        ] {
            caps.add_arg(arg)?;
        }
        if let Ok(binary) = std::env::var("CHROMIUM") {
            caps.set_binary(&binary)?;
        }
        caps.set("goog:loggingPrefs", json!({ "browser": "ALL" }))?;
        let driver = WebDriver::new(endpoint.clone(), caps)
            .await
            .context("a Chromium session")?;
        Ok(Browser {
            driver,
            chromedriver,
            endpoint,
        })
    }

    /// The browser console's entries since the last call, as
    /// `(level, message)` (chromedriver's log endpoint: W3C WebDriver has
    /// none).
    pub async fn console(&self) -> anyhow::Result<Vec<(String, String)>> {
        let url = format!(
            "{}/session/{}/se/log",
            self.endpoint,
            self.driver.session_id()
        );
        let body: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await?
            .json()
            .await?;
        let entries = body["value"].as_array().cloned().unwrap_or_default();
        Ok(entries
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// Runs `script` (a function body: `return ...`) and returns its value.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.driver.execute(script, vec![]).await?.json().clone())
    }

    /// Polls `script` until it returns `true`, for at most `within`.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(script).await? == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {within:?} ({script})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn quit(mut self) {
        let driver = self.driver.clone();
        let _ = driver.quit().await;
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}
