//! Test harness: a private `redis-server` on a free loopback port and a real
//! `wharf` process in front of it, talked to over HTTP like any client.
//! Nothing here touches a Redis it did not start.
//!
//! - `redis_server`: the private `redis-server` (plain, TLS, with an ACL user);
//! - `redis_cluster`: a private Redis Cluster, for the tests run on one;
//! - `host`: a `wharf serve` process and its config;
//! - `client`: HTTP to a host;
//! - `layout`: where the host keeps a component's key;
//! - `otlp`: a small OTLP/HTTP collector, for the spans a host exports;
//! - `tls`: throwaway certificates;
//! - `browser`: headless Chromium over WebDriver, for the console.

#![allow(dead_code)]

pub mod browser;
mod client;
mod host;
pub mod layout;
pub mod otlp;
mod redis_cluster;
mod redis_server;
mod tls;

pub use client::{Client, Resp, load};
pub use host::{Options, Wharf};
pub use redis_cluster::Conn;
pub use redis_server::TestRedis;
pub use tls::make_certificates;

use std::path::{Path, PathBuf};

use redis::Commands;

/// Raises this process's open-file limit to its hard limit (children inherit
/// it): some tests hold thousands of connections.
pub fn raise_fd_limit() -> u64 {
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A new, empty directory of its own (`tempfile`: a unique name, created
/// 0700). Kept after the test: its owner removes it, or leaves it (a failed
/// test's logs) for whoever looks.
pub fn scratch_dir(tag: &str) -> PathBuf {
    tempfile::Builder::new().prefix(&format!("wharf-test-{tag}-")).tempdir().unwrap().keep()
}

/// Where the built components are. Unless `WHARF_WASM_DIR` names a
/// directory built already, the first call builds them: the test-only
/// components of `host/tests/components` (`build_test_fixtures`), then the
/// services (`build_components`), both defined once in `scripts/lib.sh`,
/// which the scripts share. So `cargo test --test it` needs nothing run first.
pub fn wasm_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let dir = match std::env::var_os("WHARF_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            BUILT.get_or_init(build_components);
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/component")
        }
    };
    assert!(
        dir.join("inventory.wasm").exists(),
        "components not built in {}: run scripts/test.sh, which builds them first",
        dir.display()
    );
    dir
}

/// Builds every component the tests load, once per test run. The fixtures
/// go first: they leave `inventory.wasm` built with a feature, and the
/// services' build puts the real one back.
fn build_components() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .args(["-c", "source scripts/lib.sh && build_test_fixtures && build_components"])
        .current_dir(&root)
        .output()
        .expect("running bash to build the components");
    assert!(
        out.status.success(),
        "building the components failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The keys matching `pattern`, by SCAN: `KEYS` is a dangerous command,
/// which the least-privilege ACL user of the secured tests may not run.
/// On a cluster, every primary's keys.
pub fn keys(c: &mut Conn, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = match c {
        Conn::Node(c) => c.scan_match(pattern).unwrap().collect::<Result<_, _>>().unwrap(),
        Conn::Cluster(_, primaries) => primaries
            .iter()
            .flat_map(|p| {
                let mut node = redis::Client::open(format!("redis://127.0.0.1:{p}")).unwrap().get_connection().unwrap();
                node.scan_match::<_, String>(pattern).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
            })
            .collect(),
    };
    keys.sort();
    keys
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A tiny deterministic PRNG (xorshift64*), seeded per test and printed so a
/// failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("WHARF_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("WHARF_TEST_SEED={seed}");
        Rng(seed)
    }
    pub fn with_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
