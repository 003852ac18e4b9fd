//! `wharf`: runs microservice business logic as WebAssembly components on Redis.
//!
//! # Layout
//!
//! - `http/`: the gateway (`server`), the admin API, authentication and the
//!   rate limit, the API document, whole lists streamed page by page.
//! - `engine/`: wasmtime: load and link a component, the registry of the
//!   versions serving, a fresh instance per call (`state`: one context per
//!   capability) or a kept one (`reuse`), standard `wasi:http` components
//!   mounted at a path (`proxy`), the sandbox's refusals.
//! - `capability/`: what components import, one unit each (link, grant,
//!   per-call context, background work): `kv` (with its read cache),
//!   `outbox`, `events`, `calls`, `log`, `config`.
//! - `streams/`: consumer groups reading for components, dead letters, trim.
//! - `deploy/`: putting a version into service, the private artifacts
//!   directory, and the `wharf deploy|components|rollback` client.
//! - `storage/`: the Redis connections (one server or a cluster), Wharf's key layout and its partitions.
//! - `dev/`: `serve --watch` (`build`: a component's language says how it
//!   builds), `wharf new` in Rust, Python or JavaScript, the embedded
//!   `redis-server`.
//! - `config.rs` (settings), `telemetry/` (logs, request ids, metrics, OTLP spans),
//!   `log_writer.rs` (log lines written out in batches),
//!   `background.rs` (the supervisor of every long-lived task, and the
//!   runtime events run on, behind requests).
//!
//! One request: `http::server` -> `engine::runtime` (an instance) ->
//! the component -> `capability::kv` -> `storage` -> Redis. One event:
//! `streams` (a reader) -> `engine::runtime` -> the component -> capabilities.

mod background;
mod capability;
mod config;
mod deploy;
mod dev;
mod engine;
mod http;
mod log_writer;
mod storage;
mod streams;
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::engine::runtime::Runtime;

#[derive(Parser)]
#[command(name = "wharf", version, about = "Runs business logic as hot-swappable WebAssembly components on Redis")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the components named in the configuration.
    Serve {
        /// Configuration file (default: ./wharf.toml if it exists).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Dev mode: rebuild and hot-swap a component when its source under
        /// components/<name>/ changes.
        #[arg(long)]
        watch: bool,
    },
    /// Deploys FILE as component NAME on a running host, hot.
    Deploy {
        name: String,
        file: PathBuf,
        /// Wait up to this many seconds until every live host runs the new
        /// version; fail naming those that do not.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
        /// Try it as a canary first: it serves this share of requests and
        /// events on every host (10%), and the fleet promotes it or rolls it
        /// back by itself after `--window`. With `--wait`, waits for that.
        #[arg(long, value_name = "PERCENT")]
        canary: Option<String>,
        /// How long a canary is compared with the current version.
        #[arg(long, value_name = "SECONDS", default_value = "60", requires = "canary")]
        window: u64,
        #[command(flatten)]
        remote: deploy::cli::Remote,
    },
    /// Lists the components of a running host.
    Components {
        #[command(flatten)]
        remote: deploy::cli::Remote,
    },
    /// Creates components/NAME: a component ready to build and deploy, in Rust (a crate), Python or JavaScript.
    New {
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: dev::build::Lang,
        /// The workspace root (where Cargo.toml and components/ are).
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
    },
    /// Puts back the version of NAME deployed before the current one.
    Rollback {
        name: String,
        /// As for `deploy`: wait until every live host runs the version.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
        #[command(flatten)]
        remote: deploy::cli::Remote,
    },
}

fn main() -> std::process::ExitCode {
    let _flush_logs_on_exit = telemetry::init_logs();
    let cli = Cli::parse();
    // Errors end the process with one readable line, not a debug dump.
    match run_command(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every connection is a file descriptor, and a soft limit of 1024 is still
/// common: use all the hard limit allows, as most servers do.
fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn run_command(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve { config, watch } => {
            // Before the runtimes: its exporter's client blocks, and it is
            // dropped (the last spans sent) after they end.
            let _spans = telemetry::traces::init()?;
            let background = background::runtime()?;
            runtime.block_on(serve(config, watch, background.handle().clone()))
        }
        Command::Deploy { name, file, wait, canary: None, remote, .. } => {
            runtime.block_on(deploy::cli::deploy(&remote, &name, &file, wait))
        }
        Command::Deploy { name, file, wait, canary: Some(share), window, remote } => {
            let share = deploy::canary::parse_share(&share).map_err(anyhow::Error::msg)?;
            runtime.block_on(deploy::cli::canary(&remote, &name, &file, share, window, wait))
        }
        Command::Components { remote } => runtime.block_on(deploy::cli::components(&remote)),
        Command::New { name, lang, workspace } => dev::scaffold::new_component(&workspace, &name, lang),
        Command::Rollback { name, wait, remote } => runtime.block_on(deploy::cli::rollback(&remote, &name, wait)),
    }
}

async fn serve(config_path: Option<PathBuf>, watch: bool, background: tokio::runtime::Handle) -> Result<()> {
    let config = Config::load(config_path.as_deref())?;
    raise_fd_limit();
    let (embedded, redis_url) = match &config.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let redis = dev::embedded_redis::EmbeddedRedis::start(&config.data_dir).await?;
            let url = redis.url.clone();
            (Some(redis), url)
        }
    };
    // Dev mode looks for sources beside the configuration file.
    let workspace = match &config_path {
        Some(p) => p.canonicalize()?.parent().map(PathBuf::from).unwrap_or_default(),
        None => std::env::current_dir()?,
    };
    let result = run(&config, &redis_url, watch.then_some(workspace), background).await;
    if let Some(redis) = embedded {
        redis.stop().await;
    }
    result
}

