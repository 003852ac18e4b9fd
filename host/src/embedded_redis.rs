//! The embedded default: with no `REDIS_URL`, the host runs its own
//! `redis-server` on loopback, with the append-only file on and data in
//! `data_dir`, restarts it if it dies, and stops it on exit.
//!
//! The child gets `PR_SET_PDEATHSIG`, so even a `kill -9` of the host stops
//! it; a stale instance from an older run (its port is in `redis.port`) is
//! shut down first, because two servers must never share one AOF.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub struct EmbeddedRedis {
    pub url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

const INSTALL_HINT: &str = "redis-server is not installed: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL to use an existing Redis";

impl EmbeddedRedis {
    pub async fn start(data_dir: &Path) -> Result<EmbeddedRedis> {
        if which_redis().is_none() {
            bail!("{INSTALL_HINT}");
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        shutdown_stale(&data_dir).await;
        let port = free_port()?;
        let url = format!("redis://127.0.0.1:{port}");
        let child = spawn(&data_dir, port)?;
        std::fs::write(data_dir.join("redis.port"), port.to_string())?;
        wait_ready(&url).await?;
        tracing::info!(port, dir = %data_dir.display(), "embedded redis-server started");

        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(child, data_dir, port, url.clone(), stopped));
        Ok(EmbeddedRedis { url, stop, task })
    }

    /// Asks redis-server to shut down cleanly (flushing the AOF) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn which_redis() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(data_dir: &Path, port: u16) -> Result<Child> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--protected-mode", "yes"])
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

async fn shutdown_command(url: &str) {
    if let Ok(client) = redis::Client::open(url)
        && let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), redis::cmd("SHUTDOWN").query_async::<()>(&mut c)).await;
    }
}

async fn shutdown_stale(data_dir: &Path) {
    let Ok(port) = std::fs::read_to_string(data_dir.join("redis.port")) else { return };
    let url = format!("redis://127.0.0.1:{}", port.trim());
    shutdown_command(&url).await;
}

/// Restarts redis-server if it exits on its own; stops it when asked.
async fn supervise(mut child: Child, data_dir: PathBuf, port: u16, url: String, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::error!(?status, "embedded redis-server exited; restarting it");
                tokio::time::sleep(Duration::from_millis(200)).await;
                match spawn(&data_dir, port) {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart redis-server");
                        return;
                    }
                }
            }
            _ = stopped.changed() => {
                shutdown_command(&url).await;
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                let _ = std::fs::remove_file(data_dir.join("redis.port"));
                return;
            }
        }
    }
}
