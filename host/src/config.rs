//! Configuration: `wharf.toml` plus environment overrides.
//!
//! The file is optional: every setting has a default, so `wharf serve` with
//! no file serves the components named on the command line or in `WHARF_*`
//! variables. Nothing secret lives in code; secrets come from the file or env.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::storage::RedisTls;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on (`WHARF_LISTEN`).
    pub listen: SocketAddr,
    /// Redis to use (`REDIS_URL`). None: start and supervise our own redis-server.
    pub redis_url: Option<String>,
    /// Certificates for a `rediss://` URL.
    pub redis_tls: RedisTls,
    /// `REDIS_URL` names a node of a Redis Cluster (`WHARF_REDIS_CLUSTER`).
    /// Not needed for a `redis+cluster://` URL or a list of URLs, which say
    /// so themselves (`storage::connection::cluster_seeds`).
    pub redis_cluster: bool,
    /// When a write counts as done (`WHARF_REDIS_DURABILITY`): `local`,
    /// once the primary has it (the default); `replicated`, once a replica
    /// has it too. Redis replicates after it answers, so a primary that dies
    /// can lose writes it acknowledged; with `replicated`, a request or an
    /// event that wrote waits for a replica (`WAIT`, at most
    /// `redis_replica_wait_ms`) before it is answered or acknowledged, and
    /// is answered 503 (the event retried) if none confirms in time.
    pub redis_durability: Durability,
    /// How long `replicated` waits for a replica.
    pub redis_replica_wait_ms: u64,
    /// Where the embedded Redis keeps its append-only file, and where deployed
    /// component versions are kept (`WHARF_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Bearer token of the admin API (`WHARF_ADMIN_TOKEN`), 32+ characters.
    /// None: admin API off.
    pub admin_token: Option<String>,
    /// A listener of its own for the admin API (`WHARF_ADMIN_LISTEN`, for
    /// example loopback only); the public listener then has no `/admin`.
    pub admin_listen: Option<SocketAddr>,
    /// `GET /metrics` wants the admin token too (`WHARF_METRICS_ADMIN_ONLY`).
    pub metrics_admin_only: bool,
    /// With authentication off every caller is admin: the host then refuses
    /// a non-loopback `listen` unless this says so (`WHARF_ALLOW_ANONYMOUS`).
    pub allow_anonymous: bool,
    /// A component without `[components.<name>.grants]` gets nothing beyond
    /// its own namespace (true) instead of what its manifest declares (false,
    /// the development default). Env `WHARF_REQUIRE_GRANTS`.
    pub require_grants: bool,
    pub limits: Limits,
    pub streams: Streams,
    pub auth: Auth,
    pub components: BTreeMap<String, ComponentConfig>,
}

/// `redis_durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Local,
    Replicated,
}

impl Config {
    /// How long a call that wrote waits for a replica; None: it does not.
    pub fn replica_wait(&self) -> Option<std::time::Duration> {
        (self.redis_durability == Durability::Replicated)
            .then(|| std::time::Duration::from_millis(self.redis_replica_wait_ms))
    }
}

