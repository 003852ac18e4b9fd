//! Who is calling, and how often. API keys and JWTs (HS256 with a shared
//! secret, RS256 with public keys from a JWKS file) become an identity
//! (a subject and a role) that the gateway hands to components as the
//! `x-wharf-subject` and `x-wharf-role` headers, after removing any the
//! client sent: components trust those headers because only the host sets
//! them. Deciding what a role may do is the component's business (inventory:
//! only `admin` writes products; payment: a `customer` sees its own orders).
//!
//! The JWKS file is read again every `jwt_jwks_poll_ms`: an identity
//! provider rotates its keys by publishing the new one beside the old, and
//! the host picks it up without a restart. A file that gives no usable key
//! (unreadable, not a key set, an empty set) leaves the keys as they were:
//! a half-written file must not lock every caller out.
//!
//! The rate limit is a token bucket per client in Redis, updated by one
//! script, so several hosts share one budget per client.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, ROLES, is_valid_subject};
use crate::storage::Store;
use crate::storage::scripts::TAKE_TOKEN;

pub const SUBJECT_HEADER: &str = "x-wharf-subject";
pub const ROLE_HEADER: &str = "x-wharf-role";
const API_KEY_HEADER: &str = "x-api-key";

/// Request headers that carry a caller's secrets. No component sees them
/// (the gateway and `calls.call` remove them): the host has already turned
/// them into `x-wharf-subject`/`x-wharf-role`, and a component that kept an
/// admin's token could replay it.
pub const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", API_KEY_HEADER, "cookie", "proxy-authorization"];

/// The headers only the host may set: who the caller is.
pub fn is_identity_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(SUBJECT_HEADER) || name.eq_ignore_ascii_case(ROLE_HEADER)
}

/// A caller as components see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    /// `admin`, `customer` or `anonymous`.
    pub role: String,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity { subject: String::new(), role: "anonymous".into() }
    }
}

impl Authenticator {
    /// The key a caller's rate limit is counted under: its subject when it
    /// proved one, else its address (with authentication off every caller
    /// is the same "local" admin, so the address it is). Behind a proxy,
    /// anonymous callers share the proxy's address.
    fn client_key(&self, identity: &Identity, peer: IpAddr) -> String {
        if !self.enabled || identity.subject.is_empty() {
            format!("ip:{}", client_network(peer))
        } else {
            format!("sub:{}", identity.subject)
        }
    }
}

/// The network a caller's address stands for: an IPv4 address is one
/// client, but one IPv6 customer usually holds a whole /64, and counting
/// each of its addresses apart would give it 2^64 budgets.
pub fn client_network(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

/// The subject of a JWT as components see it: `<iss>#<sub>` (`jwt#<sub>`
/// without an `iss`). A `sub` is unique only within its issuer (OpenID
/// Connect), and API-key subjects may not contain `#`: an identity
/// provider's `alice` is never the API key `alice`, nor another issuer's.
fn jwt_subject(claims: &Claims) -> Option<String> {
    let issuer = match &claims.iss {
        None => "jwt",
        Some(serde_json::Value::String(iss)) => iss.as_str(),
        Some(_) => return None,
    };
    let subject = format!("{issuer}#{}", claims.sub);
    (is_valid_subject(issuer) && is_valid_subject(&claims.sub) && subject.len() <= MAX_SUBJECT).then_some(subject)
}

/// Why the rate limit refused a request.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Over its budget: try again after this long.
    OverBudget(Duration),
    /// Redis could not tell, and the limit fails closed.
    Unavailable,
}

/// Turns credentials into identities and applies the rate limit.
pub struct Authenticator {
    enabled: bool,
    keys: Vec<(String, Identity)>,
    jwt: Option<DecodingKey>,
    /// RS256 public keys by `kid`, swapped whole when the JWKS file changes.
    rsa: ArcSwap<Vec<RsaKey>>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    rate_per_second: f64,
    burst: u32,
    fail_closed: bool,
}

/// An RS256 public key and its `kid`.
type RsaKey = (Option<String>, DecodingKey);

/// Where the RS256 keys come from, and the digest of what was last loaded
/// (so an unchanged file is not parsed again).
struct Jwks {
    file: PathBuf,
    poll: Duration,
    loaded: Mutex<[u8; 32]>,
}

