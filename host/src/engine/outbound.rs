//! What a mounted `wasi:http` component (`proxy`) may send: HTTP requests to
//! the hosts its grants name (`outbound_http`, as Spin's
//! `allowed_outbound_hosts`), and nothing else. A refused request answers
//! `HTTP-request-denied` and is logged and counted as every sandbox refusal.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capability::refusals::Refusals;

type Sent =
    Result<(hyper::http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

/// One version's grant: the authorities (`host:port`) it may reach, and the
/// client that reaches them (http or https, the system's trust store).
pub struct OutboundGrant {
    hosts: Vec<String>,
    client: Option<Client<HttpsConnector<HttpConnector>, WasiBody>>,
    refusals: Arc<Refusals>,
}

impl OutboundGrant {
    pub fn new(hosts: Vec<String>, refusals: Arc<Refusals>) -> Arc<OutboundGrant> {
        // No client for a component granted nothing (every Wharf component).
        let client =
            (!hosts.is_empty()).then(connector).flatten().map(|c| Client::builder(TokioExecutor::new()).build(c));
        Arc::new(OutboundGrant { hosts, client, refusals })
    }

    fn allows(&self, authority: &str, https: bool) -> bool {
        allowed(&self.hosts, authority, https)
    }
}

/// Whether `authority`, reached over http or https, is one of `hosts`
/// (`host:port`; a grant without a port means 80, a request without one
/// its scheme's port).
fn allowed(hosts: &[String], authority: &str, https: bool) -> bool {
    let with_port = |a: &str, port: u16| {
        if a.contains(':') { a.to_ascii_lowercase() } else { format!("{}:{port}", a.to_ascii_lowercase()) }
    };
    let wanted = with_port(authority, if https { 443 } else { 80 });
    !authority.is_empty() && hosts.iter().any(|h| with_port(h, 80) == wanted)
}

fn connector() -> Option<HttpsConnector<HttpConnector>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider) {
        Ok(builder) => Some(builder.https_or_http().enable_http1().build()),
        Err(e) => {
            tracing::error!(error = %e, "outbound HTTP: the system's trust store cannot be loaded; granted hosts are refused");
            None
        }
    }
}

/// The wasi:http hooks a store carries.
pub struct Outbound(pub Arc<OutboundGrant>);

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: hyper::http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let authority = request.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let grant = &self.0;
        let https = request.uri().scheme_str() == Some("https");
        let Some(client) = grant.client.clone().filter(|_| grant.allows(&authority, https)) else {
            grant
                .refusals
                .note("network", &format!("outgoing HTTP to {}: not among its grants' outbound_http", request.uri()));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        Box::new(async move {
            // The call's own deadline bounds the wait.
            let resp = client.request(request).await.map_err(|e| {
                if e.is_connect() { HttpError::ConnectionRefused } else { HttpError::DestinationUnavailable }
            })?;
            let resp = resp.map(|body| body.map_err(HttpError::Hyper).boxed_unsync());
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
            Ok((resp, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_authorities_are_reached() {
        let hosts = vec!["api.example.com:443".to_string(), "127.0.0.1:8081".to_string(), "plain.example".to_string()];
        assert!(allowed(&hosts, "api.example.com:443", true));
        assert!(allowed(&hosts, "API.example.com:443", true));
        assert!(allowed(&hosts, "api.example.com", true), "https without a port is 443");
        assert!(allowed(&hosts, "127.0.0.1:8081", false));
        assert!(allowed(&hosts, "plain.example:80", false));
        assert!(allowed(&hosts, "plain.example", false));
        assert!(!allowed(&hosts, "plain.example", true), "a grant without a port is 80, not https's 443");
        assert!(!allowed(&hosts, "api.example.com:80", false));
        assert!(!allowed(&hosts, "api.example.com", false));
        assert!(!allowed(&hosts, "127.0.0.1:8082", false));
        assert!(!allowed(&hosts, "evil.example.com", true));
        assert!(!allowed(&hosts, "", false));
        assert!(!allowed(&[], "127.0.0.1:8081", false));
    }
}
