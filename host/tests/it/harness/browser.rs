//! Headless Chromium driven over WebDriver: a private `chromedriver` on a
//! free loopback port, and a window of 1280x800. Debian's `chromium` and
//! `chromium-driver` packages (`scripts/test.sh` installs them).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::free_port;

pub struct Browser {
    pub client: Client,
    driver: Child,
    /// The driver's and the browser's temporary files (`TMPDIR`), removed
    /// with them.
    tmp: std::path::PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let tmp = super::scratch_dir("chromium");
        // A process group of its own: killed as one, chromedriver's
        // Chromium goes with it, whether or not the test closed its session.
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin} ({e}): run scripts/test.sh, which installs chromium and chromium-driver"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        let args =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"];
        caps.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromium session through chromedriver");
        Browser { client, driver, tmp }
    }

    /// Waits until `css` matches an element whose text satisfies `ok`; its text.
    pub async fn wait_text(&self, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = e.text().await
                && ok(&text)
            {
                return text;
            }
            if Instant::now() > until {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} never matched in {timeout:?}; the page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the window as `path` (a PNG).
    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: a plain syscall; the group is the driver's own (its pid).
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
