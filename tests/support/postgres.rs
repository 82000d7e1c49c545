//! PostgreSQL for the tests: databases of a test's own on the server at 127.0.0.1:5432, and
//! a primary with a streaming replica (pg_stat_statements loaded) started from the server
//! binaries in a temporary folder, stopped on drop.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// A database name no other test uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rb_{tag}_{}_{nanos}", std::process::id())
}

/// Runs SQL with psql as postgres and returns its unaligned output.
pub fn psql(port: u16, database: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PostgreSQL database of its own for one test, dropped afterwards.
pub struct PgDb {
    pub name: String,
    pub port: u16,
}

impl PgDb {
    /// A new database on the server at 127.0.0.1:5432.
    pub fn new(tag: &str) -> Self {
        Self::on(5432, tag)
    }

    /// A new database on the server listening on `port`.
    pub fn on(port: u16, tag: &str) -> Self {
        let name = unique(tag);
        psql(port, "postgres", &format!("create database {name}"));
        Self { name, port }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    pub fn sql(&self, sql: &str) -> String {
        psql(self.port, &self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .output();
    }
}

/// A PostgreSQL primary with one streaming replica in a folder of its own, on free ports,
/// with pg_stat_statements loaded. Stopped and removed on drop.
pub struct PgPair {
    pub dir: tempfile::TempDir,
    pub primary: u16,
    pub replica: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgPair {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        Command::new("chown")
            .args(["postgres", &root])
            .status()
            .unwrap();
        let (primary, replica) = (free_port(), free_port());
        let data = format!("{root}/primary");
        as_postgres(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let conf = format!(
            "port = {primary}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n\
             shared_preload_libraries = 'pg_stat_statements'\nfsync = off\nwal_level = replica\n"
        );
        append(&format!("{data}/postgresql.conf"), &conf);
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &format!("{root}/primary.log"),
                "-w",
                "start",
            ],
        );
        let copy = format!("{root}/replica");
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.to_string(),
                "-U",
                "postgres",
                "-D",
                &copy,
                "-R",
                "-X",
                "stream",
            ],
        );
        append(
            &format!("{copy}/postgresql.conf"),
            &format!("port = {replica}\n"),
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &copy,
                "-l",
                &format!("{root}/replica.log"),
                "-w",
                "start",
            ],
        );
        let pair = Self {
            dir,
            primary,
            replica,
        };
        pair.wait_streaming();
        pair
    }

    pub fn wait_streaming(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while psql(
            self.primary,
            "postgres",
            "select count(*) from pg_stat_replication where state = 'streaming'",
        ) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the replica never started streaming"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    pub fn stop_replica(&self) {
        let copy = self.dir.path().join("replica");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                copy.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

fn append(path: &str, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for name in ["replica", "primary"] {
            let data = self.dir.path().join(name);
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
                .arg(&data)
                .args(["-m", "immediate", "stop"])
                .output();
        }
    }
}