impl Authenticator {
    pub fn new(cfg: &Auth) -> Result<Authenticator> {
        let keys = cfg
            .api_keys
            .iter()
            .map(|(key, k)| (key.clone(), Identity { subject: k.subject.clone(), role: k.role.clone() }))
            .collect();
        let (rsa, jwks) = match &cfg.jwt_jwks_file {
            Some(path) => {
                let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let keys = rsa_keys(&text).with_context(|| format!("loading the JWKS {}", path.display()))?;
                let poll = Duration::from_millis(cfg.jwt_jwks_poll_ms.max(100));
                (keys, Some(Jwks { file: path.clone(), poll, loaded: Mutex::new(Sha256::digest(&text).into()) }))
            }
            None => (Vec::new(), None),
        };
        Ok(Authenticator {
            enabled: cfg.enabled(),
            keys,
            jwt: cfg.jwt_hs256_secret.as_deref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            rsa: ArcSwap::from_pointee(rsa),
            jwks,
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
            rate_per_second: cfg.rate_limit_per_second,
            burst: cfg.rate_limit_burst.max(1),
            fail_closed: cfg.rate_limit_fail_closed,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller's identity; `Err` (a reason, for a 401) when it sent
    /// credentials that are not valid. No credentials: anonymous.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, &'static str> {
        if !self.enabled {
            return Ok(Identity { subject: "local".into(), role: "admin".into() });
        }
        let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or_else(|| headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()));
        let Some(token) = given.map(str::trim) else { return Ok(Identity::anonymous()) };
        // Every key is compared, without an early exit: timing says nothing.
        let mut found = None;
        for (key, identity) in &self.keys {
            if constant_time_eq(key.as_bytes(), token.as_bytes()) {
                found = Some(identity.clone());
            }
        }
        if let Some(identity) = found {
            return Ok(identity);
        }
        let claims = self.verify_jwt(token)?;
        let subject = jwt_subject(&claims);
        match subject {
            Some(subject) if ROLES.contains(&claims.role.as_str()) => Ok(Identity { subject, role: claims.role }),
            _ => Err("the token's role, subject or issuer is not valid"),
        }
    }

    /// The claims of a JWT signed with a key we trust. The token's `alg`
    /// picks the key family and each key verifies only its own algorithm, so
    /// an HS256 token "signed" with a public RSA key is refused.
    fn verify_jwt(&self, token: &str) -> Result<Claims, &'static str> {
        const INVALID: &str = "the token is not valid (signature, expiry or shape)";
        let rsa = self.rsa.load();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| if self.jwt.is_none() && rsa.is_empty() { "the API key is not valid" } else { INVALID })?;
        let key = match header.alg {
            Algorithm::HS256 => self.jwt.as_ref(),
            Algorithm::RS256 => match (&header.kid, rsa.as_slice()) {
                (Some(kid), keys) => keys.iter().find(|(k, _)| k.as_deref() == Some(kid.as_str())).map(|(_, key)| key),
                // No kid: only unambiguous with a single key.
                (None, [(_, key)]) => Some(key),
                (None, _) => None,
            },
            _ => None,
        };
        let key = key.ok_or(INVALID)?;
        let mut validation = Validation::new(header.alg);
        // The library checks `iss` and `aud` only when a token carries them
        // (and a non-string `aud` counts as absent): a configured one is
        // required, so a token minted for no one in particular is refused.
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, key, &validation).map(|t| t.claims).map_err(|_| INVALID)
    }

    /// Takes one request from the caller's budget. If Redis cannot answer,
    /// the request is let through (it needs Redis anyway and will get its
    /// own 503) unless `rate_limit_fail_closed` is set.
    pub async fn admit(&self, redis: &Store, identity: &Identity, peer: IpAddr) -> Result<(), Refusal> {
        if self.rate_per_second <= 0.0 {
            return Ok(());
        }
        let key = format!("wharf:ratelimit:{{{}}}", hex::encode(self.client_key(identity, peer)));
        let mut inv = TAKE_TOKEN.key(key);
        inv.arg(self.rate_per_second).arg(self.burst);
        let mut conn = redis.conn();
        match tokio::time::timeout(redis.timeout, inv.invoke_async::<(i64, u64)>(&mut conn)).await {
            Ok(Ok((1, _))) => Ok(()),
            Ok(Ok((_, wait_ms))) => Err(Refusal::OverBudget(Duration::from_millis(wait_ms.max(1)))),
            Ok(Err(e)) => self.unknown_budget(&e.to_string()),
            Err(_) => self.unknown_budget("redis timed out"),
        }
    }

    /// Redis could not say whether the caller is within budget: let the
    /// request through (it will meet Redis again and get its own 503), or,
    /// failing closed, refuse it as unavailable.
    fn unknown_budget(&self, why: &str) -> Result<(), Refusal> {
        if self.fail_closed {
            tracing::warn!(error = why, "rate limit check failed; refusing the request (fail closed)");
            return Err(Refusal::Unavailable);
        }
        tracing::warn!(error = why, "rate limit check failed; letting the request through");
        Ok(())
    }
}

