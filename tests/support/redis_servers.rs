//! Redis servers, sentinels and cluster nodes of a test's own on free loopback ports, started
//! from the `redis-server` binary and killed on drop, and `redis-cli` to look at them.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn cli(port: u16, words: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(words)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loopback port that is free, and whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55000 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A redis-server (or sentinel) process of a test's own, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(dir: &Path, name: &str, config: &str, sentinel: bool) -> Self {
        let port = free_port();
        let file = dir.join(format!("{name}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\nappendonly no\n{config}\n",
            dir.display()
        );
        std::fs::write(&file, text).unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&file);
        if sentinel {
            command.arg("--sentinel");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        // A server with a password answers NOAUTH, which shows it is up too.
        while !matches!(cli(port, &["PING"]).as_str(), "PONG")
            && !cli(port, &["PING"]).contains("NOAUTH")
        {
            assert!(Instant::now() < deadline, "{name} did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A master with a replica and three sentinels (quorum 2), all of the test's own.
pub struct SentinelSetup {
    pub master: Server,
    pub replica: Server,
    pub sentinels: Vec<Server>,
}

pub fn sentinel_config(master: u16, quorum: u32) -> String {
    format!(
        "sentinel monitor elson 127.0.0.1 {master} {quorum}\nsentinel down-after-milliseconds elson 5000\nsentinel resolve-hostnames no"
    )
}

impl SentinelSetup {
    pub fn start(dir: &Path) -> Self {
        let master = Server::start(dir, "master", "", false);
        let replica = Server::start(
            dir,
            "replica",
            &format!("replicaof 127.0.0.1 {}", master.port),
            false,
        );
        wait_until("the replica's link", || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let sentinels: Vec<Server> = (0..3)
            .map(|i| {
                Server::start(
                    dir,
                    &format!("sentinel{i}"),
                    &sentinel_config(master.port, 2),
                    true,
                )
            })
            .collect();
        let first = sentinels[0].port;
        wait_until("the sentinels to find each other and the replica", || {
            let master = cli(first, &["SENTINEL", "MASTER", "elson"]);
            let replicas = cli(first, &["SENTINEL", "REPLICAS", "elson"]);
            master.contains("num-other-sentinels\n2") && replicas.contains("master-link-status\nok")
        });
        Self {
            master,
            replica,
            sentinels,
        }
    }

    /// The sentinels' URLs as a Rhai array literal.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("\"{}\"", s.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }
}
