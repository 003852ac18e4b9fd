//! A private `redis-server` per test, on a free loopback port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use super::redis_cluster::{self, Cluster, Conn};
use super::{free_port, make_certificates, scratch_dir};

/// A redis-server of our own; killed on drop.
pub struct TestRedis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Another test's server, used by a second host: never stopped from here.
    borrowed: bool,
    /// Append-only file on: a graceful stop and start keeps the data.
    persistent: bool,
    /// Only this ACL user may log in (the default user is off).
    pub user: Option<(String, String)>,
    /// TLS only, with certificates made in `dir` (see `make_certificates`).
    pub tls: bool,
    /// A Redis Cluster instead of one server (`port` and `dir` are then
    /// unused); shared by the borrowers, stopped when the last is dropped.
    pub cluster: Option<Arc<Cluster>>,
}

impl TestRedis {
    fn new(persistent: bool, user: Option<(&str, &str)>, tls: bool) -> TestRedis {
        let user = user.map(|(u, p)| (u.to_string(), p.to_string()));
        let mut redis = TestRedis {
            port: free_port(),
            dir: scratch_dir("redis"),
            child: None,
            borrowed: false,
            persistent,
            user,
            tls,
            cluster: None,
        };
        if tls {
            make_certificates(&redis.dir);
        }
        // A free port is free only until someone binds it: a server that
        // lost the race exits at once, and is started again on another.
        for _ in 0..5 {
            if redis.try_spawn() {
                return redis;
            }
            redis.port = free_port();
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    /// One server; a 3-primary cluster when `WHARF_TEST_REDIS=cluster`.
    pub fn start() -> TestRedis {
        if redis_cluster::wanted() { Self::start_cluster(3, 0) } else { Self::new(false, None, false) }
    }

    /// A cluster of `primaries` primaries with `replicas` replicas each.
    pub fn start_cluster(primaries: usize, replicas: usize) -> TestRedis {
        let cluster = Arc::new(Cluster::start(primaries, replicas));
        TestRedis {
            port: 0,
            dir: cluster.dir.clone(),
            child: None,
            borrowed: false,
            persistent: false,
            user: None,
            tls: false,
            cluster: Some(cluster),
        }
    }

    /// A server that keeps its data across `stop_gracefully` and `start_again`.
    pub fn start_persistent() -> TestRedis {
        Self::new(true, None, false)
    }

    /// A server where only ACL user `user` may log in, with `password`, and
    /// only to Wharf's keys and the commands Wharf needs; over TLS (client
    /// certificates required) when `tls`.
    pub fn start_secured(user: &str, password: &str, tls: bool) -> TestRedis {
        Self::new(false, Some((user, password)), tls)
    }

    /// The server another `TestRedis` runs, for a second host on the same data.
    pub fn borrow(&self) -> TestRedis {
        TestRedis {
            port: self.port,
            dir: self.dir.clone(),
            child: None,
            borrowed: true,
            persistent: self.persistent,
            user: self.user.clone(),
            tls: self.tls,
            cluster: self.cluster.clone(),
        }
    }

    fn spawn(&mut self) {
        assert!(self.try_spawn(), "redis-server did not start again on port {}", self.port);
    }

    /// Starts the server; true once it answers PING, false if it exited or
    /// stayed silent for 10 s.
    fn try_spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null());
        if self.tls {
            let file = |name: &str| self.dir.join(name).display().to_string();
            cmd.args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &file("server.crt"), "--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")]);
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some((user, password)) = &self.user {
            // Least privilege: Wharf's keys and channels, no admin or dangerous commands.
            cmd.args(["--user", "default", "off"]).args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~wharf:*",
                "&*",
                "+@all",
                "-@dangerous",
            ]);
        }
        let mut child = cmd.spawn().expect("redis-server must be installed (scripts/test.sh installs it)");
        let started = redis_cluster::wait_for_ping(&self.client(), &mut child);
        if started {
            self.child = Some(child);
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        started
    }

    pub fn url(&self) -> String {
        if let Some(cluster) = &self.cluster {
            return cluster.url();
        }
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.user {
            Some((user, password)) => format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// `REDIS_TLS_*` for a host that talks to this server.
    pub fn tls_env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("REDIS_TLS_CA_FILE".into(), file("ca.crt")),
            ("REDIS_TLS_CERT_FILE".into(), file("client.crt")),
            ("REDIS_TLS_KEY_FILE".into(), file("client.key")),
        ]
    }

    fn client(&self) -> redis::Client {
        if !self.tls {
            return redis::Client::open(self.url()).unwrap();
        }
        let read = |name: &str| std::fs::read(self.dir.join(name)).unwrap();
        let client_tls = redis::ClientTlsConfig { client_cert: read("client.crt"), client_key: read("client.key") };
        let certs = redis::TlsCertificates { client_tls: Some(client_tls), root_cert: Some(read("ca.crt")) };
        redis::Client::build_with_tls(self.url(), certs).unwrap()
    }

    pub fn conn(&self) -> Conn {
        match &self.cluster {
            Some(cluster) => Conn::Cluster(cluster.client().get_connection().unwrap(), cluster.primaries()),
            None => Conn::Node(self.client().get_connection().unwrap()),
        }
    }

    /// Stops the server (data is lost: it keeps nothing on disk).
    pub fn stop(&mut self) {
        assert!(self.cluster.is_none(), "stopping a cluster as one server: this test runs on one server only");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGTERM, as an operator stops it: a persistent server writes its data.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.cluster.is_none(), "restarting a cluster as one server: this test runs on one server only");
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self, frozen: bool) {
        assert!(self.cluster.is_none(), "freezing a cluster as one server: this test runs on one server only");
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, if frozen { libc::SIGSTOP } else { libc::SIGCONT }) };
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.borrowed || self.cluster.is_some() {
            return;
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