impl Authenticator {
    /// Reads the JWKS file again; `Ok(Some(kids))` when its keys changed.
    /// An error (unreadable, not a key set, no usable key) changes nothing.
    pub fn reload_jwks(&self) -> Result<Option<Vec<String>>> {
        let Some(jwks) = &self.jwks else { return Ok(None) };
        let text = std::fs::read(&jwks.file).with_context(|| format!("reading {}", jwks.file.display()))?;
        let digest: [u8; 32] = Sha256::digest(&text).into();
        let mut loaded = jwks.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == digest {
            return Ok(None);
        }
        let keys = rsa_keys(&text).with_context(|| format!("loading the JWKS {}", jwks.file.display()))?;
        let kids = keys.iter().map(|(kid, _)| kid.clone().unwrap_or_default()).collect();
        self.rsa.store(Arc::new(keys));
        *loaded = digest;
        Ok(Some(kids))
    }
}

/// Re-reads the JWKS file every `jwt_jwks_poll_ms` until shutdown. Polling,
/// not file events: secret mounts (Kubernetes) replace the file through a
/// symlink swap that file watches miss.
pub async fn watch_jwks(auth: Arc<Authenticator>, shutdown: CancellationToken) {
    let Some(poll) = auth.jwks.as_ref().map(|j| j.poll) else { return };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The failure last logged, so a broken file is reported once, not every poll.
    let mut failing: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let a = auth.clone();
        match tokio::task::spawn_blocking(move || a.reload_jwks()).await {
            Ok(Ok(Some(kids))) => {
                tracing::info!(kids = ?kids, "JWKS reloaded");
                failing = None;
            }
            Ok(Ok(None)) => failing = None,
            Ok(Err(e)) => {
                let e = format!("{e:#}");
                if failing.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "the JWKS file is not usable; keeping the keys loaded before");
                    failing = Some(e);
                }
            }
            Err(e) => tracing::error!(error = %e, "reloading the JWKS panicked"),
        }
    }
}

/// The RS256 signing keys of a JWKS document, with their `kid`. Providers
/// publish other keys beside them (encryption, EC): those are skipped with a
/// warning; a set with no usable key is an error, so a wrong file does not
/// silently trust nothing.
fn rsa_keys(jwks: &[u8]) -> Result<Vec<RsaKey>> {
    let set: JwkSet = serde_json::from_slice(jwks).context("not a JSON Web Key Set")?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
        let rs256 = jwk.common.key_algorithm.is_none_or(|a| a.to_string() == "RS256");
        let signs = jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature);
        if !(rsa && rs256 && signs) {
            tracing::warn!(kid = ?kid, "skipping a JWKS key that is not an RS256 signing key");
            continue;
        }
        keys.push((kid, DecodingKey::from_jwk(jwk).context("unusable RSA key")?));
    }
    if keys.is_empty() {
        bail!("no RS256 signing key in the set");
    }
    Ok(keys)
}

/// The longest subject: a JWT's is its issuer and `sub`, each up to 128.
const MAX_SUBJECT: usize = 257;

