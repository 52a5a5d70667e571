//! A headless Chromium driven over WebDriver: chromedriver started on a free port, one fresh
//! profile per browser, the emulator's self-signed certificate accepted, and helpers that wait
//! for the page with a bound instead of sleeping.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a page may take to show what a step waits for before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// Browser tests run one at a time: two cores do not run several Chromiums well.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A browser session; the driver (and with it Chromium) is killed on drop.
pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`×`height`.
    ///
    /// Fails, with what to install, when chromedriver or Chromium is missing: CI must run
    /// these tests, not skip them.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_path = chromedriver_path();
        let chromium = chromium_path();
        assert!(
            driver_path.exists() && chromium.exists(),
            "the console's browser tests need Chromium and chromedriver ({} and {}): \
             `apt-get install -y chromium chromium-driver`, or set CHROMIUM and CHROMEDRIVER",
            chromium.display(),
            driver_path.display()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_path.display()));
        let deadline = Instant::now() + STEP;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within {STEP:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("console-browser-{}-{port}", std::process::id()));
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session from chromedriver: {e}"));
        Browser {
            client,
            _driver: driver,
            _profile: TempDir(profile),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The text of the first element matching `css`, once it exists and `ok(text)` holds;
    /// fails after `within` with the last text seen.
    pub async fn text_when(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if ok(&t) {
                    return t;
                }
                last = Some(t);
            }
            if Instant::now() >= deadline {
                self.screenshot("failed-step").await;
                panic!(
                    "`{css}` did not show what was expected within {within:?}; last text: {last:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element matching `css` exists now.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Replaces the text of an input or textarea by typing.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self
            .client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clearing `{css}`: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    pub async fn click(&self, css: &str) {
        let e = self
            .client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Saves the page as `target/console-screenshots/{name}.png` (a CI artefact).
    pub async fn screenshot(&self, name: &str) {
        let dir = screenshot_dir();
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        std::fs::create_dir_all(&dir).expect("creating the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("writing the screenshot");
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("resizing the window: {e}"));
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `target/console-screenshots` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("console-screenshots")
}
