//! What the database and Redis tests share: running a small runbook through the binary with
//! the repository's stdlib, and reading back what the operator would see.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What a user sees of a run: its exit code, the screen and the transcript.
pub struct Run {
    pub code: i32,
    pub screen: String,
    pub transcript: String,
    pub events: Vec<Value>,
}

impl Run {
    /// The end of the step or check titled `title`.
    pub fn step(&self, title: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["type"] == "step_end" && e["title"] == title)
            .unwrap_or_else(|| panic!("no step `{title}` in:\n{}", self.screen))
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
            .map(|list| {
                list.iter()
                    .map(|f| f.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn stdlib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib")
}

/// Runs `script` as `check.rhai` in `dir` through the binary.
pub fn run_in(dir: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    std::fs::write(dir.join("check.rhai"), script).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "check.rhai", "--no-progress"])
        .args(args)
        .current_dir(dir)
        .env("RUNBOOK_STDLIB", stdlib())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let screen = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let path = screen
        .lines()
        .find_map(|l| l.strip_prefix("transcript: "))
        .map(|p| dir.join(p.trim()));
    let transcript = path
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let events = transcript
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Run {
        code: output.status.code().unwrap_or(-1),
        screen,
        transcript,
        events,
    }
}
