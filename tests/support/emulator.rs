//! Starts the Kubernetes API emulator (tests/k8s-emulator) on a free loopback port with the
//! `elson` fixture, writes its kubeconfig into a temporary folder, and stops it on drop.
//! Its control endpoints are reached with a small blocking HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::Duration;

use serde_json::Value;

pub struct Emulator {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The emulator's Python tools, installed once per test process (quick when they are).
fn python() -> PathBuf {
    static TOOLS: Once = Once::new();
    TOOLS.call_once(|| {
        let status = Command::new("bash")
            .arg(repo().join(".ci/python-tools.sh"))
            .status()
            .expect("bash runs .ci/python-tools.sh");
        assert!(status.success(), ".ci/python-tools.sh failed");
    });
    repo().join(".venv/bin/python")
}

impl Emulator {
    /// An emulator serving the healthy `elson` namespace.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let kubeconfig = dir.path().join("kubeconfig");
        let emulator = repo().join("tests/k8s-emulator");
        let mut child = Command::new(python())
            .arg(emulator.join("server.py"))
            .args(["--port", "0", "--fixture"])
            .arg(emulator.join("fixtures/elson.yaml"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the emulator starts");
        let port = listening_port(&mut child);
        Self {
            child,
            port,
            dir,
            kubeconfig,
        }
    }

    pub fn server(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> Value {
        self.request("GET", path, None, "application/json")
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.request("POST", path, Some(body), "application/json")
    }

    pub fn put(&self, path: &str, body: &Value) -> Value {
        self.request("PUT", path, Some(body), "application/json")
    }

    pub fn delete(&self, path: &str) -> Value {
        self.request("DELETE", path, None, "application/json")
    }

    /// A JSON merge patch, as a controller or another operator would send it.
    pub fn merge_patch(&self, path: &str, body: &Value) -> Value {
        self.request("PATCH", path, Some(body), "application/merge-patch+json")
    }

    /// Adds objects (JSON) to the cluster, as fixtures are loaded.
    pub fn load(&self, objects: &Value) -> Value {
        self.post("/_emulator/fixture", objects)
    }

    /// The API requests the emulator received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let answer = self.get("/_emulator/requests");
        answer["items"].as_array().cloned().unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>, kind: &str) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("emulator reachable");
        // HTTP/1.0 with a length keeps the answer unchunked and the connection one-shot.
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("request sent");
        stream.write_all(body.as_bytes()).expect("request sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer read");
        let (_, text) = answer.split_once("\r\n\r\n").unwrap_or(("", ""));
        serde_json::from_str(text).unwrap_or(Value::Null)
    }
}

/// Waits for the one `LISTENING <port>` line the emulator prints when ready.
fn listening_port(child: &mut Child) -> u16 {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the emulator says LISTENING within 30 s");
    line.trim()
        .strip_prefix("LISTENING ")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the emulator: {line:?}"))
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
