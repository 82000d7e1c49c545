//! Servers on loopback for the secrets and alerting tests (an HTTP receiver that records what
//! it is sent, Python tools from the repository's venv), and a way to run the real binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What a receiver answers: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::new(status, body.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 server on loopback that records every request and answers with `handler`
/// (given the request and how many came before it).
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1", handler)
    }

    pub fn start_on(
        host: &str,
        handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((host, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        answer(request, handler.clone(), recorded.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(
    request: Request<Incoming>,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/".into(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let index = {
        let mut all = recorded.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let reply = handler(&request, index);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

/// A program from the repository's Python venv (`.ci/python-tools.sh` creates it).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run .ci/python-tools.sh to create the test venv",
        path.display()
    );
    path
}

/// A child process killed when the test ends.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// What a run of the binary left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub transcript: String,
    pub run_dir: PathBuf,
}

impl Run {
    /// The transcript's events.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.transcript
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The `binding_end` events of one binding.
    pub fn binding_ends(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == "binding_end" && e["name"] == name)
            .collect()
    }

    /// Everything the run showed or wrote, for leak checks.
    pub fn everything(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.stdout,
            self.stderr,
            self.transcript,
            read_dir_text(&self.run_dir)
        )
    }
}

fn read_dir_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(content) = std::fs::read_to_string(entry.path()) {
            text.push_str(&content);
            text.push('\n');
        }
    }
    text
}

/// Runs `runbook run RUNBOOK ARGS` in `dir` with a clean environment plus `env`.
pub fn run(dir: &Path, runbook: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let runs = dir.join("runs");
    let before: Vec<PathBuf> = list(&runs);
    let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
    command
        .current_dir(dir)
        .arg("run")
        .arg(runbook)
        .args(["--no-progress", "--runs-dir"])
        .arg(&runs)
        .args(args);
    let output = clean(&mut command, env).output().unwrap();
    let run_dir = list(&runs)
        .into_iter()
        .find(|d| !before.contains(d))
        .unwrap_or_else(|| {
            panic!(
                "no run folder was made; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        transcript: std::fs::read_to_string(run_dir.join("transcript.jsonl")).unwrap_or_default(),
        run_dir,
    }
}

/// `runbook report TRANSCRIPT --format FORMAT`'s output.
pub fn report(transcript: &Path, format: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
    command
        .arg("report")
        .arg(transcript)
        .args(["--format", format]);
    let output = clean(&mut command, &[]).output().unwrap();
    assert!(output.status.success(), "report --format {format} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn clean<'c>(command: &'c mut Command, env: &[(&str, &str)]) -> &'c mut Command {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// A folder with `runbook.toml` and one runbook in it.
pub fn project(config: &str, runbook: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runbook.toml"), config).unwrap();
    std::fs::write(dir.path().join("test.rhai"), runbook).unwrap();
    dir
}
