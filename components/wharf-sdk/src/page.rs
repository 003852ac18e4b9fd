//! Lists in pages: what a list request asks for, and the host's protocol
//! for streaming a whole list (`wit/wharf.wit`, `response`).

use crate::prelude::*;

/// The header of the host's paging protocol: on an answer, "more follows,
/// ask again from here"; on a request, "this is the page after here". The
/// host removes it from what clients send.
pub const CONTINUE_HEADER: &str = "x-wharf-continue";

/// Items per page of a whole list, as the host streams it out: small enough
/// for any instance's memory, large enough that a page's call is cheap
/// against its reads.
pub const STREAM_PAGE: u32 = 500;

/// The most keys one `list-keys` call returns: the host lowers larger limits.
pub const MAX_LIST: u32 = 1000;

/// What a list request asks for (see [`Req::page`](crate::Req::page)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many items; `None`: all of them, page by page.
    pub limit: Option<u32>,
    /// Start after this id (exclusive).
    pub after: Option<String>,
}

impl Page {
    /// How many items this answer reads: the limit asked for, or one page
    /// of a whole list.
    pub fn size(&self) -> u32 {
        self.limit.unwrap_or(STREAM_PAGE)
    }
}
