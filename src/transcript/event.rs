//! The events a run records, one per transcript line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One transcript line: the event plus its place in the hash chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Position in the transcript, from 0.
    pub seq: u64,
    /// SHA-256 (hex) of the previous line's bytes, without its newline; zeros on the first line.
    pub prev: String,
    /// When the event happened (RFC 3339, UTC, milliseconds).
    pub ts: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStart(RunStart),
    SectionStart {
        id: u64,
        parent: Option<u64>,
        title: String,
    },
    SectionEnd {
        id: u64,
        title: String,
        status: Status,
        duration_ms: u64,
    },
    StepStart {
        id: u64,
        section: Option<u64>,
        kind: StepKind,
        title: String,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        options: Value,
    },
    StepEnd(StepEnd),
    /// A binding call is about to happen; for mutations and notifications this line is on disk
    /// before the call goes out.
    BindingStart {
        call: u64,
        step: Option<u64>,
        name: String,
        effect: Effect,
        target: String,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        args: Value,
    },
    BindingEnd {
        call: u64,
        step: Option<u64>,
        name: String,
        outcome: Outcome,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Log {
        step: Option<u64>,
        level: LogLevel,
        message: String,
    },
    Output {
        step: Option<u64>,
        call: u64,
        stream: Stream,
        line: String,
    },
    Prompt {
        step: Option<u64>,
        question: String,
        answer: String,
        by: String,
    },
    RunEnd(RunEnd),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub run_id: String,
    pub runbook: String,
    pub sha256: String,
    #[serde(default)]
    pub git_commit: Option<String>,
    pub tool_version: String,
    pub user: String,
    pub host: String,
    pub environment: String,
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    pub dry_run: bool,
    #[serde(default)]
    pub resumed_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEnd {
    pub id: u64,
    pub kind: StepKind,
    pub title: String,
    pub status: Status,
    pub duration_ms: u64,
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The value the step returned (masked), restored by a resumed run.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Value>,
    /// `file:line:column` of the error, when the step failed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub status: RunStatus,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub warnings: u64,
    pub skipped: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Step,
    Check,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    Pending,
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    /// Whether a failed check of this severity fails the run.
    pub fn fails_run(self) -> bool {
        self >= Severity::High
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// What a host function does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Read,
    Mutate,
    Notify,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Mutate => "mutate",
            Effect::Notify => "notify",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "mutate" => Some(Self::Mutate),
            "notify" => Some(Self::Notify),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    /// Not performed because of `--dry-run`: the transcript says what would have happened.
    WouldRun,
    Interrupted,
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Passed,
    Failed,
    /// Manual tasks are still open: never reported as passed.
    Pending,
    /// The script itself is broken (an error outside any step).
    Error,
    /// A confirmation was declined or a deadline ended the run.
    Aborted,
    /// The operator pressed Ctrl-C.
    Interrupted,
}

impl RunStatus {
    /// The process exit code for a run that ended this way (documented in the README).
    pub fn exit_code(self) -> i32 {
        match self {
            RunStatus::Passed => 0,
            RunStatus::Failed => 1,
            RunStatus::Error => 2,
            RunStatus::Pending => 3,
            RunStatus::Aborted => 4,
            RunStatus::Interrupted => 130,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Pending => "pending",
            RunStatus::Error => "error",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Pending => "pending",
            Status::Interrupted => "interrupted",
        }
    }
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Step => "step",
            StepKind::Check => "check",
            StepKind::Manual => "manual",
        }
    }
}
