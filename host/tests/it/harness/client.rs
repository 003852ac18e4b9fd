//! HTTP to a host under test (hyper's client, a pool per port).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// An HTTP client for one host port.
#[derive(Clone)]
pub struct Client {
    pub port: u16,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, inner: HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http() }
    }

    /// Polls /readyz until it answers 200 (30 s at most).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let probe = self.send("GET", "/readyz", &[], Vec::new());
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), probe).await
                && r.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no host became ready on port {}", self.port);
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder().method(method).uri(format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
        Ok(Resp { status, headers, body })
    }

    /// A JSON request; panics on transport errors.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, &[], body).await
    }

    /// A JSON request with extra headers; panics on transport errors.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let r = self.send(method, path, &all, bytes).await.unwrap();
        let json = if r.body.is_empty() { Value::Null } else { r.json() };
        (r.status, json)
    }
}

/// A client on its own connection to the host at `port`, sending `GET
/// path` back to back until `stop`: how many times each answer came (the
/// body of a 200, or the status or error of anything else).
pub fn load(
    port: u16,
    path: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<std::collections::HashMap<String, usize>> {
    tokio::spawn(async move {
        let client = Client::new(port);
        let mut seen = std::collections::HashMap::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let answer = match client.send("GET", path, &[], Vec::new()).await {
                Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
                Ok(r) => format!("status {}: {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => format!("connection error: {e}"),
            };
            *seen.entry(answer).or_default() += 1;
        }
        seen
    })
}