async fn run(
    config: &Config,
    redis_url: &str,
    watch_workspace: Option<PathBuf>,
    background: tokio::runtime::Handle,
) -> Result<()> {
    tracing::info!(redis = %storage::redact(redis_url), "using redis");
    // A bad key set stops the host before it serves or consumes anything.
    let auth = Arc::new(http::auth::Authenticator::new(&config.auth)?);
    let mut redis = storage::Store::open(
        redis_url,
        config.redis_cluster,
        config.limits.redis_timeout(),
        &config.redis_tls,
        background.clone(),
    )?;
    redis.replicated = config.replica_wait();
    let streams = &config.streams;
    let counts =
        storage::stream_partition::Counts::new(streams.partitions, streams.partitions_of.clone().into_iter().collect());
    redis.stream_counts = std::sync::Arc::new(counts);
    let rt = Runtime::new(redis, config.limits.clone())?;

    // Every task stops through the supervisor, and shutdown waits for each,
    // the readers a swap removed included.
    let supervisor = background::Supervisor::new(background);
    let consumer_name = format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple());
    let deployer = deploy::Deployer::new(rt.clone(), config.clone(), consumer_name, supervisor.clone())?;
    deployer.start().await?;
    // The fleet: follow the deployments every host shares, and say what runs here.
    let follower: std::sync::Arc<dyn deploy::fleet::Apply> = std::sync::Arc::new(deploy::Follower(deployer.clone()));
    let (fleet, to) = (deployer.fleet.clone(), follower.clone());
    supervisor.worker("fleet watch", move |stop| fleet.clone().watch(to.clone(), stop));
    let follower_for_canaries = follower.clone();
    let (fleet, to, beat_rt) = (deployer.fleet.clone(), follower, rt.clone());
    supervisor.worker("fleet heartbeat", move |stop| {
        let rt = beat_rt.clone();
        fleet.clone().beat_until(to.clone(), move || rt.registry.snapshot().components.keys().cloned().collect(), stop)
    });

    rt.start_workers(&supervisor, Duration::from_millis(config.streams.delayed_poll_ms));
    // On the gateway's runtime: the figure must stay current while events are busiest.
    let backlog = streams::backlog::Backlog::new(config.limits.max_backlog);
    let (backlog_rt, measured) = (rt.clone(), backlog.clone());
    supervisor.worker("backlog monitor", move |stop| streams::backlog::run(backlog_rt.clone(), measured.clone(), stop));
    let jwks = auth.clone();
    supervisor.worker("jwks reloader", move |stop| http::auth::watch_jwks(jwks.clone(), stop));
    let (fleet, to) = (deployer.fleet.clone(), follower_for_canaries);
    supervisor.worker("canary judge", move |stop| fleet.clone().judge_canaries(to.clone(), stop));
    // On a cluster: new connections when a failover changes the primaries.
    let topology = rt.redis.clone();
    supervisor.background_worker("cluster topology", move |stop| {
        storage::topology::watch(topology.clone(), storage::topology::EVERY, stop)
    });
    let (trim_rt, trim_cfg) = (rt.clone(), config.streams.clone());
    supervisor
        .background_worker("stream trimmer", move |stop| streams::trim::run(trim_rt.clone(), trim_cfg.clone(), stop));

    if let Some(workspace) = watch_workspace {
        let watched: Vec<dev::watch::Watched> = config
            .components
            .iter()
            .filter_map(|(name, c)| {
                let dir = workspace.join("components").join(name);
                let lang = dev::build::Lang::of(&dir)?;
                Some(dev::watch::Watched { name: name.clone(), dir, lang, wasm: c.wasm.clone() })
            })
            .collect();
        let (d, shutdown) = (deployer.clone(), supervisor.child_token());
        supervisor.spawn(async move {
            if let Err(e) = dev::watch::run(d, workspace, watched, shutdown).await {
                tracing::error!(error = %format!("{e:#}"), "watch mode stopped");
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let admin_listener = match config.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for the admin API on {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(address = %listener.local_addr()?, "wharf is serving");
    match (&config.admin_token, &admin_listener) {
        (None, _) => tracing::info!("admin API off (no WHARF_ADMIN_TOKEN)"),
        (Some(_), Some(l)) => tracing::info!(address = %l.local_addr()?, "admin API on its own listener"),
        (Some(_), None) => {}
    }
    if !auth.enabled() && config.allow_anonymous && !config.listen.ip().is_loopback() {
        tracing::warn!(address = %config.listen, "authentication is off on a non-loopback address (WHARF_ALLOW_ANONYMOUS)");
    }
    if !auth.enabled() {
        tracing::warn!(
            "authentication is off: every caller acts as admin; set WHARF_API_KEYS, WHARF_JWT_SECRET or WHARF_JWT_JWKS_FILE"
        );
    }
    let gw = Arc::new(http::gateway::Gateway {
        rt: rt.clone(),
        deployer: deployer.clone(),
        admin_token: config.admin_token.clone(),
        auth,
        admin_failures: Default::default(),
        metrics_admin_only: config.metrics_admin_only,
        admin_apart: admin_listener.is_some(),
        connections: Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections)),
        refusal_log: capability::budget::Budget::once_per(Duration::from_secs(60)),
        backlog: backlog.clone(),
        stopping: supervisor.child_token(),
    });
    if let Some(l) = admin_listener {
        supervisor.spawn(http::server::serve(gw.clone(), l, http::gateway::Surface::Admin, supervisor.child_token()));
    }
    supervisor.spawn(http::server::serve(gw, listener, http::gateway::Surface::Public, supervisor.child_token()));

    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests and events in flight");
    supervisor.stop().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "wharf".into())
}
