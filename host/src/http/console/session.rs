//! The console's session: a cookie the host signs with a key derived from
//! the admin token. It needs no store, outlives a restart of the host (the
//! console reconnects by itself), works on every host of a fleet that
//! shares the token, and dies with the token: rotating the admin token logs
//! every console out. `HttpOnly` keeps it from the page's scripts,
//! `SameSite=Strict` from other sites' requests.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::http::auth::constant_time_eq;

pub const COOKIE: &str = "wharf_console";
/// How long a login lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A session cookie's value, valid until `now_ms + LIFETIME`:
/// `<expiry in ms>.<HMAC-SHA256 of it, hex>`.
pub fn issue(admin_token: &str, now_ms: u64) -> String {
    let expires = now_ms + LIFETIME.as_millis() as u64;
    format!("{expires}.{}", mac(admin_token, expires))
}

/// Whether `value` is a session this token signed that has not expired.
pub fn valid(admin_token: &str, value: &str, now_ms: u64) -> bool {
    let Some((expires, tag)) = value.split_once('.') else { return false };
    let Ok(expires) = expires.parse::<u64>() else { return false };
    expires > now_ms && constant_time_eq(tag.as_bytes(), mac(admin_token, expires).as_bytes())
}

/// The session cookie in a `Cookie` header, if there is one.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').filter_map(|c| c.trim().split_once('=')).find(|(name, _)| *name == COOKIE).map(|(_, v)| v)
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", LIFETIME.as_secs())
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn mac(admin_token: &str, expires: u64) -> String {
    // A key of its own, not the token itself: a leaked cookie says nothing
    // about the token beyond what any HMAC tag does.
    let key = Sha256::new().chain_update(b"wharf console session key\n").chain_update(admin_token).finalize();
    let mut m = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    m.update(format!("console\n{expires}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "console-token-0123456789abcdef0123";

    #[test]
    fn a_session_holds_until_it_expires() {
        let value = issue(TOKEN, 1_000);
        assert!(valid(TOKEN, &value, 1_000));
        assert!(valid(TOKEN, &value, 1_000 + LIFETIME.as_millis() as u64 - 1));
        assert!(!valid(TOKEN, &value, 1_000 + LIFETIME.as_millis() as u64), "expired");
    }

    #[test]
    fn a_forged_or_foreign_session_is_refused() {
        let value = issue(TOKEN, 1_000);
        assert!(!valid("another-admin-token-0123456789abcdef", &value, 1_000), "the token was rotated");
        let (_, tag) = value.split_once('.').unwrap();
        assert!(!valid(TOKEN, &format!("99999999999999.{tag}"), 1_000), "a later expiry, the old tag");
        for junk in ["", ".", "abc", "1.2.3", "10000000000000.zz"] {
            assert!(!valid(TOKEN, junk, 1_000), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(from_cookie_header("a=1; wharf_console=v.t; b=2"), Some("v.t"));
        assert_eq!(from_cookie_header("wharf_console_x=1"), None);
        assert!(set_cookie("v").contains("HttpOnly") && set_cookie("v").contains("SameSite=Strict"));
    }
}
