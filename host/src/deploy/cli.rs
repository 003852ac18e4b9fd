//! `wharf deploy | components | rollback`: a thin client of the admin API, so
//! the command line and HTTP share one deployment path. It speaks http or
//! https (rustls): a host behind a TLS proxy is verified against the
//! system's trust store, or against `--ca-file` for a private CA.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where and how to reach a running host.
#[derive(clap::Args, Debug)]
pub struct Remote {
    /// Base URL of the host.
    #[arg(long, env = "WHARF_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token (the host's WHARF_ADMIN_TOKEN).
    #[arg(long, env = "WHARF_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// PEM file of the CA that signed an https host's certificate (default:
    /// the system's trust store).
    #[arg(long, env = "WHARF_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Remote {
    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Value> {
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(self.connector()?);
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url.trim_end_matches('/')))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))?;
        let resp = client.request(req).await.with_context(|| format!("cannot reach {}", self.url))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = json["error"]["message"].as_str().unwrap_or("no details");
            bail!("{status}: {msg}");
        }
        Ok(json)
    }
}

impl Remote {
    /// http and https, with the roots `ca_file` names or the system's.
    fn connector(&self) -> Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &self.ca_file {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))?
                {
                    roots.add(cert.with_context(|| format!("reading {}", path.display()))?)?;
                }
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
            None => builder.with_provider_and_native_roots(provider).context("loading the system's trust store")?,
        };
        Ok(builder.https_or_http().enable_http1().build())
    }
}

pub async fn deploy(remote: &Remote, name: &str, file: &std::path::Path, wait: Option<u64>) -> Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let started = std::time::Instant::now();
    let r = remote.request("PUT", &format!("/admin/components/{name}"), wasm).await?;
    println!("{name}: now {} (swap {:.1} ms)", short(&r["version"]), r["swap_ms"].as_f64().unwrap_or(0.0));
    fleet_answer(remote, name, &r, wait, started).await
}

