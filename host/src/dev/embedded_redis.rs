//! The embedded default: with no `REDIS_URL`, the host runs its own
//! `redis-server`, with the append-only file on and data in `data_dir`,
//! restarts it if it dies, and stops it on exit.
//!
//! It listens on a unix socket in the private data directory
//! (`redis.sock`, 0700) and on no TCP port: no other local user can reach
//! it. The child gets `PR_SET_PDEATHSIG`, so even a `kill -9` of the host
//! stops it; a stale instance from an older run is shut down first, because
//! two servers must never share one AOF, but only one that answers on our
//! socket (or the port an older version recorded) *and* keeps its data in
//! this directory: never some other server on a reused port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub struct EmbeddedRedis {
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

const INSTALL_HINT: &str = "redis-server is not installed: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL to use an existing Redis";

impl EmbeddedRedis {
    pub async fn start(data_dir: &Path) -> Result<EmbeddedRedis> {
        if which_redis().is_none() {
            bail!("{INSTALL_HINT}");
        }
        crate::deploy::artifacts::ensure_private_dir(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let socket = data_dir.join("redis.sock");
        // sun_path holds 108 bytes, its terminating NUL included.
        if socket.as_os_str().len() > 107 {
            bail!("{} is too long for a unix socket path: use a shorter WHARF_DATA_DIR", socket.display());
        }
        shutdown_stale(&data_dir).await;
        let url = format!("redis+unix://{}", socket.display());
        let child = spawn(&data_dir)?;
        wait_ready(&url).await?;
        tracing::info!(socket = %socket.display(), "embedded redis-server started");

        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(child, data_dir, url.clone(), stop.clone()));
        Ok(EmbeddedRedis { url, stop, task })
    }

    /// Asks redis-server to shut down cleanly (flushing the AOF) and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn which_redis() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file())
}

fn spawn(data_dir: &Path) -> Result<Child> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", "0", "--unixsocketperm", "700", "--protected-mode", "yes"])
        .arg("--unixsocket")
        .arg(data_dir.join("redis.sock"))
        .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
        .arg("--dir")
        .arg(data_dir)
        .args(["--logfile", "redis.log", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches only this child process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().context("starting redis-server")
}

async fn wait_ready(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    for _ in 0..200 {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("embedded redis-server did not answer on {url} within 10 s (see its redis.log)")
}

/// Asks the server at `url` to shut down (flushing its AOF), if it keeps its
/// data in `data_dir`: whatever else answers there is not ours to stop.
async fn shutdown_ours(url: &str, data_dir: &Path) {
    let Ok(client) = redis::Client::open(url) else { return };
    let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
    else {
        return;
    };
    let dir = tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("CONFIG").arg("GET").arg("dir").query_async::<(String, String)>(&mut c),
    )
    .await;
    match dir {
        Ok(Ok((_, dir))) if Path::new(&dir) == data_dir => {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), redis::cmd("SHUTDOWN").query_async::<()>(&mut c)).await;
        }
        _ => {
            tracing::warn!(url = %crate::storage::redact(url), "a server answers there but does not keep its data in our data directory; leaving it alone")
        }
    }
}

async fn shutdown_stale(data_dir: &Path) {
    shutdown_ours(&format!("redis+unix://{}", data_dir.join("redis.sock").display()), data_dir).await;
    // Versions before the unix socket listened on the port recorded here.
    if let Ok(port) = std::fs::read_to_string(data_dir.join("redis.port")) {
        shutdown_ours(&format!("redis://127.0.0.1:{}", port.trim()), data_dir).await;
        let _ = std::fs::remove_file(data_dir.join("redis.port"));
    }
}

/// Restarts redis-server if it exits on its own; stops it when asked.
async fn supervise(mut child: Child, data_dir: PathBuf, url: String, stopped: CancellationToken) {
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::error!(?status, "embedded redis-server exited; restarting it");
                tokio::time::sleep(Duration::from_millis(200)).await;
                match spawn(&data_dir) {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart redis-server");
                        return;
                    }
                }
            }
            _ = stopped.cancelled() => {
                shutdown_ours(&url, &data_dir).await;
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}
