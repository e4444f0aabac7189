//! A real headless Chromium for the page tests, driven over WebDriver: `chromedriver` is
//! started on a free loopback port with a fresh profile, and everything is stopped when the
//! [`Browser`] is dropped. Debian's `chromium` and `chromium-driver` packages (`.ci/run`
//! installs them). Screenshots go under `target/browser-screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "the browser tests need {path}: `apt-get install {package}` (.ci/run installs it)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots are kept after the tests (a test artifact).
pub fn screenshots() -> PathBuf {
    let dir = crate::support::root().join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    pub fn start() -> Browser {
        need("/usr/bin/chromium", "chromium");
        need("/usr/bin/chromedriver", "chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // An alert must stay open for the test to see it, not be dismissed by the driver.
        caps.insert("unhandledPromptBehavior".into(), "ignore".into());
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let tried = rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url),
            );
            match tried {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("chromedriver on {url}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        Browser {
            rt,
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap();
    }

    /// Runs `js` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, js: &str) -> Value {
        self.rt
            .block_on(self.c().execute(js, Vec::new()))
            .unwrap_or_else(|e| panic!("{js}: {e}"))
    }

    /// Clicks the element `css` finds. A live page redraws as events arrive, so an element
    /// found may be replaced before the click lands ("stale element"): it is found again.
    pub fn click(&self, css: &str) {
        self.rt.block_on(async {
            for attempt in 1.. {
                let el = self
                    .c()
                    .find(Locator::Css(css))
                    .await
                    .unwrap_or_else(|e| panic!("{css}: {e}"));
                match el.click().await {
                    Ok(()) => return,
                    Err(e) if attempt < 5 && e.to_string().contains("stale element") => {}
                    Err(e) => panic!("click {css}: {e}"),
                }
            }
        })
    }

    /// Text of an open alert, confirm or prompt, if one is open.
    pub fn dialog(&self) -> Option<String> {
        self.rt.block_on(self.c().get_alert_text()).ok()
    }

    /// Waits (up to `secs`) until `js` returns true; false if it never does.
    pub fn wait_for(&self, js: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.eval(js) == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Saves a PNG of the whole page under [`screenshots`].
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let h = self.eval("return Math.ceil(document.documentElement.scrollHeight)");
        let h = h.as_u64().unwrap_or(1000).clamp(400, 6000) as u32;
        self.rt.block_on(self.c().set_window_size(1280, h)).unwrap();
        let png = self.rt.block_on(self.c().screenshot()).unwrap();
        let path = screenshots().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