/// Starts `file` as a canary of `name` taking `share` percent for
/// `window` seconds; with `wait`, waits for the fleet's verdict (an error
/// if it was rolled back).
pub async fn canary(
    remote: &Remote,
    name: &str,
    file: &std::path::Path,
    share: u32,
    window: u64,
    wait: Option<u64>,
) -> Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let path = format!("/admin/components/{name}?canary={share}&window_ms={}", window * 1000);
    let r = remote.request("PUT", &path, wasm).await?;
    let sha = r["canary"].as_str().unwrap_or_default().to_string();
    println!("{name}: canary {} takes {share}% on every host for {window} s", short(&r["canary"]));
    let Some(secs) = wait else { return Ok(()) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs.max(window + 5));
    loop {
        let list = remote.request("GET", "/admin/components", Vec::new()).await?;
        let c = list.as_array().into_iter().flatten().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null);
        let verdict = &c["fleet"]["last_canary"];
        if verdict["version"].as_str() == Some(sha.as_str()) {
            let why = verdict["why"].as_str().unwrap_or("");
            if verdict["decision"] == "promote" {
                println!("{name}: canary promoted: {why}");
                return Ok(());
            }
            bail!("{name}: canary rolled back: {why}");
        }
        if std::time::Instant::now() >= deadline {
            bail!("{name}: no verdict on the canary yet");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn rollback(remote: &Remote, name: &str, wait: Option<u64>) -> Result<()> {
    let started = std::time::Instant::now();
    let r = remote.request("POST", &format!("/admin/components/{name}/rollback"), Vec::new()).await?;
    println!("{name}: rolled back to {}", short(&r["version"]));
    fleet_answer(remote, name, &r, wait, started).await
}

/// Says what became of the fleet's record and, with `--wait`, waits until
/// every live host runs the version (or names those that do not).
async fn fleet_answer(
    remote: &Remote,
    name: &str,
    r: &Value,
    wait: Option<u64>,
    started: std::time::Instant,
) -> Result<()> {
    if let Some(why) = r["fleet_error"].as_str() {
        bail!("deployed on {} only: the fleet's record was not written ({why})", remote.url);
    }
    let Some(secs) = wait else { return Ok(()) };
    let version = r["version"].as_str().unwrap_or_default();
    let deadline = started + std::time::Duration::from_secs(secs);
    loop {
        let list = remote.request("GET", "/admin/components", Vec::new()).await?;
        let fleet = list.as_array().into_iter().flatten().find(|c| c["name"] == name).map(|c| c["fleet"].clone());
        let fleet = fleet.unwrap_or(Value::Null);
        let behind: Vec<String> = fleet["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["version"].as_str() != Some(version))
            .map(|h| format!("{} ({})", h["addr"].as_str().unwrap_or("?"), short(&h["version"])))
            .collect();
        let failed: Vec<String> =
            fleet["failed"].as_object().into_iter().flatten().map(|(host, why)| format!("{host}: {why}")).collect();
        if fleet["converged"] == true && fleet["desired"]["version"].as_str() == Some(version) {
            let n = fleet["hosts"].as_array().map_or(0, Vec::len);
            println!(
                "{name}: {n} host(s) run {} ({:.1} s)",
                short(&Value::from(version)),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if !failed.is_empty() {
            bail!("{name}: some hosts cannot run {}: {}", short(&Value::from(version)), failed.join("; "));
        }
        if std::time::Instant::now() >= deadline {
            bail!("{name}: after {secs} s, not on {} yet: {}", short(&Value::from(version)), behind.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub async fn components(remote: &Remote) -> Result<()> {
    let list = remote.request("GET", "/admin/components", Vec::new()).await?;
    println!(
        "{:<16} {:<14} {:<7} {:<10} {:>10}  routes / subscriptions",
        "NAME", "VERSION", "SOURCE", "FLEET", "REQUESTS"
    );
    for c in list.as_array().into_iter().flatten() {
        let subs: Vec<String> = c["subscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!("{}@{}", s["stream"].as_str().unwrap_or(""), s["group"].as_str().unwrap_or("")))
            .collect();
        let routes: Vec<&str> = c["routes"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
        // How many live hosts run the fleet's version: "3/3" once converged.
        let fleet = &c["fleet"];
        let hosts = fleet["hosts"].as_array().map_or(&[][..], Vec::as_slice);
        let desired = fleet["desired"]["version"].as_str();
        let on = hosts.iter().filter(|h| h["version"].as_str().is_some() && h["version"].as_str() == desired).count();
        println!(
            "{:<16} {:<14} {:<7} {:<10} {:>10}  {} / {}",
            c["name"].as_str().unwrap_or(""),
            short(&c["version"]),
            c["source"].as_str().unwrap_or(""),
            if fleet.get("error").is_some() { "?".to_string() } else { format!("{on}/{}", hosts.len()) },
            c["requests"].as_u64().unwrap_or(0),
            routes.join(", "),
            subs.join(", ")
        );
        // The fleet: the record, then each live host's version.
        if let Some(desired) = desired {
            let each: Vec<String> = hosts
                .iter()
                .map(|h| format!("{} {}", h["addr"].as_str().unwrap_or("?"), short(&h["version"])))
                .collect();
            let revision = fleet["desired"]["revision"].as_u64().unwrap_or(0);
            println!("{:<16} fleet: {} (revision {revision}) on {}", "", short(&Value::from(desired)), each.join(", "));
        }
        let canary = &fleet["canary"];
        if let Some(sha) = canary["version"].as_str() {
            let side = |s: &Value| {
                format!(
                    "{} errors in {} answers",
                    s["errors"].as_u64().unwrap_or(0),
                    s["answers"].as_u64().unwrap_or(0)
                )
            };
            println!(
                "{:<16} canary: {} takes {}%: {}; current: {}",
                "",
                short(&Value::from(sha)),
                canary["share"].as_u64().unwrap_or(0),
                side(&canary["canary"]),
                side(&canary["current"])
            );
        }
        let last = &fleet["last_canary"];
        if let Some(sha) = last["version"].as_str() {
            let decision = last["decision"].as_str().unwrap_or("?");
            println!(
                "{:<16} last canary: {} {decision}: {}",
                "",
                short(&Value::from(sha)),
                last["why"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn short(v: &Value) -> String {
    v.as_str().map(|s| s.chars().take(12).collect()).unwrap_or_default()
}
