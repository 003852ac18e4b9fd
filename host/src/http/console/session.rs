//! The console's session: a cookie the host signs with a key derived from
//! the admin token. It needs no store, outlives a restart of the host (the
//! console reconnects by itself), works on every host of a fleet that
//! shares the token, and dies with the token: rotating the admin token logs
//! every console out. `HttpOnly` keeps it from the page's scripts,
//! `SameSite=Strict` from other sites' requests, and `Secure` off plain
//! HTTP whenever the browser reached the host over HTTPS (see
//! [`over_https`]).

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

/// Whether the browser reached the host over HTTPS. The host itself speaks
/// plain HTTP, so HTTPS means a proxy in front that ends TLS and says so
/// (`X-Forwarded-Proto: https`, or `proto=https` in `Forwarded`). Trusting
/// the header only ever adds `Secure`: a forged one costs its sender the
/// cookie on plain HTTP, where browsers drop a `Secure` cookie.
pub fn over_https(headers: &hyper::HeaderMap) -> bool {
    let values = |name| headers.get_all(name).into_iter().filter_map(|v: &hyper::header::HeaderValue| v.to_str().ok());
    // The first hop's word: the proxy nearest the browser writes first.
    let forwarded_proto = values("x-forwarded-proto").flat_map(|v| v.split(',')).next();
    let forwarded = values("forwarded")
        .flat_map(|v| v.split(','))
        .next()
        .into_iter()
        .flat_map(|hop| hop.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("proto"))
        .map(|(_, proto)| proto.trim_matches('"'));
    forwarded_proto.or(forwarded).is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session; `secure` when the browser came over
/// HTTPS ([`over_https`]).
pub fn set_cookie(value: &str, secure: bool) -> String {
    cookie(value, LIFETIME.as_secs(), secure)
}

/// `Set-Cookie` that ends the session in the browser, `secure` as the
/// login's was.
pub fn clear_cookie(secure: bool) -> String {
    cookie("", 0, secure)
}

fn cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
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
        assert!(set_cookie("v", false).contains("HttpOnly") && set_cookie("v", false).contains("SameSite=Strict"));
    }

    #[test]
    fn the_cookie_is_secure_when_the_browser_came_over_https() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = hyper::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, hyper::header::HeaderValue::from_static(value));
            }
            h
        };
        for (pairs, want) in [
            (&[][..], false),
            (&[("x-forwarded-proto", "https")][..], true),
            (&[("x-forwarded-proto", "HTTPS")][..], true),
            (&[("x-forwarded-proto", "http")][..], false),
            // Proxies append: the first is the browser's side.
            (&[("x-forwarded-proto", "https, http")][..], true),
            (&[("x-forwarded-proto", "http, https")][..], false),
            (&[("forwarded", "for=192.0.2.1;proto=https;by=203.0.113.9")][..], true),
            (&[("forwarded", "For=\"[2001:db8::1]\";Proto=\"https\"")][..], true),
            (&[("forwarded", "for=192.0.2.1;proto=http")][..], false),
            (&[("forwarded", "for=192.0.2.1")][..], false),
            // The nearest proxy's element only.
            (&[("forwarded", "for=192.0.2.1, for=198.51.100.7;proto=https")][..], false),
        ] {
            assert_eq!(over_https(&headers(pairs)), want, "{pairs:?}");
        }
        assert!(set_cookie("v", true).ends_with("; Secure") && !set_cookie("v", false).contains("Secure"));
        assert!(clear_cookie(true).contains("Max-Age=0; Secure"));
    }
}
