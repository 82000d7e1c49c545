//! Runs a runbook through the binary with KUBECONFIG pointing at an emulator, and reads
//! back what a user would see: exit code, screen and transcript.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::emulator::Emulator;

/// What a user sees of one run: exit code, screen, and the transcript.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub transcript: String,
    pub events: Vec<Value>,
}

impl Run {
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["type"] == kind)
    }

    /// What the runbook printed.
    pub fn printed(&self) -> Vec<String> {
        self.of_type("log")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Output lines of binding calls (exec output, dry-run results, rollout progress).
    pub fn output(&self) -> Vec<String> {
        self.of_type("output")
            .filter_map(|e| e["line"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn outcome_of(&self, binding: &str) -> Vec<String> {
        self.of_type("binding_end")
            .filter(|e| e["name"] == binding)
            .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn findings(&self, title: &str) -> Vec<String> {
        let end = self.of_type("step_end").find(|e| e["title"] == title);
        let findings = end.and_then(|e| e["findings"].as_array().cloned());
        findings
            .unwrap_or_default()
            .iter()
            .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
            .collect()
    }

    pub fn status_of(&self, title: &str) -> String {
        let end = self.of_type("step_end").find(|e| e["title"] == title);
        end.map(|e| e["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }
}

fn command(emulator: &Emulator, script: &str, extra: &[&str]) -> (Command, PathBuf) {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = emulator.dir.path();
    let file = dir.join(format!(
        "runbook-{}.rhai",
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, script).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
    command
        .current_dir(dir)
        .env("KUBECONFIG", &emulator.kubeconfig)
        .env(
            "RUNBOOK_STDLIB",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib"),
        )
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("run")
        .arg(&file)
        .arg("--no-progress")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (command, dir.to_owned())
}

pub fn finish(output: std::process::Output, dir: &Path) -> Run {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let transcript = stdout
        .lines()
        .find_map(|line| line.strip_prefix("transcript: "))
        .map(|path| std::fs::read_to_string(dir.join(path)).unwrap())
        .unwrap_or_default();
    let events = transcript
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
        transcript,
        events,
    }
}

/// Runs a runbook through the binary with KUBECONFIG pointing at the emulator.
pub fn run(emulator: &Emulator, script: &str, extra: &[&str]) -> Run {
    let (mut command, dir) = command(emulator, script, extra);
    finish(command.output().unwrap(), &dir)
}

pub fn spawn(emulator: &Emulator, script: &str) -> (Child, PathBuf) {
    let (mut command, dir) = command(emulator, script, &[]);
    (command.spawn().unwrap(), dir)
}
