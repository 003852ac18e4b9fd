//! A standard `wasi:http` component, as `wasmtime serve` or Spin would run it:
//! it exports `wasi:http/incoming-handler` through the `wasip2` crate's
//! `export!` and knows nothing of Wharf.
//!
//! - `GET <mount>`: what it was asked (method, path, the caller the host
//!   named in `x-wharf-subject`, the request id);
//! - `POST <mount>/echo`: the body back;
//! - `GET <mount>/outbound?to=HOST:PORT`: tries an outgoing HTTP request
//!   (to `127.0.0.1:9` without `to`) and says what happened;
//! - `GET <mount>/env`: what it sees of the environment and the files.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let header = |name: &str| {
            request.headers().get(name).first().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
        };
        let (status, body) = match (request.method(), path.trim_end_matches('/')) {
            (Method::Post, p) if p.ends_with("/echo") => {
                let mut body = Vec::new();
                let incoming = request.consume().expect("the body, once");
                incoming.stream().expect("its stream").read_to_end(&mut body).expect("read the body");
                (200, body)
            }
            (Method::Get, p) if p.contains("/outbound") => {
                let to = p.split_once("?to=").map_or("127.0.0.1:9", |(_, to)| to);
                (200, json(&serde_json::json!({"outbound": outbound(to)})))
            }
            (Method::Get, p) if p.ends_with("/env") => {
                let files = match std::fs::read_dir("/") {
                    Ok(_) => "readable".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                (200, json(&serde_json::json!({"env": std::env::vars().count(), "files": files})))
            }
            (method, p) => (
                200,
                json(&serde_json::json!({
                    "hello": if cfg!(feature = "v2") { "from a wasi:http component, v2" } else { "from a wasi:http component" },
                    "method": format!("{method:?}"),
                    "path": p,
                    "subject": header("x-wharf-subject"),
                    "request_id": header("x-request-id"),
                })),
            ),
        };
        let headers = Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())]).unwrap();
        let resp = OutgoingResponse::new(headers);
        resp.set_status_code(status).unwrap();
        let out = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut stream = out.write().unwrap();
        // In chunks: the host buffers a few, and reads as they come.
        for chunk in body.chunks(4096) {
            stream.write_all(chunk).unwrap();
        }
        stream.flush().unwrap();
        drop(stream);
        OutgoingBody::finish(out, None).unwrap();
    }
}

fn json(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// An outgoing request to `to`: "refused: ..." or "reached: <status> <body>".
fn outbound(to: &str) -> String {
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&Scheme::Http)).unwrap();
    req.set_authority(Some(to)).unwrap();
    req.set_path_with_query(Some("/")).unwrap();
    let refused = |e: ErrorCode| format!("refused: {e:?}");
    let future = match wasip2::http::outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return refused(e),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(resp))) => {
            let mut body = String::new();
            if let Ok(incoming) = resp.consume() {
                let _ = incoming.stream().map(|mut s| s.read_to_string(&mut body));
            }
            format!("reached: {} {body}", resp.status())
        }
        Some(Ok(Err(e))) => refused(e),
        other => format!("refused: {other:?}"),
    }
}
