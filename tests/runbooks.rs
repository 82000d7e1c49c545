//! The shipped runbooks end to end: `runbooks/rollback.rhai` and `runbooks/deploy.rhai` are
//! copied with `stdlib/` into a scratch workspace whose generated runbook.toml points the
//! `local` environment at servers this test starts, and run through the real binary, in a
//! dry run and for real. The test plays the Kubernetes controller by patching status.

#[allow(dead_code)]
#[path = "support/emulator.rs"]
mod emulator;
#[path = "loopback/mod.rs"]
mod loopback;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use emulator::Emulator;
use loopback::{Receiver, Reply};
use serde_json::{Value, json};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/elson/deployments/elson-backend";
const OLD_IMAGE: &str = "registry.example.com/elson/backend:1.4.1";
const CURRENT_IMAGE: &str = "registry.example.com/elson/backend:1.4.2";

/// A scratch copy of the shipped runbooks and stdlib with a generated runbook.toml.
struct Workspace {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What one run of the binary left: exit code, screen, transcript.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    transcript: PathBuf,
    events: Vec<Value>,
    elapsed: Duration,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Workspace {
    fn new(config: &str, kubeconfig: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("runbooks"), &dir.path().join("runbooks"));
        copy_dir(&repo().join("stdlib"), &dir.path().join("stdlib"));
        std::fs::write(dir.path().join("runbook.toml"), config).unwrap();
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        let env = vec![
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
            (
                "RUNBOOK_STDLIB".into(),
                dir.path().join("stdlib").display().to_string(),
            ),
            (
                "RUNBOOK_LOCK_DIR".into(),
                dir.path().join("locks").display().to_string(),
            ),
        ];
        Self { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    fn command(&self, runbook: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
        command
            .current_dir(self.path())
            .arg("run")
            .arg(format!("runbooks/{runbook}"))
            .args(["--config", "runbook.toml", "--env", "local"])
            .args(["--runs-dir", "runs", "--no-progress"])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUNBOOK_OPERATOR", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in [
            "RUST_LOG",
            "KUBERNETES_SERVICE_HOST",
            "HTTPS_PROXY",
            "https_proxy",
        ] {
            command.env_remove(name);
        }
        for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn spawn(&self, runbook: &str, args: &[&str]) -> (Child, Instant) {
        (self.command(runbook, args).spawn().unwrap(), Instant::now())
    }

    fn run(&self, runbook: &str, args: &[&str]) -> Run {
        let (child, started) = self.spawn(runbook, args);
        self.finish(child, started)
    }

    fn finish(&self, child: Child, started: Instant) -> Run {
        let output = child.wait_with_output().unwrap();
        self.read(output, started.elapsed())
    }

    fn read(&self, output: Output, elapsed: Duration) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let transcript = stdout
            .lines()
            .find_map(|line| line.strip_prefix("transcript: "))
            .map(|path| self.path().join(path))
            .unwrap_or_default();
        let events = std::fs::read_to_string(&transcript)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout,
            stderr,
            transcript,
            events,
            elapsed,
        }
    }

    /// `runbook verify` on a run's transcript.
    fn verify(&self, run: &Run) -> Output {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .current_dir(self.path())
            .arg("verify")
            .arg(&run.transcript)
            .output()
            .unwrap()
    }
}