/// Compares without an early exit, so timing does not reveal a secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn auth() -> Authenticator {
        let mut cfg = Auth::default();
        cfg.api_keys.insert("k-alice-0123456789".into(), ApiKey { role: "customer".into(), subject: "alice".into() });
        cfg.jwt_hs256_secret = Some("a-test-secret-of-at-least-32-characters".into());
        Authenticator::new(&cfg).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_tokens_and_anonymous_callers() {
        let a = auth();
        assert_eq!(a.authenticate(&headers(&[])).unwrap().role, "anonymous");
        let alice = a.authenticate(&headers(&[("authorization", "Bearer k-alice-0123456789")])).unwrap();
        assert_eq!((alice.subject.as_str(), alice.role.as_str()), ("alice", "customer"));
        assert_eq!(a.authenticate(&headers(&[("x-api-key", "k-alice-0123456789")])).unwrap(), alice);
        assert!(a.authenticate(&headers(&[("authorization", "Bearer nope")])).is_err());

        let claims = serde_json::json!({"sub": "carol", "role": "admin", "exp": 4_000_000_000u64});
        let key = jsonwebtoken::EncodingKey::from_secret(b"a-test-secret-of-at-least-32-characters");
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        let carol = a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).unwrap();
        // A JWT's subject is qualified by its issuer: never an API key's subject.
        assert_eq!((carol.subject.as_str(), carol.role.as_str()), ("jwt#carol", "admin"));

        let expired = serde_json::json!({"sub": "carol", "role": "admin", "exp": 1_000u64});
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &expired, &key).unwrap();
        assert!(a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).is_err());
        let other = jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-at-least-32-characters");
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &other).unwrap();
        assert!(a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).is_err());
    }

    #[test]
    fn rs256_tokens_from_a_jwks_file() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let cfg = Auth {
            jwt_jwks_file: Some(fixtures.join("jwks.json")),
            jwt_hs256_secret: Some("a-test-secret-of-at-least-32-characters".into()),
            ..Auth::default()
        };
        let a = Authenticator::new(&cfg).unwrap();
        let claims = serde_json::json!({"sub": "dave", "role": "customer", "exp": 4_000_000_000u64});
        let sign = |header: jsonwebtoken::Header, key: &jsonwebtoken::EncodingKey| {
            let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
            a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))]))
        };
        let ours =
            jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(fixtures.join("rs256-test-key.der")).unwrap());
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("wharf-test-1".into());
        assert_eq!(sign(header.clone(), &ours).unwrap().subject, "jwt#dave");
        // One key in the set: a token without kid is still unambiguous.
        assert_eq!(sign(jsonwebtoken::Header::new(Algorithm::RS256), &ours).unwrap().role, "customer");
        // An unknown kid, another private key, or the public key used as an HS256 secret: refused.
        let mut unknown = header.clone();
        unknown.kid = Some("someone-else".into());
        assert!(sign(unknown, &ours).is_err());
        let theirs =
            jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(fixtures.join("rs256-other-key.der")).unwrap());
        assert!(sign(header, &theirs).is_err());
        // Providers' tokens carry `aud`: accepted while no audience is configured.
        let with_aud = serde_json::json!({"sub": "dave", "role": "customer", "exp": 4_000_000_000u64, "aud": "shop", "iss": "idp"});
        let mut kid = jsonwebtoken::Header::new(Algorithm::RS256);
        kid.kid = Some("wharf-test-1".into());
        let token = jsonwebtoken::encode(&kid, &with_aud, &ours).unwrap();
        let bearer = format!("Bearer {token}");
        assert!(a.authenticate(&headers(&[("authorization", &bearer)])).is_ok());
        // With an audience and an issuer configured, both must match.
        for (iss, aud, ok) in [("idp", "shop", true), ("idp", "other", false), ("evil", "shop", false)] {
            let mut cfg = cfg.clone();
            (cfg.jwt_issuer, cfg.jwt_audience) = (Some(iss.into()), Some(aud.into()));
            let checked = Authenticator::new(&cfg).unwrap();
            assert_eq!(checked.authenticate(&headers(&[("authorization", &bearer)])).is_ok(), ok, "{iss} {aud}");
        }

        // Algorithm confusion: with only the key set configured, an HS256
        // token "signed" with the public key material is refused.
        let rsa_only =
            Authenticator::new(&Auth { jwt_jwks_file: cfg.jwt_jwks_file.clone(), ..Auth::default() }).unwrap();
        let public = std::fs::read(fixtures.join("jwks.json")).unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(&public).unwrap();
        for material in [public.clone(), jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec()] {
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&material),
            )
            .unwrap();
            assert!(rsa_only.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).is_err());
        }

        // Other keys beside the signing key are skipped; a set with none fails at start-up.
        let mixed = format!(
            r#"{{"keys": [{{"kty": "oct", "k": "c2VjcmV0"}}, {}, {}]}}"#,
            jwks["keys"][0],
            jwks["keys"][0].to_string().replace(r#""use":"sig""#, r#""use":"enc""#)
        );
        assert_eq!(rsa_keys(mixed.as_bytes()).unwrap().len(), 1);
        assert!(rsa_keys(br#"{"keys": []}"#).is_err());
        assert!(rsa_keys(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(rsa_keys(b"not json").is_err());
    }

    /// A rotated key set replaces the old one; a broken file changes nothing.
    #[test]
    fn a_rewritten_jwks_file_is_picked_up_and_a_broken_one_ignored() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let dir = std::env::temp_dir().join(format!("wharf-jwks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        std::fs::copy(fixtures.join("jwks.json"), &file).unwrap();
        let a = Authenticator::new(&Auth { jwt_jwks_file: Some(file.clone()), ..Auth::default() }).unwrap();
        let claims = serde_json::json!({"sub": "dave", "role": "customer", "exp": 4_000_000_000u64});
        let accepts = |der: &str, kid: &str| {
            let key = jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(fixtures.join(der)).unwrap());
            let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
            header.kid = Some(kid.into());
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).is_ok()
        };
        assert!(accepts("rs256-test-key.der", "wharf-test-1"));
        assert!(!accepts("rs256-other-key.der", "wharf-test-2"));
        assert_eq!(a.reload_jwks().unwrap(), None, "unchanged file");

        std::fs::copy(fixtures.join("jwks-other.json"), &file).unwrap();
        assert_eq!(a.reload_jwks().unwrap(), Some(vec!["wharf-test-2".to_string()]));
        assert!(accepts("rs256-other-key.der", "wharf-test-2"));
        assert!(!accepts("rs256-test-key.der", "wharf-test-1"), "the retired key is no longer trusted");

        for broken in [&b"{\"keys\": ["[..], br#"{"keys": []}"#] {
            std::fs::write(&file, broken).unwrap();
            assert!(a.reload_jwks().is_err());
            assert!(accepts("rs256-other-key.der", "wharf-test-2"), "a broken file keeps the keys");
        }
        std::fs::remove_file(&file).unwrap();
        assert!(a.reload_jwks().is_err());
        assert!(accepts("rs256-other-key.der", "wharf-test-2"), "a missing file keeps the keys");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With an issuer and audience configured, a token must carry them (the
    /// library alone lets a token without them through), `aud` must be a
    /// string or a list of them, and a token not valid yet (`nbf`) is refused.
    #[test]
    fn configured_claims_are_required_and_nbf_is_checked() {
        let secret = "a-test-secret-of-at-least-32-characters";
        let cfg = Auth {
            api_keys: [("k-alice-0123456789".to_string(), ApiKey { role: "customer".into(), subject: "alice".into() })]
                .into(),
            jwt_hs256_secret: Some(secret.into()),
            jwt_issuer: Some("https://idp.example/".into()),
            jwt_audience: Some("wharf".into()),
            ..Auth::default()
        };
        let a = Authenticator::new(&cfg).unwrap();
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let check = |claims: serde_json::Value| {
            let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
            a.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))]))
        };
        let exp = 4_000_000_000u64;
        let good = check(serde_json::json!({"sub": "alice", "role": "customer", "exp": exp,
                                            "iss": "https://idp.example/", "aud": "wharf"}))
        .unwrap();
        assert_eq!(good.subject, "https://idp.example/#alice", "the issuer's alice, not the API key's");
        for bad in [
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "aud": "wharf"}),
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "iss": "https://idp.example/"}),
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "iss": "https://idp.example/", "aud": 7}),
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "iss": "https://idp.example/",
                               "aud": "wharf", "nbf": exp - 1}),
        ] {
            assert!(check(bad.clone()).is_err(), "accepted {bad}");
        }
        // Without a configured issuer, a non-string `iss` still cannot name a subject.
        let open = Authenticator::new(&Auth { jwt_hs256_secret: Some(secret.into()), ..Auth::default() }).unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "iss": ["a", "b"]}),
            &key,
        )
        .unwrap();
        assert!(open.authenticate(&headers(&[("authorization", &format!("Bearer {token}"))])).is_err());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let net = |s: &str| client_network(s.parse().unwrap()).to_string();
        assert_eq!(net("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), net("2001:db8:1:2::1"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(net("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn off_means_local_admin() {
        let a = Authenticator::new(&Auth::default()).unwrap();
        assert_eq!(a.authenticate(&headers(&[("authorization", "Bearer anything")])).unwrap().role, "admin");
    }
}
