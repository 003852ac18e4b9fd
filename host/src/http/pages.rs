//! Whole lists, page by page: a list longer than one instance's memory
//! (100,000 orders in payment's 32 MiB) still goes out as one JSON array.
//!
//! A component answers the first page, a JSON array, with the header
//! `x-wharf-continue: <cursor>` when more follows. The gateway then writes
//! that page out at once (chunked) and asks the same version again, with the
//! same request plus `x-wharf-continue: <cursor>`, each page in a fresh
//! instance, until a page comes without the header. Neither the host nor any
//! instance holds more than a few pages: a slow client slows the pages
//! down (a bounded channel), and one that stops reading loses the answer.
//!
//! The status and headers are the first page's. A failure after them (a
//! page that traps or is not an array, a client that stalls) aborts the
//! body: the client sees a truncated answer, never a short list passed off
//! as whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use serde::de::IgnoredAny;
use tracing::Instrument;

use crate::engine::runtime::{CallError, ComponentVersion, Request, Response, Runtime};

/// On an answer: more follows, ask again from this cursor. On a request:
/// this is the page after that cursor. The gateway removes it from what
/// clients send: only the host continues a list.
pub const CONTINUE_HEADER: &str = "x-wharf-continue";

/// Pages that may wait for a slow client, besides the one being made.
const BUFFERED_PAGES: usize = 2;
/// A client that takes nothing for this long loses the answer: its pages
/// hold memory and keep a swapped-out version alive.
const STALL: Duration = Duration::from_secs(30);
/// A list is stopped after this many pages: a cursor that never ends must
/// not stream forever (at 500 items a page, 50 million items).
const MAX_PAGES: usize = 100_000;
/// A cursor longer than this is refused as a component's bug.
const MAX_CURSOR: usize = 1024;

/// Why a list stopped half-way.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("page {page}: {source}")]
    Call { page: usize, source: CallError },
    #[error("page {page} answered status {status}, not 200")]
    Status { page: usize, status: u16 },
    #[error("page {page} is not a JSON array")]
    NotAnArray { page: usize },
    #[error("page {page} gave the cursor it was asked with, or an unusable one")]
    BadCursor { page: usize },
    #[error("the list has more than {MAX_PAGES} pages")]
    TooLong,
    #[error("the client read nothing for {}s", STALL.as_secs())]
    Stalled,
}

/// The cursor of an answer that is the first of several pages (and removes
/// the header, which is for the host only): a 200 with `x-wharf-continue`.
pub fn take_cursor(resp: &mut Response) -> Option<String> {
    let at = resp.headers.iter().position(|(k, _)| k.eq_ignore_ascii_case(CONTINUE_HEADER))?;
    let (_, cursor) = resp.headers.remove(at);
    resp.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(CONTINUE_HEADER));
    (resp.status == 200).then_some(cursor)
}

/// The items of a page, the text between its brackets: `None` unless the
/// body is one JSON array (checked whole, so a page cannot close the array
/// early and append something else).
pub fn items(body: &[u8]) -> Option<&[u8]> {
    serde_json::from_slice::<Vec<IgnoredAny>>(body).ok()?;
    let text = body.trim_ascii();
    Some(text[1..text.len() - 1].trim_ascii())
}

/// The body of a list whose first page held `first` (its [`items`]):
/// written out now, and every next page as it comes.
pub fn stream(
    rt: Arc<Runtime>,
    version: Arc<ComponentVersion>,
    req: Request,
    first: &[u8],
    cursor: String,
) -> Channel<Bytes, PageError> {
    let (mut tx, body) = Channel::new(BUFFERED_PAGES);
    let mut opening = Vec::with_capacity(first.len() + 1);
    opening.push(b'[');
    opening.extend_from_slice(first);
    let wrote_any = !first.is_empty();
    let started = Instant::now();
    tokio::spawn(
        async move {
            match write_pages(&rt, &version, req, &mut tx, Bytes::from(opening), wrote_any, cursor).await {
                Ok(pages) => tracing::debug!(pages, ms = started.elapsed().as_millis() as u64, "list streamed"),
                Err(None) => tracing::debug!("the client left before the list ended"),
                Err(Some(e)) => {
                    tracing::warn!(component = %version.name, error = %e, "list stopped half-way");
                    tx.abort(e);
                }
            }
        }
        .in_current_span(),
    );
    body
}

