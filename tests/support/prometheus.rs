//! A real Prometheus (Debian's `prometheus` package, which `.ci/data-tools.sh` installs) on a
//! free loopback port, scraping an exporter of the test's own every second and loading the
//! alert and recording rules a test gives it; stopped on drop. The exporter serves fixed
//! metrics, and can be told to fail so that its target goes down.
//! It needs the `loopback` module at the crate root.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::loopback::{self, Background, Receiver, Reply};

/// What the exporter serves: one series for each metric the checklist asks about.
pub const METRICS: &str = "\
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{namespace=\"elson\"} 1234.5
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{namespace=\"elson\"} 268435456
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{namespace=\"elson\",le=\"0.1\"} 940
http_request_duration_seconds_bucket{namespace=\"elson\",le=\"0.5\"} 990
http_request_duration_seconds_bucket{namespace=\"elson\",le=\"+Inf\"} 1000
http_request_duration_seconds_sum{namespace=\"elson\"} 61.2
http_request_duration_seconds_count{namespace=\"elson\"} 1000
# TYPE http_requests_total counter
http_requests_total{namespace=\"elson\",status=\"200\"} 995
http_requests_total{namespace=\"elson\",status=\"500\"} 5
# TYPE pg_stat_statements_seconds_total counter
pg_stat_statements_seconds_total 42.5
# TYPE elson_websocket_connections gauge
elson_websocket_connections{namespace=\"elson\"} 37
# TYPE elson_payments_total counter
elson_payments_total{namespace=\"elson\",outcome=\"succeeded\"} 310
elson_payments_total{namespace=\"elson\",outcome=\"failed\"} 2
# TYPE elson_logins_total counter
elson_logins_total{namespace=\"elson\",outcome=\"success\"} 812
elson_logins_total{namespace=\"elson\",outcome=\"failure\"} 9
";

pub struct Prometheus {
    pub port: u16,
    pub dir: tempfile::TempDir,
    exporter: Receiver,
    failing: Arc<AtomicBool>,
    _server: Background,
}

fn binary() -> PathBuf {
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    found.expect("prometheus is not installed: run .ci/data-tools.sh")
}

/// A rules file with an alerting rule for each name in `alerts` and a recording rule for each
/// name in `recorded`.
pub fn rules_file(alerts: &[&str], recorded: &[&str]) -> String {
    let mut text = String::from("groups:\n  - name: elson\n    rules:\n");
    for name in alerts {
        text.push_str(&format!(
            "      - alert: {name}\n        expr: vector(0) > 1\n        for: 5m\n        labels: {{severity: page}}\n"
        ));
    }
    for name in recorded {
        text.push_str(&format!(
            "      - record: {name}\n        expr: sum(http_requests_total)\n"
        ));
    }
    text
}

impl Prometheus {
    /// Prometheus with these rules, returned once it has scraped the exporter.
    pub fn start(rules: &str) -> Self {
        let failing = Arc::new(AtomicBool::new(false));
        let fails = failing.clone();
        let exporter = Receiver::start(move |_, _| {
            if fails.load(Ordering::SeqCst) {
                Reply::new(500, "exporter broken")
            } else {
                Reply::new(200, METRICS).header("content-type", "text/plain; version=0.0.4")
            }
        });
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("rules.yml"), rules).expect("write rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: elson\n    static_configs: [{{targets: [\"{}\"]}}]\n",
            exporter.addr
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = loopback::free_port();
        let mut child = Command::new(binary())
            .arg(format!(
                "--config.file={}/prometheus.yml",
                dir.path().display()
            ))
            .arg(format!("--storage.tsdb.path={}/data", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        loopback::wait_for_port(port, &mut child, "prometheus");
        let prometheus = Self {
            port,
            dir,
            exporter,
            failing,
            _server: Background(child),
        };
        prometheus.wait_for("the first scrape of the exporter", |p| {
            p.query("up{job=\"elson\"}") == Some(1.0)
        });
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A GET of the HTTP API, parsed.
    pub fn api(&self, path_and_query: &str) -> Value {
        get_json(self.port, path_and_query)
    }

    /// The value of an instant query's first series, if it has one.
    pub fn query(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let answer = self.api(&format!("/api/v1/query?query={encoded}"));
        let value = answer["data"]["result"][0]["value"][1].as_str()?;
        value.parse().ok()
    }

    /// Replaces the rules and has Prometheus load them again.
    pub fn replace_rules(&self, rules: &str) {
        std::fs::write(self.dir.path().join("rules.yml"), rules).expect("write rules.yml");
        post(self.port, "/-/reload");
    }

    /// Makes the exporter answer 500 and waits until Prometheus has seen its target down.
    pub fn break_exporter(&self) {
        self.failing.store(true, Ordering::SeqCst);
        self.wait_for("the exporter's target to be down", |p| {
            p.api("/api/v1/targets")["data"]["activeTargets"][0]["health"] == "down"
        });
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// HTTP/1.0 keeps the answer unchunked and the connection one-shot.
fn get_json(port: u16, path: &str) -> Value {
    let answer = exchange(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"),
    );
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn post(port: u16, path: &str) {
    let answer = exchange(
        port,
        &format!("POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{path}: {answer}"
    );
}