/// Subjects travel to components in a header: 1-128 visible ASCII characters.
pub fn is_valid_subject(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Who may call the public API. With no API key and no JWT secret,
/// authentication is off and every caller acts as `admin` (a warning says
/// so at start-up): that is the local default, never a shipped secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// API keys (sent as `Authorization: Bearer <key>` or `X-Api-Key`), each
    /// with its role and subject. Env `WHARF_API_KEYS=key:role:subject,...`.
    pub api_keys: BTreeMap<String, ApiKey>,
    /// HS256 secret for JWTs carrying `sub`, `role` and `exp` (`WHARF_JWT_SECRET`).
    pub jwt_hs256_secret: Option<String>,
    /// A JWKS file (JSON Web Key Set) of RSA public keys: RS256 JWTs signed
    /// by an identity provider, picked by their `kid` (`WHARF_JWT_JWKS_FILE`).
    pub jwt_jwks_file: Option<PathBuf>,
    /// How often the JWKS file is read again, so rotated keys are picked up
    /// without a restart (`WHARF_JWT_JWKS_POLL_MS`).
    pub jwt_jwks_poll_ms: u64,
    /// When set, a JWT must carry this `iss` (`WHARF_JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// When set, a JWT's `aud` must include this (`WHARF_JWT_AUDIENCE`);
    /// unset, `aud` is not checked.
    pub jwt_audience: Option<String>,
    /// Requests a client may make per second, shared by every host through
    /// Redis (0: no limit; `WHARF_RATE_LIMIT_PER_SECOND`).
    pub rate_limit_per_second: f64,
    /// Requests a client may make at once before the rate applies
    /// (`WHARF_RATE_LIMIT_BURST`).
    pub rate_limit_burst: u32,
    /// While Redis cannot answer the rate limit: refuse (true, 503) or let
    /// requests through (false) (`WHARF_RATE_LIMIT_FAIL_CLOSED`).
    pub rate_limit_fail_closed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// `admin` or `customer`.
    pub role: String,
    /// Who this key is: recorded on what they create (orders).
    pub subject: String,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            api_keys: BTreeMap::new(),
            jwt_hs256_secret: None,
            jwt_jwks_file: None,
            jwt_jwks_poll_ms: 10_000,
            jwt_issuer: None,
            jwt_audience: None,
            rate_limit_per_second: 0.0,
            rate_limit_burst: 20,
            rate_limit_fail_closed: false,
        }
    }
}

impl Auth {
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt_hs256_secret.is_some() || self.jwt_jwks_file.is_some()
    }
}

/// The roles components know.
pub const ROLES: [&str; 2] = ["admin", "customer"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body; larger gets 413.
    pub body_bytes: usize,
    /// Time a client has to send the request headers.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send its whole body once the headers are in
    /// (408 past it): a body trickled in a byte at a time holds nothing long.
    pub body_timeout_ms: u64,
    /// Connections open at once; past it a new one gets 503 and is closed.
    pub max_connections: usize,
    /// Largest value a component may write with `kv` (`invalid` past it).
    pub value_bytes: usize,
    /// Largest event payload a component may publish (`invalid` past it).
    pub event_bytes: usize,
    /// Log lines one component may write per second on this host; past it
    /// lines are dropped and counted (0: no limit).
    pub log_lines_per_second: u32,
    /// Events one component may publish per second on this host with
    /// `events.publish`/`publish-after`; past it `invalid` (0: no limit).
    pub publishes_per_second: u32,
    /// Deadline of one component call (request or event).
    pub call_timeout_ms: u64,
    /// Deadline of one host-capability call (one Redis round trip).
    pub redis_timeout_ms: u64,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Most component instances alive at once (pooling allocator slots).
    /// 0: sized to the machine, so that every instance at `memory_bytes`
    /// fits in its memory (at most 1000, at least 64).
    pub max_instances: u32,
    /// Values `batch.get-many-cached` may keep in this host (0: no cache).
    pub read_cache_entries: usize,
    /// Events waiting in the streams this host's components read (not yet
    /// delivered, or not yet acknowledged) past which writes to components
    /// that publish wait, then are answered 503 with Retry-After (0: never). See
    /// `streams::backlog`. The default, 100, keeps the time from an order's
    /// 201 to its completion at about 30 ms at the 99th percentile on this
    /// kind of machine even at saturation. A bound of 200 settles 1.04x the
    /// orders, with twice the p99 (`scripts/bench.sh latency`,
    /// `docs/PERFORMANCE.md`).
    pub max_backlog: u64,
    /// How long a write held back by `max_backlog` waits for the backlog to
    /// fall before it is answered 503 (`streams::backlog`). A second is
    /// several times what a full backlog takes to drain, and well inside a
    /// client's timeout. 0: answer at once.
    pub backlog_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Streams {
    /// XREADGROUP BLOCK time.
    pub block_ms: u64,
    /// XREADGROUP COUNT.
    pub batch: usize,
    /// Events handled at once per subscription.
    pub concurrency: usize,
    /// An event pending this long is claimed again. Must exceed
    /// `limits.call_timeout_ms`, so a running handler's event is never handed
    /// to a second consumer.
    pub claim_idle_ms: u64,
    /// Deliveries before an event goes to the dead-letter stream.
    pub max_attempts: u32,
    /// Wait before the first retry of an event whose handler failed or asked
    /// to retry; it doubles with each attempt.
    pub retry_base_ms: u64,
    /// The longest wait between two attempts.
    pub retry_max_ms: u64,
    /// How often due delayed events are moved into their streams.
    pub delayed_poll_ms: u64,
    /// Trim a stream once it is longer than this (0: never by length). Only
    /// entries every group has acknowledged are trimmed.
    pub trim_max_len: u64,
    /// Trim acknowledged entries older than this (0: never by age).
    pub trim_max_age_ms: u64,
    /// How often streams are checked for trimming.
    pub trim_interval_ms: u64,
    /// Partitions of a stream the first time it is used (then recorded in
    /// Redis and kept: `storage::stream_partition`). 0: one per primary of a
    /// cluster, so each primary takes a share; one on a single Redis, where
    /// more would only add readers.
    pub partitions: u16,
    /// The partitions of named streams, over `partitions`.
    pub partitions_of: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's `.wasm`, relative to the config file.
    pub wasm: PathBuf,
    /// Values the component reads through `config.get`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What the operator allows it. None: it gets what its manifest declares
    /// (the development default; wharf warns).
    pub grants: Option<Grants>,
    /// Calls one instance may serve, one after another (`engine::reuse`);
    /// 0: a fresh instance per call. For interpreters (Python, JavaScript),
    /// whose start-up is most of a call; it trades isolation for speed.
    #[serde(default)]
    pub instance_reuse: u32,
    /// Which calls `instance_reuse` keeps instances for; the others get a
    /// fresh instance each.
    #[serde(default)]
    pub instance_reuse_for: ReuseFor,
    /// Where a standard `wasi:http` component serves: this path and
    /// everything under it (default `/<name>`). Ignored for a Wharf component,
    /// whose manifest names its routes.
    pub mount: Option<String>,
}

/// Which calls of a component `instance_reuse` applies to. Requests and
/// events often hold different data: a catalog's requests carry public
/// products while its events carry customers' orders, so its requests may
/// share instances while each event keeps one of its own.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReuseFor {
    /// Requests and events.
    #[default]
    All,
    /// Requests; every event, and every call another component makes while
    /// handling one, gets a fresh instance.
    Requests,
    /// Events; every request gets a fresh instance.
    Events,
}

