//! The shipped maintenance runbooks (runbooks/maintenance/) end to end through the binary, in
//! a dry run and for real, against servers each test starts: the Kubernetes API emulator,
//! PostgreSQL (the server at 127.0.0.1:5432 and a primary with a streaming replica of the
//! test's own), Redis Sentinel, a real Prometheus, moto for AWS Secrets Manager, the HTTPS
//! servers of the web tests, loopback receivers for alerts, and the Vault stand-in (no Vault
//! server can be installed here). Each test also breaks its setup and looks for the findings
//! an operator would be shown.

mod common;
#[allow(dead_code)]
#[path = "support/emulator.rs"]
mod emulator;
mod loopback;
#[path = "support/moto.rs"]
mod moto;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/redis_servers.rs"]
mod redis_servers;
#[path = "support/shipped.rs"]
mod shipped;
#[allow(dead_code)]
mod support;
#[path = "support/vault.rs"]
mod vault;

#[path = "maintenance/database.rs"]
mod database;
#[path = "maintenance/monitoring.rs"]
mod monitoring;
#[path = "maintenance/operations.rs"]
mod operations;
#[path = "maintenance/rotation.rs"]
mod rotation;
#[path = "maintenance/security.rs"]
mod security;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use emulator::Emulator;
use loopback::{Receiver, Reply};
use serde_json::{Value, json};
use shipped::{Outcome, configure, run, workspace};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/elson/deployments/elson-backend";
const SECRET: &str = "/api/v1/namespaces/elson/secrets/backend-secrets";
const POD: &str = "elson-backend-6d8f7c9b5d-4xkqz";

// ---------------------------------------------------------------------------------------
// Shared pieces

/// A Slack incoming webhook on loopback that answers `ok`, as Slack does.
fn slack() -> Receiver {
    Receiver::start(|_, _| Reply::new(200, "ok"))
}

/// `[alert]` tables sending route `team` to the Slack receiver.
const ALERTS: &str = "[alert]\nretries = 1\nretry_delay = 0.05\n[alert.routes]\nteam = [\"slack\"]\n[alert.slack]\nwebhook = \"env:SLACK_WEBHOOK_URL\"\n";

fn slack_env(slack: &Receiver) -> (&'static str, String) {
    (
        "SLACK_WEBHOOK_URL",
        format!("{}/services/T0LOCAL/B0LOCAL/local-hook", slack.url()),
    )
}

fn kube_env(emulator: &Emulator) -> (&'static str, String) {
    ("KUBECONFIG", emulator.kubeconfig.display().to_string())
}

/// The texts Slack received.
fn slack_texts(slack: &Receiver) -> Vec<String> {
    slack
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A git repository of the application with `files` committed, in `dir`.
fn git_repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&["add", "."]);
    git(&["commit", "-qm", "the application"]);
}

const APP_FILES: &[(&str, &str)] = &[
    (
        "backend/app/settings.py",
        "import os\nSECRET_KEY = os.environ[\"SECRET_KEY\"]\n",
    ),
    ("backend/requirements.txt", "fastapi==0.115.0\n"),
    (
        "frontend/src/api.js",
        "export const API_URL = process.env.API_URL;\n",
    ),
];

// A fake AWS access key id of the documented example shape, committed by mistake.
const COMMITTED_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

fn all_passed(titles: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    titles.iter().map(|title| (*title, "passed")).collect()
}

// ---------------------------------------------------------------------------------------
// The catalogue

/// Each maintenance runbook with the schedule of its checklist item.
const SCHEDULES: &[(&str, &str)] = &[
    ("backup-restore-test", "quarterly"),
    ("database-performance", "weekly"),
    ("disaster-recovery", "quarterly"),
    ("monitoring", "weekly"),
    ("review-logs", "daily"),
    ("rotate-api-keys", "monthly"),
    ("secret-management", "monthly"),
    ("security-scans", "weekly"),
    ("update-dependencies", "monthly"),
];

#[test]
fn every_maintenance_runbook_is_listed_with_its_schedule_and_plans_in_both_environments() {
    let ws = workspace();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("runbook.toml"), ws.path().join("runbook.toml")).unwrap();
    let list = ws.runbook(&["list", "runbooks/maintenance"]);
    assert_eq!(list.code, 0, "{}", list.screen());
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), SCHEDULES.len(), "{}", list.stdout);
    for ((name, every), line) in SCHEDULES.iter().zip(&lines) {
        let file = format!("runbooks/maintenance/{name}.rhai");
        assert!(line.starts_with(&format!("{file}  ")), "{line}");
        assert!(line.ends_with(&format!(" [every: {every}]")), "{line}");
        let check = ws.runbook(&["check", &file]);
        assert_eq!(check.code, 0, "{}", check.screen());
        for environment in ["staging", "prod"] {
            let plan = ws.runbook(&["plan", &file, "--env", environment]);
            assert_eq!(plan.code, 0, "{file} in {environment}: {}", plan.screen());
            assert!(
                plan.stdout.contains("steps, checks and manual tasks"),
                "{}",
                plan.stdout
            );
        }
    }
}
