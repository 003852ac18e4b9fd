//! Request and reply helpers: path parameters, query parameters and paging,
//! JSON bodies, headers.
//!
//! Lists come in pages. `?limit=N&after=ID` asks for one page, and its
//! answer carries a `Link` to the next (RFC 8288). With no `limit` the caller
//! wants the whole list, which may not fit in one instance's memory: the
//! component answers its first page with [`CONTINUE_HEADER`], the host asks
//! for each next page in a fresh instance and writes them all out as one
//! JSON array ([`Reply::list`] does both).

use crate::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::page::{CONTINUE_HEADER, MAX_LIST, Page};
use crate::{ApiError, Request, Response};

/// A request as the host routed it: its route and path parameters included.
pub struct Req {
    inner: Request,
}

impl Req {
    pub(crate) fn new(inner: Request) -> Self {
        Req { inner }
    }

    /// Builds a request by hand: for native unit tests of handlers.
    pub fn for_test(method: &str, path: &str, body: &[u8], params: &[(&str, &str)]) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Req {
            inner: Request {
                method: method.into(),
                path: path.into(),
                query: query.into(),
                headers: Vec::new(),
                body: body.to_vec(),
                route: String::new(),
                params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
        }
    }

    /// The value of path placeholder `{name}`; empty if the route has none.
    pub fn param(&self, name: &str) -> &str {
        self.inner.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The caller's role, as the host established it (`x-wharf-role`; the
    /// host removes whatever the client sent under that name).
    pub fn role(&self) -> Role {
        match self.header("x-wharf-role") {
            Some("admin") => Role::Admin,
            Some("customer") => Role::Customer,
            _ => Role::Anonymous,
        }
    }

    /// Who the caller is (`x-wharf-subject`); `None` when anonymous.
    pub fn subject(&self) -> Option<&str> {
        self.header("x-wharf-subject").filter(|s| !s.is_empty())
    }

    /// Refuses callers whose role is not in `allowed`: 401 when anonymous,
    /// 403 otherwise.
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        match self.role() {
            role if allowed.contains(&role) => Ok(()),
            Role::Anonymous => Err(ApiError::unauthenticated("send an API key or a token")),
            role => Err(ApiError::forbidden(format!("a {} may not do this", role.as_str()))),
        }
    }

    pub fn method(&self) -> &str {
        &self.inner.method
    }

    pub fn path(&self) -> &str {
        &self.inner.path
    }

    pub fn query(&self) -> &str {
        &self.inner.query
    }

    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The first value of query parameter `name`, as sent (not
    /// percent-decoded: callers validate it, so an encoded value is refused).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.inner.query.split('&').find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
    }

    /// The page a list request asks for: `?limit=N` (1 to `max`, itself at
    /// most [`MAX_LIST`]) and `?after=<id>` (exclusive, as the
    /// previous page's `Link` gave it). No `limit` asks for everything (after
    /// `after`), which is served [`STREAM_PAGE`] items at a time: `after` is
    /// then where the host says the previous page ended ([`CONTINUE_HEADER`]).
    /// A bad value is a 422 `invalid_query`.
    pub fn page(&self, max: u32) -> Result<Page, ApiError> {
        let max = max.min(MAX_LIST);
        let invalid = |m: String| ApiError::unprocessable("invalid_query", m);
        let limit = match self.query_param("limit") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Some(n),
                _ => return Err(invalid(format!("limit must be a whole number from 1 to {max}, not {v:?}"))),
            },
        };
        let after = match self.query_param("after") {
            None => None,
            Some(v) if crate::ids::is_valid(v) => Some(v.to_string()),
            Some(v) => return Err(invalid(format!("after must be an id from a previous page, not {v:?}"))),
        };
        // The whole list (from `after` on) continues where the host says.
        if limit.is_none() {
            return match self.header(CONTINUE_HEADER) {
                None => Ok(Page { limit, after }),
                Some(v) if crate::ids::is_valid(v) => Ok(Page { limit, after: Some(v.to_string()) }),
                Some(v) => Err(invalid(format!("{CONTINUE_HEADER} must be an id from a previous page, not {v:?}"))),
            };
        }
        Ok(Page { limit, after })
    }

    /// Parses the body as JSON: malformed JSON is a 400 `malformed_json`,
    /// well-formed JSON of the wrong shape a 422 `invalid_body`, and a body
    /// declared as something else a 415 (see [`Req::json_body`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(self.json_body()?)
    }

    /// The body, if it may be JSON: a `Content-Type` other than
    /// `application/json` (or `application/*+json`) is a 415
    /// `unsupported_media_type`. No `Content-Type` at all is taken as JSON.
    pub fn json_body(&self) -> Result<&[u8], ApiError> {
        match self.header("content-type") {
            Some(ct) if !is_json_media_type(ct) => Err(ApiError::new(
                415,
                "unsupported_media_type",
                format!("the body must be application/json, not {ct}"),
            )),
            _ => Ok(&self.inner.body),
        }
    }
}

/// A caller's role. Authentication is the host's job; what each role may do
/// is the component's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Customer,
    Anonymous,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Customer => "customer",
            Role::Anonymous => "anonymous",
        }
    }
}

