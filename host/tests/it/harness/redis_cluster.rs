//! A private Redis Cluster per test: `redis-server --cluster-enabled yes`
//! on free loopback ports, joined by `redis-cli --cluster create`.
//!
//! `scripts/test.sh` runs the flow tests a second time with
//! `WHARF_TEST_REDIS=cluster`: every `TestRedis::start()` is then a 3-primary
//! cluster, and the host under test reaches it through a
//! `redis+cluster://` URL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{free_port, scratch_dir};

/// The nodes of one cluster; killed, and their directory removed, on drop.
pub struct Cluster {
    pub ports: Vec<u16>,
    pub dir: PathBuf,
    children: Mutex<Vec<Option<Child>>>,
}

/// True when `scripts/test.sh` asks for the tests to run on a cluster.
pub fn wanted() -> bool {
    std::env::var("WHARF_TEST_REDIS").is_ok_and(|v| v == "cluster")
}

impl Cluster {
    /// `primaries` primaries with `replicas` replicas each, ready to serve.
    pub fn start(primaries: usize, replicas: usize) -> Cluster {
        let dir = scratch_dir("cluster");
        let mut cluster = Cluster { ports: Vec::new(), dir, children: Mutex::new(Vec::new()) };
        // One node at a time, each up before the next picks its ports: a
        // free port is only free until someone binds it, so a node that
        // lost the race (exited at once) is started again on new ports.
        for _ in 0..primaries * (1 + replicas) {
            let (port, child) = cluster.spawn_on_free_ports();
            cluster.ports.push(port);
            cluster.children.get_mut().unwrap().push(Some(child));
        }
        let addrs: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        // `--cluster create` wants three primaries; a lone node takes every slot itself.
        let create: Vec<String> = if addrs.len() == 1 {
            ["-p", &cluster.ports[0].to_string(), "cluster", "addslotsrange", "0", "16383"].map(String::from).to_vec()
        } else {
            let mut args: Vec<String> = ["--cluster", "create"].map(String::from).to_vec();
            args.extend(addrs);
            args.extend(["--cluster-replicas".into(), replicas.to_string(), "--cluster-yes".into()]);
            args
        };
        let out = Command::new("redis-cli")
            .args(&create)
            .output()
            .expect("redis-cli must be installed (scripts/test.sh installs it)");
        assert!(out.status.success(), "redis-cli {create:?} failed: {}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_until_ok();
        // Replicas in sync before the test writes (a WAIT counts only them).
        let replica_ports: Vec<u16> = cluster.ports.iter().copied().filter(|p| node_info_role(*p) == "slave").collect();
        assert_eq!(replica_ports.len(), primaries * replicas, "every replica has its primary");
        for port in replica_ports {
            cluster.wait_until_replicating(port, Duration::from_secs(30));
        }
        cluster
    }

    /// A node answering PING, on a port picked now; up to 5 tries.
    fn spawn_on_free_ports(&self) -> (u16, Child) {
        for _ in 0..5 {
            let port = free_port();
            let mut child = self.spawn(port);
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            if wait_for_ping(&client, &mut child) {
                return (port, child);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    fn spawn(&self, port: u16) -> Child {
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            // A bus port of its own: the default, port + 10000, may be taken or past 65535.
            .args(["--cluster-port", &free_port().to_string()])
            .args(["--cluster-node-timeout", "2000"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)")
    }

    /// Every node says the cluster is `ok` and knows every other node.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.ports.iter().all(|p| {
                let info = node_info(*p, "INFO");
                info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{}", self.ports.len()))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The ports of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.ports.iter().copied().filter(|p| node_info_role(*p) == "master").collect()
    }

    /// Kills the node at `port` (SIGKILL: no goodbye to the others).
    pub fn kill_node(&self, port: u16) {
        let at = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        if let Some(mut child) = self.children.lock().unwrap()[at].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the node at `port` is a replica in sync with its primary.
    pub fn wait_until_replicating(&self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let info: String = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_connection()
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.contains("role:slave") && info.contains("master_link_status:up") {
                return;
            }
            assert!(Instant::now() < deadline, "the node at {port} did not replicate within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `primaries` nodes still up are primaries (a replica took
    /// over from a killed one) and every node up says the cluster is `ok`,
    /// or panics after `within`.
    pub fn wait_until_serving(&self, primaries: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let up: Vec<String> = self.ports.iter().map(|p| node_info(*p, "INFO")).filter(|i| !i.is_empty()).collect();
            if self.primaries().len() == primaries && up.iter().all(|i| i.contains("cluster_state:ok")) {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not serve again within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn client(&self) -> redis::cluster::ClusterClient {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
        redis::cluster::ClusterClient::new(nodes).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.lock().unwrap().iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True once the server `child` answers PING through `client`; false if it
/// exited (its port or bus port was taken) or is silent for 10 s.
pub fn wait_for_ping(client: &redis::Client, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = |child: &mut Child| child.try_wait().is_ok_and(|status| status.is_some());
    while Instant::now() < deadline {
        if exited(child) {
            return false;
        }
        if let Ok(mut c) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            // Ours, not another test's server that won the port.
            return !exited(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `CLUSTER <what>` of one node, as text ("" if it does not answer).
fn node_info(port: u16, what: &str) -> String {
    let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection() else {
        return String::new();
    };
    redis::cmd("CLUSTER").arg(what).query::<String>(&mut c).unwrap_or_default()
}

fn node_info_role(port: u16) -> String {
    let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection() else {
        return String::new();
    };
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap_or_default();
    info.lines().find_map(|l| l.strip_prefix("role:")).unwrap_or("").trim().to_string()
}

/// A connection to the test's Redis, one server or a cluster, usable as a
/// `redis::ConnectionLike` by the tests' commands.
pub enum Conn {
    Node(redis::Connection),
    Cluster(redis::cluster::ClusterConnection, Vec<u16>),
}

impl redis::ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Conn::Node(c) => c.req_command(cmd),
            Conn::Cluster(c, _) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c, _) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Conn::Node(c) => c.supports_pipelining(),
            Conn::Cluster(c, _) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Node(c) => c.check_connection(),
            Conn::Cluster(c, _) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Node(c) => c.is_open(),
            Conn::Cluster(c, _) => c.is_open(),
        }
    }
}
