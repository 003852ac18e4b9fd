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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on (`WHARF_LISTEN`).
    pub listen: SocketAddr,
    /// Redis to use (`REDIS_URL`). None: start and supervise our own redis-server.
    pub redis_url: Option<String>,
    /// Certificates for a `rediss://` URL.
    pub redis_tls: RedisTls,
    /// Where the embedded Redis keeps its append-only file, and where deployed
    /// component versions are kept (`WHARF_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Bearer token of the admin API (`WHARF_ADMIN_TOKEN`). None: admin API off.
    pub admin_token: Option<String>,
    /// A component without `[components.<name>.grants]` gets nothing beyond
    /// its own namespace (true) instead of what its manifest declares (false,
    /// the development default). Env `WHARF_REQUIRE_GRANTS`.
    pub require_grants: bool,
    pub limits: Limits,
    pub streams: Streams,
    pub auth: Auth,
    pub components: BTreeMap<String, ComponentConfig>,
}

/// TLS material (PEM files) for a `rediss://` URL. Without `ca_file` the
/// system's trust store verifies the server; `cert_file` and `key_file` are
/// the client certificate for servers that ask for one (Redis does by
/// default: `tls-auth-clients yes`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTls {
    /// `REDIS_TLS_CA_FILE`
    pub ca_file: Option<PathBuf>,
    /// `REDIS_TLS_CERT_FILE`
    pub cert_file: Option<PathBuf>,
    /// `REDIS_TLS_KEY_FILE`
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
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
    /// Deadline of one component call (request or event).
    pub call_timeout_ms: u64,
    /// Deadline of one host-capability call (one Redis round trip).
    pub redis_timeout_ms: u64,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Most component instances alive at once (pooling allocator slots).
    pub max_instances: u32,
    /// Values `kv.get-many-cached` may keep in this host (0: no cache).
    pub read_cache_entries: usize,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            redis_url: None,
            redis_tls: RedisTls::default(),
            require_grants: false,
            admin_token: None,
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
            call_timeout_ms: 10_000,
            redis_timeout_ms: 2_000,
            memory_bytes: 64 * 1024 * 1024,
            max_instances: 1_000,
            read_cache_entries: 10_000,
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
                "WHARF_REQUIRE_GRANTS" => {
                    self.require_grants = value.parse().context("WHARF_REQUIRE_GRANTS: true or false")?
                }
                "REDIS_TLS_CA_FILE" if !value.is_empty() => self.redis_tls.ca_file = Some(value.into()),
                "REDIS_TLS_CERT_FILE" if !value.is_empty() => self.redis_tls.cert_file = Some(value.into()),
                "REDIS_TLS_KEY_FILE" if !value.is_empty() => self.redis_tls.key_file = Some(value.into()),
                "WHARF_ADMIN_TOKEN" if !value.is_empty() => self.admin_token = Some(value),
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
                "WHARF_RATE_LIMIT_BURST" => {
                    self.auth.rate_limit_burst = value.parse().context("WHARF_RATE_LIMIT_BURST")?
                }
                _ => {
                    let Some(rest) = name.strip_prefix("WHARF_") else { continue };
                    for (component, c) in self.components.iter_mut() {
                        let prefix = format!("{}_", component.to_uppercase().replace('-', "_"));
                        if let Some(key) = rest.strip_prefix(&prefix)
                            && !key.is_empty()
                        {
                            c.config.insert(key.to_lowercase(), value.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.redis_tls.cert_file.is_some() != self.redis_tls.key_file.is_some() {
            bail!("redis_tls: cert_file and key_file go together");
        }
        if self.redis_tls.is_set() && !self.redis_url.as_deref().is_some_and(|u| u.starts_with("rediss://")) {
            bail!("redis_tls is set, but REDIS_URL is not a rediss:// URL");
        }
        for (key, k) in &self.auth.api_keys {
            if key.len() < 16 {
                bail!("API key for {} is shorter than 16 characters", k.subject);
            }
            if !ROLES.contains(&k.role.as_str()) || !crate::auth::is_valid_subject(&k.subject) {
                bail!(
                    "API key for {:?}: role must be one of {ROLES:?}, the subject 1-128 visible characters",
                    k.subject
                );
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
        for (name, c) in &self.components {
            if let Some(g) = &c.grants {
                self.validate_grants(name, g)?;
            }
        }
        Ok(())
    }

    /// Grants can only narrow the host's limits: where both set one, the
    /// lower applies (the pool is sized by `limits.memory_bytes`, and
    /// `claim_idle_ms` is checked against `limits.call_timeout_ms`).
    fn validate_grants(&self, name: &str, g: &Grants) -> Result<()> {
        let names = g.publish.iter().chain(&g.consume).chain(&g.call);
        if let Some(bad) = names.into_iter().find(|n| !crate::store::is_valid_name(n)) {
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