/// `application/json` or `application/<anything>+json`, any parameters.
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body with the status split [`Req::json`] documents.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::unprocessable("invalid_body", e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(400, "malformed_json", format!("request body is not valid JSON: {e}"))
            }
        }
    })
}

/// A successful answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `value` as a JSON body with `status`.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Reply { status, headers: vec![("content-type".into(), "application/json".into())], body })
    }

    /// 204 with no body.
    pub fn no_content() -> Result<Reply, ApiError> {
        Ok(Reply { status: 204, headers: Vec::new(), body: Vec::new() })
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.into(), value));
        self
    }

    /// Adds `Link: <path?limit=N&after=last>; rel="next"` (RFC 8288) when
    /// `last` is where a next page starts: callers pass it only when the
    /// page they read was full.
    pub fn with_next_page(self, path: &str, limit: u32, last: Option<&str>) -> Reply {
        match last {
            Some(last) => self.with_header("link", format!("<{path}?limit={limit}&after={last}>; rel=\"next\"")),
            None => self,
        }
    }

    /// One page of a list: `items` as a JSON array, and `next` (the id the
    /// following page starts after, when this page was full) as a `Link` for
    /// a page asked for with `limit`, or, for the whole list, as the
    /// [`CONTINUE_HEADER`] that makes the host ask for the rest.
    pub fn list<T: Serialize>(page: &Page, path: &str, items: &[T], next: Option<&str>) -> Result<Reply, ApiError> {
        let reply = Reply::json(200, &items)?;
        Ok(match (page.limit, next) {
            (Some(limit), next) => reply.with_next_page(path, limit, next),
            (None, Some(next)) => reply.with_header(CONTINUE_HEADER, next.into()),
            (None, None) => reply,
        })
    }

    pub(crate) fn into_response(self) -> Response {
        Response { status: self.status, headers: self.headers, body: self.body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::STREAM_PAGE;

    #[test]
    fn pages_are_read_from_the_query() {
        let page = |q: &str| Req::for_test("GET", &format!("/orders?{q}"), b"", &[]).page(100);
        assert_eq!(page("").unwrap(), Page { limit: None, after: None });
        assert_eq!(page("limit=5").unwrap(), Page { limit: Some(5), after: None });
        assert_eq!(page("x=1&after=abc_1&limit=100").unwrap(), Page { limit: Some(100), after: Some("abc_1".into()) });
        assert_eq!(page("").unwrap().size(), STREAM_PAGE);
        assert_eq!(page("after=abc").unwrap(), Page { limit: None, after: Some("abc".into()) });
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=", "limit=2x", "limit=5&after=a%2Fb", "limit=5&after="] {
            let e = page(bad).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (422, "invalid_query"), "{bad}");
        }
    }

    #[test]
    fn a_whole_list_continues_where_the_host_says() {
        let mut req = Req::for_test("GET", "/orders", b"", &[]);
        req.inner.headers.push((CONTINUE_HEADER.into(), "01ABC".into()));
        assert_eq!(req.page(100).unwrap(), Page { limit: None, after: Some("01ABC".into()) });
        req.inner.headers[0].1 = "a/b".into();
        assert_eq!(req.page(100).unwrap_err().status, 422);
        // A page asked for by limit ignores it: its cursor is `after`.
        let mut req = Req::for_test("GET", "/orders?limit=5", b"", &[]);
        req.inner.headers.push((CONTINUE_HEADER.into(), "01ABC".into()));
        assert_eq!(req.page(100).unwrap(), Page { limit: Some(5), after: None });
    }

    #[test]
    fn a_list_reply_links_a_page_or_asks_the_host_for_more() {
        let header = |r: &Reply, n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let whole = Page { limit: None, after: None };
        let r = Reply::list(&whole, "/orders", &[1, 2], Some("B")).unwrap();
        assert_eq!((header(&r, CONTINUE_HEADER).as_deref(), header(&r, "link")), (Some("B"), None));
        assert_eq!(r.body, b"[1,2]");
        let r = Reply::list(&whole, "/orders", &[1], None).unwrap();
        assert_eq!(header(&r, CONTINUE_HEADER), None);
        let paged = Page { limit: Some(2), after: None };
        let r = Reply::list(&paged, "/orders", &[1, 2], Some("B")).unwrap();
        assert_eq!(header(&r, CONTINUE_HEADER), None);
        assert_eq!(header(&r, "link").as_deref(), Some("</orders?limit=2&after=B>; rel=\"next\""));
    }

    #[test]
    fn json_errors_split_syntax_from_shape() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert_eq!(parse_json::<T>(b"{").unwrap_err().status, 400);
        assert_eq!(parse_json::<T>(b"{\"a\": \"x\"}").unwrap_err().status, 422);
        assert_eq!(parse_json::<T>(b"{}").unwrap_err().status, 422);
        assert!(parse_json::<T>(b"{\"a\": 1}").is_ok());
    }

    #[test]
    fn json_media_types() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/problem+json"]
        {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "json"] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn json_parsing_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = parse_json::<serde_json::Value>(&b);
            }
        }
    }
}
