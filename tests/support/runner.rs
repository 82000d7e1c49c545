//! Runs small runbooks through the real binary in a scratch folder that trusts the test CA,
//! and reads back what an operator would: exit code, screen and transcript.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A folder with `ca.pem` (the test root) and a runbook.toml whose `test` environment trusts
/// it through the `ca` setting.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    runs: AtomicUsize,
}

/// What one run left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub transcript: String,
    pub events: Vec<Value>,
    pub elapsed: Duration,
}

impl Workspace {
    pub fn new(root_pem: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), root_pem).expect("write ca.pem");
        std::fs::write(
            dir.path().join("runbook.toml"),
            "default_environment = \"test\"\n\n[environments.test]\nca = \"ca.pem\"\n",
        )
        .expect("write runbook.toml");
        Self {
            dir,
            runs: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `script` with extra command-line arguments and environment variables.
    pub fn run_with(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let file = format!("check-{n}.rhai");
        std::fs::write(self.path().join(&file), script).expect("write runbook");
        let runs = format!("runs-{n}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
        command
            .current_dir(self.path())
            .args(["run", &file, "--no-progress", "--runs-dir", &runs])
            .args(args)
            .env("RUNBOOK_STDLIB", stdlib())
            .env("NO_COLOR", "1")
            .env("RUNBOOK_OPERATOR", "test");
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let output = command.output().expect("run the runbook binary");
        let elapsed = started.elapsed();
        let transcript = read_transcript(&self.path().join(&runs));
        let events = transcript
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            transcript,
            events,
            elapsed,
        }
    }

    pub fn run(&self, script: &str) -> Run {
        self.run_with(script, &[], &[])
    }
}

fn stdlib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib")
}

fn read_transcript(runs: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return String::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("transcript.jsonl"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

impl Run {
    /// The `step_end` event of the step or check titled `title`.
    pub fn step(&self, title: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["type"] == "step_end" && e["title"] == title)
            .unwrap_or_else(|| panic!("no step `{title}` ended\n{}", self.screen()))
    }

    pub fn status(&self, title: &str) -> String {
        self.step(title)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn findings(&self, title: &str) -> Vec<String> {
        self.step(title)["findings"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|f| f.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether some finding of `title` contains `text`.
    pub fn has_finding(&self, title: &str, text: &str) -> bool {
        self.findings(title).iter().any(|f| f.contains(text))
    }

    /// Messages logged by the script (`log`, `print`, retries noted by bindings).
    pub fn logs(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["type"] == "log")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Everything the operator saw, for assertion messages.
    pub fn screen(&self) -> String {
        format!(
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
