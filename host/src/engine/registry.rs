//! Which components are loaded and which routes lead to them.
//!
//! The whole table sits behind one `ArcSwap`: a request looks it up once and
//! keeps the `Arc<ComponentVersion>` it found until it ends, so installing a
//! new version is a single atomic store that never disturbs calls in flight.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use arc_swap::ArcSwap;

use crate::engine::bindings::Manifest;
use crate::engine::canary::Canary;
use crate::engine::version::ComponentVersion;

/// A route's placeholder values, in order: `[("id", "42")]`.
pub type Params = Vec<(String, String)>;

#[derive(Default)]
pub struct Registry {
    table: ArcSwap<Table>,
}

#[derive(Default, Clone)]
pub struct Table {
    pub components: BTreeMap<String, Arc<ComponentVersion>>,
    /// A second version beside a live one, taking a share of its traffic.
    pub canaries: BTreeMap<String, Arc<Canary>>,
}

/// The version chosen for one request or event, and the canary's tally
/// its answer goes to, if the component has a canary.
pub struct Pick {
    pub version: Arc<ComponentVersion>,
    canary: Option<(Arc<Canary>, bool)>,
}

impl Pick {
    /// Counts the answer on the side that gave it.
    pub fn observe(&self, ok: bool, took: std::time::Duration) {
        if let Some((canary, taken)) = &self.canary {
            let side = if *taken { &canary.canary } else { &canary.stable };
            side.observe(ok, took);
        }
    }
}

/// The outcome of routing a request.
pub enum Routed {
    /// The version serving it, the route pattern that matched and the
    /// values of its placeholders: the component gets both and routes no
    /// more.
    Found(Arc<ComponentVersion>, String, Params),
    /// The path exists, with these other methods.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

impl Table {
    /// Every stream a loaded component publishes to, once each.
    pub fn published(&self) -> Vec<String> {
        let mut streams: Vec<String> = self.components.values().flat_map(|c| c.manifest.publishes.clone()).collect();
        streams.sort_unstable();
        streams.dedup();
        streams
    }

    /// The loaded components that publish: the namespaces whose outbox may hold entries.
    pub fn publishers(&self) -> Vec<String> {
        self.components.iter().filter(|(_, c)| !c.manifest.publishes.is_empty()).map(|(n, _)| n.clone()).collect()
    }

    /// Every (stream, group) a loaded component reads, once each, sorted.
    pub fn read(&self) -> Vec<(String, String)> {
        let mut read: Vec<(String, String)> = self
            .components
            .values()
            .flat_map(|c| c.manifest.subscriptions.iter().map(|s| (s.stream.clone(), s.group.clone())))
            .collect();
        read.sort_unstable();
        read.dedup();
        read
    }

    /// Every stream a loaded component publishes or consumes, once each.
    pub fn streams(&self) -> Vec<String> {
        let mut streams: Vec<String> = self
            .components
            .values()
            .flat_map(|c| {
                let m = &c.manifest;
                m.publishes.iter().cloned().chain(m.subscriptions.iter().map(|s| s.stream.clone()))
            })
            .collect();
        streams.sort_unstable();
        streams.dedup();
        streams
    }
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<ComponentVersion>> {
        self.table.load().components.get(name).cloned()
    }

    pub fn canary(&self, name: &str) -> Option<Arc<Canary>> {
        self.table.load().canaries.get(name).cloned()
    }