impl Run {
    fn screen(&self) -> String {
        format!(
            "exit code {} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    fn step(&self, title: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["type"] == "step_end" && e["title"] == title)
            .unwrap_or_else(|| panic!("no step `{title}` ended\n{}", self.screen()))
    }

    fn status(&self, title: &str) -> String {
        self.step(title)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn findings(&self, title: &str) -> String {
        let step = self.step(title);
        format!("{} {}", step["findings"], step["message"])
    }

    fn outcomes(&self, binding: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["type"] == "binding_end" && e["name"] == binding)
            .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn assert_verifies(&self, workspace: &Workspace) {
        let verified = workspace.verify(self);
        assert!(
            verified.status.success(),
            "runbook verify failed: {}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn image_of(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A Slack incoming webhook that records what it is sent.
fn slack() -> Receiver {
    Receiver::start(|_, _| Reply::new(200, "ok"))
}

fn slack_url(slack: &Receiver) -> String {
    format!("{}/services/T0001/B0001/slackwebhooktoken", slack.url())
}

// ---------------------------------------------------------------------------------------
// rollback.rhai

fn rollback_config() -> String {
    r#"
default_environment = "local"

[secrets]
env = ["SLACK_WEBHOOK_URL"]
sources = ["env"]

[environments.local]
namespace = "elson"
deployment = "elson-backend"
selector = "app=elson-backend"

[alert]
retry_delay = 0.05

[alert.routes]
team = ["slack"]
oncall = ["slack"]

[alert.slack]
webhook = "env:SLACK_WEBHOOK_URL"
"#
    .to_owned()
}

fn rollback_workspace(emulator: &Emulator, slack: &Receiver) -> Workspace {
    Workspace::new(&rollback_config(), &emulator.kubeconfig)
        .with_env("SLACK_WEBHOOK_URL", &slack_url(slack))
}

#[test]
fn rollback_dry_run_changes_nothing_and_sends_nothing() {
    let emulator = Emulator::start();
    let slack = slack();
    let workspace = rollback_workspace(&emulator, &slack);
    let run = workspace.run(
        "rollback.rhai",
        &["--dry-run", "--param", "db_revision=abc123"],
    );

    // Everything ran or was planned; only the manual task is left: exit code 3.
    assert_eq!(run.code, 3, "{}", run.screen());
    for binding in [
        "k8s::rollout_pause",
        "k8s::rollout_resume",
        "k8s::rollout_undo",
    ] {
        assert_eq!(
            run.outcomes(binding),
            ["would_run"],
            "{binding}\n{}",
            run.screen()
        );
    }
    assert_eq!(run.outcomes("k8s::exec"), ["would_run"], "{}", run.screen());
    assert_eq!(
        run.outcomes("alert::notify"),
        ["would_run"],
        "{}",
        run.screen()
    );
    let deployment = emulator.get(DEPLOYMENT);
    assert_eq!(image_of(&deployment), CURRENT_IMAGE);
    assert_ne!(deployment["spec"]["paused"], json!(true));
    let log = emulator.get("/_emulator/exec-log");
    assert_eq!(log["items"], json!([]), "nothing ran in a pod");
    assert!(slack.requests().is_empty(), "a dry run sent an alert");
    assert_eq!(run.status("Troubleshoot the deployment failure"), "pending");
    run.assert_verifies(&workspace);
}

#[test]
fn rollback_restores_the_previous_image_reverts_migrations_and_tells_the_team() {
    let emulator = Emulator::start();
    let slack = slack();
    let workspace = rollback_workspace(&emulator, &slack);
    let (child, started) = workspace.spawn("rollback.rhai", &["--param", "db_revision=abc123"]);

    // The undo has restored the old template; the run now waits in rollout_status.
    wait_until("the undo", 30, || {
        image_of(&emulator.get(DEPLOYMENT)) == OLD_IMAGE
    });

    // A second rollback of the same environment while this one runs is refused.
    let second = workspace.run("rollback.rhai", &[]);
    assert_eq!(second.code, 5, "{}", second.screen());
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.screen()
    );

    // Play the controller: it sees the new generation and all replicas are updated.
    let deployment = emulator.get(DEPLOYMENT);
    let generation = deployment["metadata"]["generation"].clone();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 3,
        "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
    emulator.merge_patch(&format!("{DEPLOYMENT}/status"), &status);
    let run = workspace.finish(child, started);

    assert_eq!(run.code, 3, "{}", run.screen());
    for title in [
        "Record the revision being rolled back",
        "Stop the deployment: kubectl rollout pause deployment/elson-backend -n elson",
        "Roll back to previous version: kubectl rollout undo deployment/elson-backend -n elson",
        "Verify rollback: kubectl rollout status deployment/elson-backend -n elson",
        "The backend runs the previous image",
        "If database migrations need to be reverted: alembic downgrade <previous-revision>",
        "Notify the team about the rollback",
    ] {
        assert_eq!(
            run.status(title),
            "passed",
            "{title}\n{}",
            run.findings(title)
        );
    }
    assert_eq!(run.status("Troubleshoot the deployment failure"), "pending");
    let deployment = emulator.get(DEPLOYMENT);
    assert_eq!(image_of(&deployment), OLD_IMAGE);
    assert_ne!(deployment["spec"]["paused"], json!(true));
    let log = emulator.get("/_emulator/exec-log");
    let commands: Vec<Value> = log["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| item["command"].clone())
        .collect();
    assert_eq!(commands, [json!(["alembic", "downgrade", "abc123"])]);
    let sent = slack.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("Rolled back elson-backend in local"),
        "{text}"
    );
    assert!(text.contains(CURRENT_IMAGE), "{text}");
    run.assert_verifies(&workspace);
}