impl ReuseFor {
    /// Whether a call serving `entry` runs in a kept instance.
    pub fn serves(self, entry: Entry) -> bool {
        match self {
            ReuseFor::All => true,
            ReuseFor::Requests => entry == Entry::Request,
            ReuseFor::Events => entry == Entry::Event,
        }
    }
}

/// What a call serves: the two kinds `instance_reuse_for` names. A call
/// from another component serves what its caller serves, so an event's
/// data never reaches an instance kept for requests that way either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// An HTTP request.
    Request,
    /// A stream event.
    Event,
}

/// A component's capabilities, granted by the operator. Beyond these it has
/// its own key-value namespace, logging and its config; WASI gives it no
/// files, network or environment. Its manifest must stay within the grants
/// or it is not loaded, and a call outside them is refused and logged.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Streams it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Streams it may consume.
    #[serde(default)]
    pub consume: Vec<String>,
    /// Components it may call.
    #[serde(default)]
    pub call: Vec<String>,
    /// Linear memory one of its instances may use (`limits.memory_bytes` still applies).
    pub memory_bytes: Option<usize>,
    /// Deadline of one call into it, request or event (`limits.call_timeout_ms` still applies).
    pub timeout_ms: Option<u64>,
    /// Hosts (`host:port`) a mounted `wasi:http` component may send HTTP
    /// requests to; none by default.
    #[serde(default)]
    pub outbound_http: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            redis_url: None,
            redis_tls: RedisTls::default(),
            redis_cluster: false,
            redis_durability: Durability::Local,
            redis_replica_wait_ms: 1000,
            require_grants: false,
            admin_token: None,
            admin_listen: None,
            metrics_admin_only: false,
            allow_anonymous: false,
            data_dir: PathBuf::from("data"),
            limits: Limits::default(),
            streams: Streams::default(),
            auth: Auth::default(),
            components: BTreeMap::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 1024 * 1024,
            header_read_timeout_ms: 5_000,
            body_timeout_ms: 30_000,
            max_connections: 10_000,
            value_bytes: 1024 * 1024,
            event_bytes: 1024 * 1024,
            log_lines_per_second: 20_000,
            publishes_per_second: 20_000,
            call_timeout_ms: 10_000,
            redis_timeout_ms: 2_000,
            memory_bytes: 64 * 1024 * 1024,
            max_instances: 0,
            read_cache_entries: 10_000,
            max_backlog: 100,
            backlog_wait_ms: 1_000,
        }
    }
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            block_ms: 1_000,
            batch: 64,
            concurrency: 32,
            claim_idle_ms: 30_000,
            max_attempts: 5,
            retry_base_ms: 250,
            retry_max_ms: 10_000,
            delayed_poll_ms: 100,
            trim_max_len: 100_000,
            trim_max_age_ms: 0,
            trim_interval_ms: 10_000,
            partitions: 0,
            partitions_of: BTreeMap::new(),
        }
    }
}

