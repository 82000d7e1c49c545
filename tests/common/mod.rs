//! Helpers for the integration tests: run the real binary on a runbook in a scratch folder
//! and read back what it left.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A scratch folder with runbooks in it; runs land in `runs/`, locks in `locks/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// What one invocation of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The transcript path printed by `runbook run`.
    pub fn transcript(&self) -> PathBuf {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("transcript: "))
            .unwrap_or_else(|| {
                panic!(
                    "no transcript line in stdout:\n{}\n{}",
                    self.stdout, self.stderr
                )
            });
        PathBuf::from(line)
    }

    /// Every event of the transcript, parsed.
    pub fn events(&self, workspace: &Workspace) -> Vec<Value> {
        let text = std::fs::read_to_string(workspace.path().join(self.transcript())).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Both output streams, for assertions about what the operator saw.
    pub fn screen(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A command for the binary, run inside the workspace with no terminal.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
        command
            .args(args)
            .current_dir(self.path())
            .env("RUNBOOK_LOCK_DIR", self.path().join("locks"))
            .env("RUNBOOK_OPERATOR", "tester")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(std::process::Stdio::null());
        command
    }

    pub fn runbook(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().unwrap())
    }

    /// `runbook run FILE ARGS...` with runs kept in the workspace.
    pub fn run(&self, file: &str, args: &[&str]) -> Run {
        let mut all = vec!["run", file, "--runs-dir", "runs", "--no-progress"];
        all.extend_from_slice(args);
        self.runbook(&all)
    }
}

/// Events of one type.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The `step_end` event of the step with this title.
pub fn step_end<'a>(events: &'a [Value], title: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "step_end" && e["title"] == title)
        .unwrap_or_else(|| panic!("no step_end for `{title}`"))
}

/// Replaces what changes from run to run (times, durations, run folders) for snapshots.
pub fn stable(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = strip_clock(line);
        let line = replace_numbers_after(&line, "ms");
        let line = replace_run_dirs(&line);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn strip_clock(line: &str) -> String {
    let bytes = line.as_bytes();
    if bytes.len() > 13 && bytes[2] == b':' && bytes[5] == b':' && bytes[8] == b'.' {
        return format!("[time]{}", &line[12..]);
    }
    line.to_owned()
}

fn replace_numbers_after(line: &str, unit: &str) -> String {
    let pattern = format!(" {unit}");
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(&pattern) {
        let head = &rest[..at];
        let digits = head
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            out.push_str(&rest[..at + pattern.len()]);
        } else {
            out.push_str(&head[..head.len() - digits]);
            out.push('N');
            out.push_str(&pattern);
        }
        rest = &rest[at + pattern.len()..];
    }
    out.push_str(rest);
    out
}

fn replace_run_dirs(line: &str) -> String {
    match line.find("runs/") {
        Some(at) => {
            let tail = &line[at + 5..];
            let end = tail.find('/').unwrap_or(tail.len());
            format!("{}runs/[run]{}", &line[..at], &tail[end..])
        }
        None => line.to_owned(),
    }
}
