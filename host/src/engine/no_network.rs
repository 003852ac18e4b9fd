//! The wasi:http hooks every store carries: a mounted `wasi:http` component
//! (`proxy`) may not send HTTP requests of its own.

use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capability::refusals::Refusals;

/// wasi:http's hooks for a mounted component: its outgoing requests are
/// refused (`HttpRequestDenied`), logged and counted as every sandbox
/// refusal is.
pub struct NoNetwork(pub Arc<Refusals>);

impl WasiHttpHooks for NoNetwork {
    fn send_request(
        &mut self,
        request: hyper::http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (hyper::http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                    HttpError,
                >,
            > + Send,
    > {
        self.0.note("network", &format!("outgoing HTTP to {}: mounted components get no network", request.uri()));
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}