/// Writes `opening`, then each next page, then `]`; the number of pages.
/// `Err(None)`: the client went away.
async fn write_pages(
    rt: &Arc<Runtime>,
    version: &Arc<ComponentVersion>,
    mut req: Request,
    tx: &mut Sender<Bytes, PageError>,
    opening: Bytes,
    mut wrote_any: bool,
    mut cursor: String,
) -> Result<usize, Option<PageError>> {
    send(tx, opening).await?;
    req.headers.retain(|(k, _)| k != CONTINUE_HEADER);
    let mut page = 1;
    loop {
        page += 1;
        if page > MAX_PAGES {
            return Err(Some(PageError::TooLong));
        }
        let mut next = req.clone();
        next.headers.push((CONTINUE_HEADER.to_string(), cursor.clone()));
        let mut resp = call(rt, version, next).await.map_err(|source| PageError::Call { page, source })?;
        let more = take_cursor(&mut resp);
        if resp.status != 200 {
            return Err(Some(PageError::Status { page, status: resp.status }));
        }
        let inner = items(&resp.body).ok_or(PageError::NotAnArray { page })?;
        if !inner.is_empty() {
            let mut chunk = Vec::with_capacity(inner.len() + 1);
            if wrote_any {
                chunk.push(b',');
            }
            chunk.extend_from_slice(inner);
            send(tx, Bytes::from(chunk)).await?;
            wrote_any = true;
        }
        match more {
            None => break,
            Some(c) if c == cursor || c.is_empty() || c.len() > MAX_CURSOR => {
                return Err(Some(PageError::BadCursor { page }));
            }
            Some(c) => cursor = c,
        }
    }
    send(tx, Bytes::from_static(b"]")).await?;
    Ok(page)
}

/// One page's call. A full pool is waited out (up to the call deadline):
/// the answer has begun, and a page refused now would cut it.
async fn call(rt: &Arc<Runtime>, version: &Arc<ComponentVersion>, req: Request) -> Result<Response, CallError> {
    let give_up = Instant::now() + rt.limits.call_timeout();
    loop {
        match rt.handle_request(version, &req).await {
            Err(CallError::Busy) if Instant::now() < give_up => tokio::time::sleep(Duration::from_millis(10)).await,
            answer => return answer,
        }
    }
}

async fn send(tx: &mut Sender<Bytes, PageError>, chunk: Bytes) -> Result<(), Option<PageError>> {
    match tokio::time::timeout(STALL, tx.send_data(chunk)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some(PageError::Stalled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_one_json_array() {
        assert_eq!(items(b"[1,2]"), Some(&b"1,2"[..]));
        assert_eq!(items(b" [ {\"a\":[1]} ] \n"), Some(&b"{\"a\":[1]}"[..]));
        assert_eq!(items(b"[]"), Some(&b""[..]));
        assert_eq!(items(b"[ ]"), Some(&b""[..]));
        // Anything that would not join into one array is refused.
        for bad in [&b"{}"[..], b"1", b"[1],[2]", b"[1", b"", b"[1]x", b"\"[1]\""] {
            assert_eq!(items(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_a_200_continues_and_the_header_never_leaves() {
        let resp = |status, headers: &[(&str, &str)]| Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: b"[]".to_vec(),
        };
        let mut r = resp(200, &[("content-type", "application/json"), ("X-Wharf-Continue", "B")]);
        assert_eq!(take_cursor(&mut r).as_deref(), Some("B"));
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);
        let mut r = resp(404, &[(CONTINUE_HEADER, "B"), (CONTINUE_HEADER, "C")]);
        assert_eq!(take_cursor(&mut r), None);
        assert!(r.headers.is_empty());
        assert_eq!(take_cursor(&mut resp(200, &[])), None);
    }
}
