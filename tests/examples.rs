//! The example runbooks shipped in `runbooks/examples/` run on a fresh machine, in a copy of
//! the folder so nothing they write lands in the repository.

mod common;

use common::{Workspace, step_end};

fn workspace_with_examples() -> Workspace {
    let ws = Workspace::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/examples");
    for entry in std::fs::read_dir(examples).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        ws.write(
            &format!("examples/{name}"),
            &std::fs::read_to_string(entry.path()).unwrap(),
        );
    }
    ws
}

#[test]
fn hello_passes() {
    let ws = workspace_with_examples();
    let run = ws.run("examples/hello.rhai", &["--param", "who=ops"]);
    assert_eq!(run.code, 0, "{}", run.screen());
    assert!(run.stderr.contains("info: hello, ops"), "{}", run.stderr);
    assert_eq!(step_end(&run.events(&ws), "Greet")["value"], 3);
}

#[test]
fn dry_run_writes_nothing_and_a_real_run_does() {
    let ws = workspace_with_examples();
    let dry = ws.run("examples/dry-run.rhai", &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.screen());
    assert!(!ws.path().join("examples/last-deploy.txt").exists());
    assert!(
        dry.stderr
            .contains("dry run: last-deploy.txt was not written")
    );
    let real = ws.run("examples/dry-run.rhai", &[]);
    assert_eq!(real.code, 0, "{}", real.screen());
    assert!(ws.path().join("examples/last-deploy.txt").exists());
}

#[test]
fn parallel_probes_run_together() {
    let ws = workspace_with_examples();
    let run = ws.run("examples/parallel.rhai", &[]);
    assert_eq!(run.code, 0, "{}", run.screen());
    let events = run.events(&ws);
    let value = &step_end(&events, "Probe three hosts at once")["value"];
    assert_eq!(
        value,
        &serde_json::json!(["host-a ok", "host-b ok", "host-c ok"])
    );
}

#[test]
fn failure_handling_shows_each_way_of_failing() {
    let ws = workspace_with_examples();
    let run = ws.run("examples/failure-handling.rhai", &[]);
    assert_eq!(run.code, 1, "{}", run.screen());
    let events = run.events(&ws);
    assert_eq!(
        step_end(&events, "A flaky probe passes on its second try")["attempts"],
        2
    );
    assert_eq!(
        step_end(&events, "Out-of-hours work is skipped")["status"],
        "skipped"
    );
    assert!(
        run.stderr
            .contains("warn: the run failed: this is where a runbook would page the on-call")
    );
}

#[test]
fn manual_tasks_are_pending_without_a_terminal() {
    let ws = workspace_with_examples();
    let run = ws.run("examples/manual.rhai", &[]);
    assert_eq!(run.code, 3, "{}", run.screen());
}