impl Limits {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

impl Streams {
    /// How long to wait before delivering an event again after its
    /// `attempt`-th delivery failed: `retry_base_ms`, doubling, capped.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let ms = self.retry_base_ms.saturating_mul(1u64 << doublings).min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

/// The machine's memory in bytes (0 if unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64)
}

/// Pool slots such that every instance at its memory limit fits in the
/// machine's memory, between 64 and 1000 (1000 when the memory is unknown).
fn instances_that_fit(memory: u64, per_instance: usize) -> u32 {
    if memory == 0 {
        return 1_000;
    }
    (memory / per_instance.max(1) as u64).clamp(64, 1_000) as u32
}

impl Config {
    /// Reads `path` if given (or `wharf.toml` if it exists), then applies the
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let default_path = Path::new("wharf.toml");
        let path = path.or_else(|| default_path.exists().then_some(default_path));
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let mut config: Config =
                    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                let base = path.parent().unwrap_or(Path::new("."));
                for c in config.components.values_mut() {
                    c.wasm = base.join(&c.wasm);
                }
                config.data_dir = base.join(&config.data_dir);
                let tls = &mut config.redis_tls;
                for path in [&mut config.auth.jwt_jwks_file, &mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                    .into_iter()
                    .flatten()
                {
                    *path = base.join(&*path);
                }
                config
            }
            None => Config::default(),
        };
        config.apply_env(std::env::vars())?;
        config.validate()?;
        if config.limits.max_instances == 0 {
            config.limits.max_instances = instances_that_fit(physical_memory(), config.limits.memory_bytes);
        }
        Ok(config)
    }

    /// Environment overrides: `WHARF_LISTEN`, `REDIS_URL`, `WHARF_DATA_DIR`, and
    /// `WHARF_<COMPONENT>_<KEY>` for component config (`WHARF_PAYMENT_SETTLE_DELAY_MS`
    /// sets `settle_delay_ms` of `payment`).
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (name, value) in vars {
            match name.as_str() {
                "WHARF_LISTEN" => self.listen = value.parse().with_context(|| format!("WHARF_LISTEN={value}"))?,
                "REDIS_URL" if !value.is_empty() => self.redis_url = Some(value),
                "WHARF_DATA_DIR" => self.data_dir = value.into(),
                "WHARF_REDIS_CLUSTER" => {
                    self.redis_cluster = value.parse().context("WHARF_REDIS_CLUSTER: true or false")?
                }
                "WHARF_REDIS_DURABILITY" => {
                    self.redis_durability = match value.as_str() {
                        "local" => Durability::Local,
                        "replicated" => Durability::Replicated,
                        _ => bail!("WHARF_REDIS_DURABILITY: local or replicated, not {value:?}"),
                    }
                }
                "WHARF_REDIS_REPLICA_WAIT_MS" => {
                    self.redis_replica_wait_ms = value.parse().context("WHARF_REDIS_REPLICA_WAIT_MS")?
                }
                "WHARF_REQUIRE_GRANTS" => {
                    self.require_grants = value.parse().context("WHARF_REQUIRE_GRANTS: true or false")?
                }
                "REDIS_TLS_CA_FILE" if !value.is_empty() => self.redis_tls.ca_file = Some(value.into()),
                "REDIS_TLS_CERT_FILE" if !value.is_empty() => self.redis_tls.cert_file = Some(value.into()),
                "REDIS_TLS_KEY_FILE" if !value.is_empty() => self.redis_tls.key_file = Some(value.into()),
                "WHARF_ADMIN_TOKEN" if !value.is_empty() => self.admin_token = Some(value),
                "WHARF_ADMIN_LISTEN" if !value.is_empty() => {
                    self.admin_listen = Some(value.parse().with_context(|| format!("WHARF_ADMIN_LISTEN={value}"))?)
                }
                "WHARF_METRICS_ADMIN_ONLY" => {
                    self.metrics_admin_only = value.parse().context("WHARF_METRICS_ADMIN_ONLY: true or false")?
                }
                "WHARF_ALLOW_ANONYMOUS" => {
                    self.allow_anonymous = value.parse().context("WHARF_ALLOW_ANONYMOUS: true or false")?
                }
                "WHARF_RATE_LIMIT_FAIL_CLOSED" => {
                    self.auth.rate_limit_fail_closed =
                        value.parse().context("WHARF_RATE_LIMIT_FAIL_CLOSED: true or false")?
                }
                "WHARF_JWT_SECRET" if !value.is_empty() => self.auth.jwt_hs256_secret = Some(value),
                "WHARF_JWT_JWKS_FILE" if !value.is_empty() => self.auth.jwt_jwks_file = Some(value.into()),
                "WHARF_JWT_JWKS_POLL_MS" => {
                    self.auth.jwt_jwks_poll_ms = value.parse().context("WHARF_JWT_JWKS_POLL_MS")?
                }
                "WHARF_JWT_ISSUER" if !value.is_empty() => self.auth.jwt_issuer = Some(value),
                "WHARF_JWT_AUDIENCE" if !value.is_empty() => self.auth.jwt_audience = Some(value),
                "WHARF_API_KEYS" => {
                    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        let mut parts = entry.splitn(3, ':');
                        let (Some(key), Some(role), Some(subject)) = (parts.next(), parts.next(), parts.next()) else {
                            bail!("WHARF_API_KEYS entries are key:role:subject");
                        };
                        let key_config = ApiKey { role: role.to_string(), subject: subject.to_string() };
                        self.auth.api_keys.insert(key.to_string(), key_config);
                    }
                }
                "WHARF_RATE_LIMIT_PER_SECOND" => {
                    self.auth.rate_limit_per_second = value.parse().context("WHARF_RATE_LIMIT_PER_SECOND")?
                }
                "WHARF_READ_CACHE_ENTRIES" => {
                    self.limits.read_cache_entries = value.parse().context("WHARF_READ_CACHE_ENTRIES")?
                }
                "WHARF_MAX_BACKLOG" => self.limits.max_backlog = value.parse().context("WHARF_MAX_BACKLOG")?,
                "WHARF_BACKLOG_WAIT_MS" => {
                    self.limits.backlog_wait_ms = value.parse().context("WHARF_BACKLOG_WAIT_MS")?
                }
                "WHARF_RATE_LIMIT_BURST" => {
                    self.auth.rate_limit_burst = value.parse().context("WHARF_RATE_LIMIT_BURST")?
                }
                _ => {
                    let Some(rest) = name.strip_prefix("WHARF_") else { continue };
                    if let Some((component, key)) = self.component_variable(rest) {
                        let c = self.components.get_mut(&component).expect("a configured component");
                        c.config.insert(key, value);
                    }
                }
            }
        }
        Ok(())
    }

    /// The component and key a `WHARF_<COMPONENT>_<KEY>` variable (`rest` is
    /// what follows `WHARF_`) sets. `WHARF_<COMPONENT>__<KEY>` names the
    /// component exactly; with one `_` the longest matching component name
    /// wins, so `pay` and `pay_ment` never both take `WHARF_PAY_MENT_X`. The
    /// host's own variables are matched before this (use the `__` form for a
    /// component `admin`'s `token`).
    fn component_variable(&self, rest: &str) -> Option<(String, String)> {
        let upper = |c: &str| c.to_uppercase().replace('-', "_");
        if let Some((component, key)) = rest.split_once("__") {
            let name = self.components.keys().find(|c| upper(c) == component)?;
            return (!key.is_empty()).then(|| (name.clone(), key.to_lowercase()));
        }
        self.components
            .keys()
            .filter_map(|c| {
                let key = rest.strip_prefix(&upper(c))?.strip_prefix('_')?;
                (!key.is_empty()).then(|| (c.clone(), key.to_lowercase()))
            })
            .max_by_key(|(c, _)| c.len())
    }

    fn validate(&self) -> Result<()> {
        if self.redis_tls.cert_file.is_some() != self.redis_tls.key_file.is_some() {
            bail!("redis_tls: cert_file and key_file go together");
        }
        if self.redis_tls.is_set() && !self.redis_url.as_deref().is_some_and(|u| u.starts_with("rediss")) {
            bail!("redis_tls is set, but REDIS_URL is not a rediss:// URL");
        }
        match &self.redis_url {
            None if self.redis_cluster => bail!("redis_cluster needs REDIS_URL: the embedded redis-server is one node"),
            None => {}
            Some(url) => {
                crate::storage::connection::cluster_seeds(url, self.redis_cluster)?;
            }
        }
        for (key, k) in &self.auth.api_keys {
            if key.len() < 16 {
                bail!("API key for {} is shorter than 16 characters", k.subject);
            }
            // `#` is kept for JWT subjects (`<iss>#<sub>`): no key can pose as a token's subject.
            if !ROLES.contains(&k.role.as_str()) || !is_valid_subject(&k.subject) || k.subject.contains('#') {
                bail!(
                    "API key for {:?}: role must be one of {ROLES:?}, the subject 1-128 visible characters without #",
                    k.subject
                );
            }
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 32) {
            bail!("admin_token (WHARF_ADMIN_TOKEN) must have at least 32 characters; `openssl rand -hex 32` makes one");
        }
        if self.metrics_admin_only && self.admin_token.is_none() {
            bail!("metrics_admin_only needs admin_token: without it no one could read /metrics");
        }
        if !self.auth.enabled() && !self.allow_anonymous {
            for addr in std::iter::once(self.listen).chain(self.admin_listen) {
                if !addr.ip().is_loopback() {
                    bail!(
                        "authentication is off, so every caller would be admin, and {addr} is not a loopback address: \
                         configure auth (WHARF_API_KEYS, WHARF_JWT_SECRET, WHARF_JWT_JWKS_FILE), listen on loopback, \
                         or set WHARF_ALLOW_ANONYMOUS=true to accept that"
                    );
                }
            }
        }
        if self.auth.jwt_hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            bail!("auth.jwt_hs256_secret must have at least 32 characters");
        }
        if !(self.auth.rate_limit_per_second >= 0.0 && self.auth.rate_limit_per_second.is_finite()) {
            bail!("auth.rate_limit_per_second must be a number >= 0");
        }
        if self.streams.claim_idle_ms <= self.limits.call_timeout_ms {
            bail!(
                "streams.claim_idle_ms ({}) must exceed limits.call_timeout_ms ({}): otherwise a running handler's event is redelivered",
                self.streams.claim_idle_ms,
                self.limits.call_timeout_ms
            );
        }
        if self.streams.retry_base_ms == 0 || self.streams.retry_max_ms < self.streams.retry_base_ms {
            bail!("streams.retry_base_ms must be at least 1 and at most streams.retry_max_ms");
        }
        if self.streams.max_attempts == 0 || self.streams.concurrency == 0 || self.streams.batch == 0 {
            bail!("streams.max_attempts, concurrency and batch must be at least 1");
        }
        let max = crate::storage::stream_partition::MAX;
        if self.streams.partitions > max {
            bail!("streams.partitions must be at most {max} (0: one per cluster primary)");
        }
        for (stream, n) in &self.streams.partitions_of {
            if !crate::storage::is_valid_name(stream) || !(1..=max).contains(n) {
                bail!("streams.partitions_of: {stream:?} = {n}: a stream name and 1 to {max} partitions");
            }
        }
        for (name, c) in &self.components {
            if let Some(g) = &c.grants {
                self.validate_grants(name, g)?;
            }
            if c.instance_reuse == 0 && c.instance_reuse_for != ReuseFor::All {
                bail!(
                    "components.{name}.instance_reuse_for keeps instances only with instance_reuse (calls per instance, e.g. 1000)"
                );
            }
        }
        Ok(())
    }

    /// Grants can only narrow the host's limits: where both set one, the
    /// lower applies (the pool is sized by `limits.memory_bytes`, and
    /// `claim_idle_ms` is checked against `limits.call_timeout_ms`).
    fn validate_grants(&self, name: &str, g: &Grants) -> Result<()> {
        let names = g.publish.iter().chain(&g.consume).chain(&g.call);
        if let Some(bad) = names.into_iter().find(|n| !crate::storage::is_valid_name(n)) {
            bail!("components.{name}.grants: {bad:?} is not a stream or component name (a-z, 0-9, - and _)");
        }
        if g.memory_bytes == Some(0) || g.timeout_ms == Some(0) {
            bail!("components.{name}.grants: memory_bytes and timeout_ms must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_component_config() {
        let mut c: Config = toml::from_str(
            r#"
            [components.payment]
            wasm = "p.wasm"
            config = { settle_delay_ms = "1000" }
            "#,
        )
        .unwrap();
        let env = [
            ("WHARF_PAYMENT_SETTLE_DELAY_MS", "0"),
            ("WHARF_LISTEN", "127.0.0.1:9999"),
            ("REDIS_URL", "redis://127.0.0.1:7000"),
            ("WHARF_UNRELATED", "x"),
        ];
        c.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(c.components["payment"].config["settle_delay_ms"], "0");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:7000"));
        assert_eq!(c.components["payment"].config.len(), 1);
    }

    #[test]
    fn instance_reuse_for_names_a_kind_of_call_and_needs_instance_reuse() {
        let parse = |t: &str| toml::from_str::<Config>(&format!("[components.inventory]\nwasm = \"i.wasm\"\n{t}"));
        let c = parse("instance_reuse = 10\ninstance_reuse_for = \"requests\"").unwrap();
        assert_eq!(c.components["inventory"].instance_reuse_for, ReuseFor::Requests);
        assert!(c.validate().is_ok());
        assert_eq!(parse("instance_reuse = 10").unwrap().components["inventory"].instance_reuse_for, ReuseFor::All);
        assert!(parse("instance_reuse = 10\ninstance_reuse_for = \"sometimes\"").is_err(), "requests, events or all");
        let forgotten = parse("instance_reuse_for = \"events\"").unwrap().validate().unwrap_err().to_string();
        assert!(forgotten.contains("instance_reuse"), "{forgotten}");
    }

    #[test]
    fn the_pool_is_sized_to_the_machine() {
        let gib = 1u64 << 30;
        assert_eq!(instances_that_fit(24 * gib, 64 << 20), 384);
        assert_eq!(instances_that_fit(1024 * gib, 64 << 20), 1_000);
        assert_eq!(instances_that_fit(gib, 64 << 20), 64);
        assert_eq!(instances_that_fit(0, 64 << 20), 1_000);
    }

    #[test]
    fn a_component_variable_names_one_component_and_one_key() {
        let mut c: Config = toml::from_str(
            r#"
            [components.pay]
            wasm = "a.wasm"
            [components.pay_ment]
            wasm = "b.wasm"
            [components.admin]
            wasm = "c.wasm"
            "#,
        )
        .unwrap();
        let env = [
            ("WHARF_PAY_MENT_X", "1"),
            ("WHARF_ADMIN_TOKEN", "t".repeat(32).leak() as &str),
            ("WHARF_ADMIN__TOKEN", "2"),
        ];
        c.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(c.components["pay_ment"].config.get("x").map(String::as_str), Some("1"));
        assert!(c.components["pay"].config.is_empty(), "the longest name takes it: {:?}", c.components["pay"].config);
        // WHARF_ADMIN_TOKEN is the host's; the `__` form reaches the component.
        assert_eq!(c.admin_token.as_deref().map(str::len), Some(32));
        assert_eq!(c.components["admin"].config.get("token").map(String::as_str), Some("2"));
    }

    #[test]
    fn durability_is_local_unless_replicated_is_asked_for() {
        let env = |vars: &[(&str, &str)]| {
            let mut c = Config::default();
            c.apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map(|()| c)
        };
        assert_eq!(env(&[]).unwrap().replica_wait(), None);
        let replicated = env(&[("WHARF_REDIS_DURABILITY", "replicated"), ("WHARF_REDIS_REPLICA_WAIT_MS", "250")]);
        assert_eq!(replicated.unwrap().replica_wait(), Some(std::time::Duration::from_millis(250)));
        assert!(env(&[("WHARF_REDIS_DURABILITY", "eventually")]).is_err());
        let file: Config = toml::from_str("redis_durability = \"replicated\"").unwrap();
        assert_eq!(file.replica_wait(), Some(std::time::Duration::from_millis(1000)));
    }

    /// A default config with `env` applied, validated.
    fn load(env: &[(&str, &str)]) -> Result<()> {
        let mut c = Config::default();
        c.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        c.validate()
    }

    #[test]
    fn a_cluster_is_named_by_its_url_or_the_setting() {
        assert!(load(&[("REDIS_URL", "redis+cluster://a:1,b:2")]).is_ok());
        assert!(load(&[("REDIS_URL", "redis://a:1"), ("WHARF_REDIS_CLUSTER", "true")]).is_ok());
        let err = load(&[("WHARF_REDIS_CLUSTER", "true")]).unwrap_err().to_string();
        assert!(err.contains("needs REDIS_URL"), "{err}");
        // Replicated durability waits on every primary of a cluster.
        assert!(load(&[("REDIS_URL", "redis+cluster://a:1"), ("WHARF_REDIS_DURABILITY", "replicated")]).is_ok());
        assert!(load(&[("REDIS_URL", "redis://a:1"), ("WHARF_REDIS_DURABILITY", "replicated")]).is_ok());
        assert!(load(&[("REDIS_URL", "redis+cluster://")]).is_err(), "a cluster URL without a node");
    }

    #[test]
    fn short_admin_tokens_and_anonymous_public_listeners_are_refused() {
        let err = load(&[("WHARF_ADMIN_TOKEN", "s3cret")]).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
        assert!(load(&[("WHARF_ADMIN_TOKEN", &"x".repeat(32))]).is_ok());
        let err = load(&[("WHARF_LISTEN", "0.0.0.0:8080")]).unwrap_err().to_string();
        assert!(err.contains("WHARF_ALLOW_ANONYMOUS"), "{err}");
        assert!(load(&[("WHARF_LISTEN", "0.0.0.0:8080"), ("WHARF_ALLOW_ANONYMOUS", "true")]).is_ok());
        let keys = ("WHARF_API_KEYS", "k-0123456789abcdef:admin:ops");
        assert!(load(&[("WHARF_LISTEN", "0.0.0.0:8080"), keys]).is_ok());
        assert!(load(&[("WHARF_LISTEN", "[::1]:8080")]).is_ok());
    }

    #[test]
    fn rejects_unknown_settings_and_unsafe_claim_timeout() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
        let mut c = Config::default();
        c.streams.claim_idle_ms = c.limits.call_timeout_ms;
        assert!(c.validate().is_err());
    }

    #[test]
    fn grants_and_redis_tls_are_checked() {
        let parse = |text: &str| toml::from_str::<Config>(text).map_err(anyhow::Error::from).and_then(|c| c.validate());
        let ok = "[components.p]\nwasm = \"p.wasm\"\n[components.p.grants]\npublish = [\"order_stream\"]\ncall = [\"inventory\"]\ntimeout_ms = 100\n";
        parse(ok).unwrap();
        assert!(parse(&ok.replace("order_stream", "wharf:stream:{x}")).is_err(), "not a stream name");
        assert!(parse(&ok.replace("timeout_ms = 100", "timeout_ms = 0")).is_err());
        assert!(parse(&ok.replace("call =", "calls =")).is_err(), "unknown grant");
        let grants = toml::from_str::<Config>(ok).unwrap().components["p"].grants.clone().unwrap();
        assert_eq!((grants.consume.len(), grants.memory_bytes), (0, None), "unlisted grants are empty");

        assert!(parse("redis_url = \"redis://h\"\n[redis_tls]\nca_file = \"ca.pem\"").is_err(), "TLS needs rediss://");
        assert!(parse("redis_url = \"rediss://h\"\n[redis_tls]\ncert_file = \"c.pem\"").is_err(), "cert without key");
        parse("redis_url = \"rediss://h\"\n[redis_tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"").unwrap();
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let s = Streams { retry_base_ms: 100, retry_max_ms: 1000, ..Streams::default() };
        let ms: Vec<u128> = (1..=6).map(|a| s.retry_delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.retry_delay(u32::MAX).as_millis(), 1000);
    }
}