    /// Puts `canary` beside `name`'s live version (None: removes it). It
    /// must keep that version's routes and subscriptions: the routing table
    /// and the readers are shared.
    pub fn set_canary(&self, name: &str, canary: Option<Arc<Canary>>) -> Result<()> {
        let current = self.table.load();
        let mut next = Table::clone(&current);
        match canary {
            Some(c) => {
                let Some(live) = current.components.get(name) else { bail!("{name} is not loaded") };
                let (a, b) = (&live.manifest, &c.version.manifest);
                let routes = |m: &Manifest| {
                    let mut r: Vec<String> = m.routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
                    r.sort();
                    r
                };
                let subs = |m: &Manifest| {
                    let mut s: Vec<(String, String)> =
                        m.subscriptions.iter().map(|s| (s.stream.clone(), s.group.clone())).collect();
                    s.sort();
                    s
                };
                if c.version.name != name || routes(a) != routes(b) || subs(a) != subs(b) {
                    bail!("a canary must keep the name, routes and subscriptions of the version it is tried against");
                }
                next.canaries.insert(name.to_string(), c);
            }
            None => {
                next.canaries.remove(name);
            }
        }
        self.table.store(Arc::new(next));
        Ok(())
    }

    /// The version that serves traffic whose split text is `key`: `live`,
    /// or its canary if the canary takes that key.
    pub fn pick(&self, live: Arc<ComponentVersion>, key: &[u8]) -> Pick {
        let table = self.table.load();
        match table.canaries.get(&live.name) {
            None => Pick { version: live, canary: None },
            Some(c) if c.takes(key) => Pick { version: c.version.clone(), canary: Some((c.clone(), true)) },
            Some(c) => Pick { version: live, canary: Some((c.clone(), false)) },
        }
    }

    pub fn snapshot(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Installs `version` (replacing any version of the same name) if its
    /// routes do not collide with another component's.
    pub fn install(&self, version: Arc<ComponentVersion>) -> Result<()> {
        self.check(&version)?;
        let current = self.table.load();
        let mut next = Table::clone(&current);
        next.components.insert(version.name.clone(), version);
        self.table.store(Arc::new(next));
        Ok(())
    }

    /// Fails if `version`'s routes collide with another component's.
    pub fn check(&self, version: &ComponentVersion) -> Result<()> {
        let current = self.table.load();
        for other in current.components.values().filter(|o| o.name != version.name) {
            for r in &version.manifest.routes {
                for o in &other.manifest.routes {
                    if r.method.eq_ignore_ascii_case(&o.method) && same_shape(&r.path, &o.path) {
                        bail!("route {} {} is already served by {}", r.method, r.path, other.name);
                    }
                }
            }
        }
        Ok(())
    }

    /// Finds the component serving `method path`.
    pub fn route(&self, method: &str, path: &str) -> Routed {
        let table = self.table.load();
        let mut allowed: Vec<String> = Vec::new();
        for c in table.components.values() {
            match route_in(&c.manifest, method, path) {
                Found::Route(pattern, params) => return Routed::Found(c.clone(), pattern, params),
                Found::OtherMethods(mut methods) => allowed.append(&mut methods),
                Found::Nothing => {}
            }
        }
        allowed.sort_unstable();
        allowed.dedup();
        if allowed.is_empty() { Routed::NotFound } else { Routed::MethodNotAllowed(allowed) }
    }
}

/// Routing within one manifest.
pub enum Found {
    Route(String, Params),
    /// The path is served, with these other methods.
    OtherMethods(Vec<String>),
    Nothing,
}

/// The route of `manifest` serving `method path` (also for `calls.call`,
/// which names the component and leaves the route to the host).
pub fn route_in(manifest: &Manifest, method: &str, path: &str) -> Found {
    let mut allowed = Vec::new();
    for r in &manifest.routes {
        if let Some(params) = params(&r.path, path) {
            if r.method.eq_ignore_ascii_case(method) {
                return Found::Route(r.path.clone(), params);
            }
            allowed.push(r.method.to_ascii_uppercase());
        }
    }
    if allowed.is_empty() { Found::Nothing } else { Found::OtherMethods(allowed) }
}

/// The placeholder values if `path` fits `pattern` (`/products/{id}`); a
/// placeholder takes one non-empty segment.
pub fn params(pattern: &str, path: &str) -> Option<Params> {
    let mut pat = pattern.trim_matches('/').split('/');
    let mut segs = path.trim_matches('/').split('/');
    let mut params = Vec::new();
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(params),
            // `{*name}`, last: the rest of the path, one segment or more (a mount).
            (Some(p), Some(s))
                if p.starts_with("{*") && p.ends_with('}') && !s.is_empty() && pat.clone().next().is_none() =>
            {
                let rest: Vec<&str> = std::iter::once(s).chain(segs).collect();
                params.push((p[2..p.len() - 1].to_string(), rest.join("/")));
                return Some(params);
            }
            (Some(p), Some(s)) => match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(_) if s.is_empty() => return None,
                Some(name) => params.push((name.to_string(), s.to_string())),
                None if p != s => return None,
                None => {}
            },
            _ => return None,
        }
    }
}

