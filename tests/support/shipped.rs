//! The shipped runbooks in a scratch folder: a copy of `runbooks/` and `stdlib/` with a
//! runbook.toml whose environment `local` points at the servers a test started, run through
//! the binary as an operator would, and what the run left: exit code, screen, transcript.
//! It needs the `common` module at the crate root.

#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::Workspace;

/// Variables of the test process that must not reach a run: each test sets what it means.
const INHERITED: &[&str] = &[
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
    "DATABASE_URL",
    "REDIS_URL",
    "SLACK_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
    "RUNBOOK_STDLIB",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A scratch folder holding the shipped runbooks and the standard library.
pub fn workspace() -> Workspace {
    let workspace = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["runbooks", "stdlib"] {
        copy_dir(&repo.join(folder), &workspace.path().join(folder));
    }
    workspace
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Writes runbook.toml with environment `local`: the emulator's context and namespace, then
/// `settings` (keys of the environment), then `tables` (its sub-tables and global tables).
pub fn configure(workspace: &Workspace, settings: &str, tables: &str) {
    let text = format!(
        "default_environment = \"local\"\n\n[secrets]\nsources = [\"env\"]\n\n\
         [environments.local]\ndescription = \"The servers this test started\"\n\
         context = \"emulator\"\nnamespace = \"elson\"\ndeployment = \"elson-backend\"\n\
         selector = \"app=elson-backend\"\n{settings}\n\n{tables}\n"
    );
    workspace.write("runbook.toml", &text);
}

/// What one run showed and recorded.
pub struct Outcome {
    pub code: i32,
    pub screen: String,
    pub transcript: String,
    pub events: Vec<Value>,
}

/// Runs `runbooks/maintenance/NAME.rhai` in environment `local` with `args` and `env`.
pub fn run(workspace: &Workspace, name: &str, args: &[&str], env: &[(&str, String)]) -> Outcome {
    let file = format!("runbooks/maintenance/{name}.rhai");
    let mut all = vec![
        "run",
        &file,
        "--env",
        "local",
        "--runs-dir",
        "runs",
        "--no-progress",
    ];
    all.extend_from_slice(args);
    let mut command = workspace.command(&all);
    for name in INHERITED {
        command.env_remove(name);
    }
    command.env("HOME", workspace.path());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let screen = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let transcript = stdout
        .lines()
        .find_map(|line| line.strip_prefix("transcript: "))
        .and_then(|path| std::fs::read_to_string(workspace.path().join(path)).ok())
        .unwrap_or_default();
    let events = transcript
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        screen,
        transcript,
        events,
    }
}

impl Outcome {
    /// The `step_end` of the step, check or manual task titled `title`.
    pub fn step(&self, title: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["type"] == "step_end" && e["title"] == title)
            .unwrap_or_else(|| panic!("no step `{title}` ended:\n{}", self.screen))
    }

    /// What a manual task asks the person to do.
    pub fn instructions(&self, title: &str) -> &str {
        let start = self
            .events
            .iter()
            .find(|e| e["type"] == "step_start" && e["title"] == title);
        let start = start.unwrap_or_else(|| panic!("no step `{title}` started:\n{}", self.screen));
        start["options"]["instructions"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn status(&self, title: &str) -> &str {
        self.step(title)["status"].as_str().unwrap_or_default()
    }

    pub fn message(&self, title: &str) -> &str {
        self.step(title)["message"].as_str().unwrap_or_default()
    }

    pub fn findings(&self, title: &str) -> Vec<String> {
        let found = self.step(title)["findings"].as_array().cloned();
        found
            .unwrap_or_default()
            .iter()
            .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
            .collect()
    }

    /// Whether a finding of `title` (or its message) contains `text`.
    pub fn found(&self, title: &str, text: &str) -> bool {
        self.message(title).contains(text) || self.findings(title).iter().any(|f| f.contains(text))
    }

    /// The outcomes recorded for each call of `binding`, in order.
    pub fn outcomes(&self, binding: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["type"] == "binding_end" && e["name"] == binding)
            .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `binding_start` of the first call of `binding` whose arguments mention `text`.
    pub fn call_of(&self, binding: &str, text: &str) -> &Value {
        self.events
            .iter()
            .find(|e| {
                e["type"] == "binding_start"
                    && e["name"] == binding
                    && e["args"].to_string().contains(text)
            })
            .unwrap_or_else(|| panic!("no call of {binding} with `{text}`:\n{}", self.screen))
    }

    /// Lines bindings streamed into the transcript (program output, rollout progress).
    pub fn output(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["type"] == "output")
            .filter_map(|e| e["line"].as_str().map(str::to_owned))
            .collect()
    }

    /// Asserts the exit code and that each title ended with its status, naming every
    /// mismatch at once.
    pub fn expect(&self, code: i32, statuses: &[(&str, &str)]) {
        let mut wrong = Vec::new();
        if self.code != code {
            wrong.push(format!("exit code {} instead of {code}", self.code));
        }
        for (title, status) in statuses {
            let end = self
                .events
                .iter()
                .find(|e| e["type"] == "step_end" && e["title"] == *title);
            match end {
                None => wrong.push(format!("`{title}` never ended")),
                Some(end) if end["status"] != *status => wrong.push(format!(
                    "`{title}` is {} instead of {status}: {} {}",
                    end["status"], end["message"], end["findings"]
                )),
                Some(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), self.screen);
    }

    /// Asserts that `value` shows nowhere: not on the screen, not in the transcript.
    pub fn assert_hidden(&self, value: &str, what: &str) {
        assert!(
            !self.screen.contains(value) && !self.transcript.contains(value),
            "{what} leaked:\n{}",
            self.screen
        );
    }
}
