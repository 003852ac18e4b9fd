//! The connections to Redis: one server, or a Redis Cluster.
//!
//! A single server gets `ConnectionManager`s, which reconnect by
//! themselves. A cluster gets the redis crate's async cluster client: it
//! keeps the slot map, follows `MOVED` and `ASK` redirections, retries
//! `TRYAGAIN` while a slot migrates, and reads the map again after a
//! failover. Both sit behind [`Conn`], so the rest of the host is written
//! once. Everything one command, pipeline or script touches shares a hash
//! tag (see `storage`), so each goes to one node whole.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value};

/// Where Redis is, and how to open connections to it.
#[derive(Clone)]
pub enum Target {
    Node(redis::Client),
    Cluster { client: ClusterClient, seeds: Vec<ConnectionInfo> },
}

impl Target {
    /// `seeds`: one URL for a single server; for a cluster, the URLs of
    /// some of its nodes (`cluster_seeds`).
    pub fn open(seeds: &[String], cluster: bool, certs: Option<TlsCertificates>) -> Result<Target> {
        let Some(first) = seeds.first() else { bail!("no Redis URL") };
        if !cluster {
            return Ok(Target::Node(match certs {
                Some(certs) => redis::Client::build_with_tls(first.as_str(), certs)?,
                None => redis::Client::open(first.as_str())?,
            }));
        }
        let infos = seeds
            .iter()
            .map(|s| {
                s.as_str().into_connection_info().with_context(|| format!("invalid cluster seed {}", super::redact(s)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut builder = ClusterClient::builder(infos.clone());
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        Ok(Target::Cluster { client: builder.build()?, seeds: infos })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// A connection that connects on first use (a cluster one in the
    /// background at once: call it from the runtime that will use it, its
    /// tasks run there), so the host starts while Redis is down.
    pub fn connection(&self, timeout: Duration) -> Result<Conn> {
        Ok(match self {
            Target::Node(client) => Conn::Node(ConnectionManager::new_lazy_with_config(
                client.clone(),
                ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500)),
            )?),
            Target::Cluster { client, .. } => Conn::Cluster(client.get_pending_async_connection_with_config(
                ClusterConfig::new().set_response_timeout(timeout).set_connection_timeout(timeout),
            )),
        })
    }

    /// The settings (user, password, TLS, protocol) a direct connection to
    /// one node needs: the single server's, or the first seed's.
    pub fn node_info(&self) -> ConnectionInfo {
        match self {
            Target::Node(client) => client.get_connection_info().clone(),
            Target::Cluster { seeds, .. } => seeds[0].clone(),
        }
    }
}

/// A connection to Redis, whatever its shape; cheap to clone (clones share
/// the connection and pipeline their commands on it).
#[derive(Clone)]
pub enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends `cmd` to every primary and succeeds only if each answers: on a
    /// single server, sends it once.
    pub async fn on_every_primary(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd).await,
            Conn::Cluster(c) => {
                let route =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
                c.route_command(cmd.clone(), route).await
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipe, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The nodes to reach Redis through, and whether they form a cluster:
/// - `redis+cluster://[user:pass@]h1:p1,h2:p2[/]` (or `rediss+cluster://`):
///   a cluster, each host a seed, the login and scheme shared;
/// - `redis://h1:p1,redis://h2:p2`: a cluster, each URL a seed;
/// - one plain URL: a single server, or a cluster's seed when `cluster` (the
///   `redis_cluster` setting) says so.
pub fn cluster_seeds(url: &str, cluster: bool) -> Result<(Vec<String>, bool)> {
    for (tagged, plain) in [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")] {
        if let Some(rest) = url.strip_prefix(tagged) {
            let (login, hosts) = match rest.rfind('@') {
                Some(at) => (&rest[..=at], &rest[at + 1..]),
                None => ("", rest),
            };
            let hosts = hosts.trim_end_matches('/');
            let seeds: Vec<String> =
                hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{plain}{login}{h}")).collect();
            if seeds.is_empty() {
                bail!("{tagged} URL without a node");
            }
            return Ok((seeds, true));
        }
    }
    if url.contains(',') {
        let seeds: Vec<String> = url.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if let Some(bad) = seeds.iter().find(|s| !s.contains("://")) {
            bail!("each seed of a list of Redis URLs needs its scheme (redis://...): {}", super::redact(bad));
        }
        return Ok((seeds, true));
    }
    Ok((vec![url.to_string()], cluster))
}

/// `info` with its address replaced by `host:port`: a direct connection to
/// one node of a cluster, with the seed's login and TLS.
pub fn at_node(info: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
            ConnectionAddr::TcpTls { host: host.to_string(), port, insecure: *insecure, tls_params: tls_params.clone() }
        }
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    info.clone().set_addr(addr)
}

/// The slot ranges of a cluster and the primary that owns each, as
/// `(first slot, last slot, host, port)`, from `CLUSTER SLOTS` (each range:
/// start, end, then the primary first).
async fn slot_ranges(conn: &mut impl ConnectionLike) -> redis::RedisResult<Vec<(u16, u16, String, u16)>> {
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    Ok(ranges
        .iter()
        .filter_map(|range| match (range.first(), range.get(1), range.get(2)) {
            (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) => {
                match (node.first(), node.get(1)) {
                    (Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                        Some((*start as u16, *end as u16, String::from_utf8_lossy(host).into_owned(), *port as u16))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect())
}

/// The primaries of a cluster, as `(host, port)`.
pub async fn primaries(conn: &mut impl ConnectionLike) -> redis::RedisResult<Vec<(String, u16)>> {
    let mut found: Vec<(String, u16)> = slot_ranges(conn).await?.into_iter().map(|(_, _, h, p)| (h, p)).collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// One key per primary, in a slot that primary owns now: what a fenced
/// `WAIT` on each primary increments (`Store::confirm_replicated`).
pub async fn fence_keys(conn: &mut Conn, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut ranges = slot_ranges(conn).await?;
    ranges.sort_by(|a, b| (&a.2, a.3, a.0).cmp(&(&b.2, b.3, b.0)));
    ranges.dedup_by(|a, b| (&a.2, a.3) == (&b.2, b.3));
    Ok(ranges.iter().map(|(start, end, _, _)| fence_key_in(prefix, *start, *end)).collect())
}

/// `<prefix>{<n>}` for the first n whose slot is in `start..=end`.
fn fence_key_in(prefix: &str, start: u16, end: u16) -> String {
    let n = (0u32..)
        .find(|n| (start..=end).contains(&super::partition::slot(&n.to_string())))
        .expect("every slot has a key");
    format!("{prefix}{{{n}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_server_unless_told_otherwise() {
        assert_eq!(cluster_seeds("redis://h:1", false).unwrap(), (vec!["redis://h:1".to_string()], false));
        assert_eq!(cluster_seeds("redis://h:1", true).unwrap(), (vec!["redis://h:1".to_string()], true));
    }

    #[test]
    fn a_cluster_url_shares_its_login_and_scheme() {
        let (seeds, cluster) = cluster_seeds("rediss+cluster://u:p@a:1,b:2/", false).unwrap();
        assert!(cluster);
        assert_eq!(seeds, vec!["rediss://u:p@a:1", "rediss://u:p@b:2"]);
        assert!(cluster_seeds("redis+cluster://", false).is_err());
    }

    #[test]
    fn a_fence_key_lands_in_its_range() {
        for (start, end) in [(0, 5460), (5461, 10922), (10923, 16383), (100, 100)] {
            let key = fence_key_in("f:", start, end);
            let tag = &key[3..key.len() - 1];
            assert!((start..=end).contains(&crate::storage::partition::slot(tag)), "{key}");
        }
    }

    #[test]
    fn a_list_of_urls_is_a_cluster() {
        let (seeds, cluster) = cluster_seeds("redis://a:1, redis://b:2", false).unwrap();
        assert!(cluster);
        assert_eq!(seeds, vec!["redis://a:1", "redis://b:2"]);
        assert!(cluster_seeds("redis://a:1,b:2", false).is_err(), "a seed without its scheme");
    }
}