/// Two patterns that can match the same path.
fn same_shape(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        p.trim_matches('/')
            .split('/')
            .map(|s| {
                if s.starts_with("{*") {
                    "{*}".to_string()
                } else if s.starts_with('{') {
                    "{}".to_string()
                } else {
                    s.to_string()
                }
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (norm(a), norm(b));
    // A `{*rest}` segment takes every path at least as long as its own.
    let rest = |p: &[String]| p.last().is_some_and(|s| s.starts_with("{*"));
    let len_ok = match (rest(&a), rest(&b)) {
        (false, false) => a.len() == b.len(),
        (true, false) => b.len() >= a.len(),
        (false, true) => a.len() >= b.len(),
        (true, true) => true,
    };
    len_ok && a.iter().zip(&b).all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = |pattern, path| params(pattern, path);
        assert_eq!(p("/products/{id}", "/products/42"), Some(vec![("id".into(), "42".into())]));
        assert_eq!(p("/products", "/products/"), Some(vec![]));
        assert_eq!(p("/orders/{id}/refund", "/orders/abc/refund"), Some(vec![("id".into(), "abc".into())]));
        assert_eq!(p("/products/{id}", "/products"), None);
        assert_eq!(p("/products/{id}", "/products//"), None);
        assert_eq!(p("/orders/{id}/refund", "/orders/1/refund/x"), None);
        assert_eq!(p("/products", "/orders"), None);
    }

    #[test]
    fn overlapping_patterns_collide() {
        assert!(same_shape("/products/{id}", "/products/{pid}"));
        assert!(same_shape("/products/{id}", "/products/special"));
        assert!(!same_shape("/products/{id}", "/orders/{id}"));
        assert!(!same_shape("/products", "/products/{id}"));
        // A mount takes everything under it, and nothing beside it.
        assert!(same_shape("/hello/{*path}", "/hello/{id}"));
        assert!(same_shape("/hello/{*path}", "/hello/a/b/c"));
        assert!(!same_shape("/hello/{*path}", "/hello"));
        assert!(!same_shape("/hello/{*path}", "/products/{id}"));
    }

    #[test]
    fn a_rest_segment_takes_the_rest_of_the_path() {
        let got = |path| params("/hello/{*path}", path);
        assert_eq!(got("/hello/a/b"), Some(vec![("path".to_string(), "a/b".to_string())]));
        assert_eq!(got("/hello/x"), Some(vec![("path".to_string(), "x".to_string())]));
        assert_eq!(got("/hello"), None);
        assert_eq!(got("/hellox/a"), None);
    }

    mod properties {
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn matching_never_panics_and_params_never_span_segments(path in "\\PC{0,80}", seg in "[^/]{1,10}") {
                if let Some(params) = super::super::params("/products/{id}/stock/{n}", &path) {
                    prop_assert_eq!(params.len(), 2);
                    prop_assert!(params.iter().all(|(_, v)| !v.is_empty() && !v.contains('/')));
                }
                let (one, two) = (format!("/products/{seg}"), format!("/products/{seg}/{seg}"));
                let pattern = "/products/{id}";
                prop_assert_eq!(super::super::params(pattern, &one), Some(vec![("id".to_string(), seg.clone())]));
                prop_assert!(super::super::params(pattern, &two).is_none());
            }
        }
    }
}
