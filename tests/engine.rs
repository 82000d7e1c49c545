//! The run model end to end: the real binary on small runbooks, checked through its exit
//! code, what it printed and the transcript it left.

mod common;

use common::{Workspace, of_type, stable, step_end};

#[test]
fn steps_checks_and_sections_land_in_a_verifiable_transcript() {
    let ws = Workspace::new();
    ws.write(
        "ok.rhai",
        r#"
        section("Pre-Deployment", || {
            step("Count", || 40 + 2);
            check("Arithmetic", || 1 + 1 == 2);
        });
        "#,
    );
    let run = ws.run("ok.rhai", &[]);
    assert_eq!(run.code, 0, "{}", run.screen());
    let events = run.events(&ws);
    assert_eq!(events[0]["type"], "run_start");
    assert_eq!(step_end(&events, "Count")["value"], 42);
    assert_eq!(step_end(&events, "Arithmetic")["status"], "passed");
    let end = events.last().unwrap();
    assert_eq!(
        (end["type"].as_str(), end["status"].as_str()),
        (Some("run_end"), Some("passed"))
    );
    let verify = ws.runbook(&["verify", run.transcript().to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}", verify.screen());
    assert!(
        verify.stdout.contains("intact and complete"),
        "{}",
        verify.stdout
    );
}

#[test]
fn a_failed_check_fails_the_run_at_the_end_but_a_failed_step_stops_it() {
    let ws = Workspace::new();
    ws.write(
        "fail.rhai",
        r#"
        check("First", || false);
        step("Runs after a failed check", || 1);
        step("Breaks", || { throw "database unreachable"; });
        step("Never runs", || 2);
        "#,
    );
    let run = ws.run("fail.rhai", &[]);
    assert_eq!(run.code, 1, "{}", run.screen());
    let events = run.events(&ws);
    assert_eq!(
        step_end(&events, "Runs after a failed check")["status"],
        "passed"
    );
    let broke = step_end(&events, "Breaks");
    assert_eq!(broke["status"], "failed");
    assert_eq!(broke["message"], "database unreachable");
    assert_eq!(broke["location"], "fail.rhai:4:29");
    assert!(!events.iter().any(|e| e["title"] == "Never runs"));
    assert!(
        run.stderr
            .contains("step `Breaks` failed; the run stopped there"),
        "{}",
        run.stderr
    );
}

#[test]
fn findings_fail_a_check_and_low_severity_only_warns() {
    let ws = Workspace::new();
    ws.write(
        "findings.rhai",
        r#"
        check("Headers", || ["HSTS missing", "Server header leaks nginx/1.2"]);
        check("Advice", #{severity: "warning"}, || #{ok: false, message: "consider a CDN"});
        check("Clean", || []);
        "#,
    );
    let run = ws.run("findings.rhai", &[]);
    assert_eq!(run.code, 1);
    let events = run.events(&ws);
    let headers = step_end(&events, "Headers");
    assert_eq!(headers["findings"].as_array().unwrap().len(), 2);
    assert!(
        run.stderr.contains("- Server header leaks nginx/1.2"),
        "{}",
        run.stderr
    );
    assert_eq!(step_end(&events, "Advice")["severity"], "warning");
    let summary = &events.last().unwrap()["summary"];
    assert_eq!(
        (summary["failed"].as_u64(), summary["warnings"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn dry_run_records_mutations_without_performing_them() {
    let ws = Workspace::new();
    ws.write(
        "touch.rhai",
        r#"
        step("Create marker", || shell::run(["touch", "marker"]));
        step("Read listing", || shell::run(["ls"], #{effect: "read"}).code);
        "#,
    );
    let run = ws.run("touch.rhai", &["--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.screen());
    assert!(
        !ws.path().join("marker").exists(),
        "a dry run created the file"
    );
    let events = run.events(&ws);
    let outcomes: Vec<&str> = of_type(&events, "binding_end")
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["would_run", "ok"]);
    assert_eq!(events[0]["dry_run"], true);
    assert!(
        run.stderr.contains("would run shell::run (dry run)"),
        "{}",
        run.stderr
    );

    let real = ws.run("touch.rhai", &[]);
    assert_eq!(real.code, 0, "{}", real.screen());
    assert!(ws.path().join("marker").exists());
}

const PROTECTED: &str = r#"
[environments.staging]
namespace = "elson-staging"
[environments.prod]
protected = true
namespace = "elson"
"#;

#[test]
fn a_protected_environment_needs_its_name_typed_before_a_change() {
    let ws = Workspace::new();
    ws.write("runbook.toml", PROTECTED);
    ws.write(
        "change.rhai",
        r#"step("Create marker", || shell::run(["touch", environment().namespace]));"#,
    );

    let refused = ws.run("change.rhai", &["--env", "prod", "--yes"]);
    assert_eq!(refused.code, 4, "{}", refused.screen());
    assert!(!ws.path().join("elson").exists());
    assert!(
        refused.stderr.contains("pass --confirm prod"),
        "{}",
        refused.stderr
    );

    let wrong = ws.run("change.rhai", &["--env", "prod", "--confirm", "staging"]);
    assert_eq!(wrong.code, 2);
    assert!(
        wrong
            .stderr
            .contains("--confirm names `staging` but the environment is `prod`")
    );

    let confirmed = ws.run("change.rhai", &["--env", "prod", "--confirm", "prod"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.screen());
    assert!(ws.path().join("elson").exists());

    let staging = ws.run("change.rhai", &["--env", "staging"]);
    assert_eq!(staging.code, 0, "{}", staging.screen());
    assert!(ws.path().join("elson-staging").exists());
}

#[test]
fn confirm_without_a_terminal_says_no_unless_told_otherwise() {
    let ws = Workspace::new();
    ws.write("runbook.toml", PROTECTED);
    ws.write("ask.rhai", r#"step("Ask", || confirm("Go on?"));"#);
    let value = |args: &[&str]| {
        let run = ws.run("ask.rhai", args);
        step_end(&run.events(&ws), "Ask")["value"].clone()
    };
    assert_eq!(value(&["--env", "staging"]), false);
    assert_eq!(value(&["--env", "staging", "--yes"]), true);
    assert_eq!(value(&["--env", "prod", "--yes"]), false);
    assert_eq!(value(&["--env", "prod", "--confirm", "prod"]), true);
}

#[test]
fn missing_parameters_are_all_named_before_the_first_step() {
    let ws = Workspace::new();
    ws.write(
        "params.rhai",
        r#"
        let version = param("version");
        let image = param("image");
        let replicas = param("replicas", 3);
        step("Deploy", || `${image}:${version} x${replicas}`);
        "#,
    );
    let run = ws.run("params.rhai", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("missing required parameters: image, version"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("--param image=VALUE --param version=VALUE")
    );
    assert!(of_type(&run.events(&ws), "step_start").is_empty());

    let ok = ws.run(
        "params.rhai",
        &[
            "--param",
            "version=1.4.2",
            "--param",
            "image=backend",
            "--param",
            "replicas=5",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.screen());
    assert_eq!(
        step_end(&ok.events(&ws), "Deploy")["value"],
        "backend:1.4.2 x5"
    );

    let typo = ws.run(
        "params.rhai",
        &[
            "--param",
            "version=1",
            "--param",
            "image=b",
            "--param",
            "replicas=many",
        ],
    );
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr
            .contains("parameter `replicas` must be a whole number, not `many`"),
        "{}",
        typo.stderr
    );
}

#[test]
fn timeouts_retries_skips_and_continue() {
    let ws = Workspace::new();
    ws.write(
        "control.rhai",
        r#"
        check("Slow", #{timeout: 0.2}, || { sleep(30); true });
        check("Spins", #{timeout: 0.2}, || { loop {} });
        check("Flaky", #{retries: 2, delay: 0.05}, || false);
        step("Not today", || skip("maintenance window closed"));
        step("Allowed to fail", #{keep_going: true}, || fail("known issue"));
        step("Still runs", || "yes");
        "#,
    );
    let run = ws.run("control.rhai", &[]);
    assert_eq!(run.code, 1, "{}", run.screen());
    let events = run.events(&ws);
    assert_eq!(
        step_end(&events, "Slow")["message"],
        "timed out after 0.2 s"
    );
    assert_eq!(
        step_end(&events, "Spins")["message"],
        "timed out after 0.2 s"
    );
    assert_eq!(step_end(&events, "Flaky")["attempts"], 3);
    let skipped = step_end(&events, "Not today");
    assert_eq!(
        (skipped["status"].as_str(), skipped["message"].as_str()),
        (Some("skipped"), Some("maintenance window closed"))
    );
    assert_eq!(
        step_end(&events, "Allowed to fail")["message"],
        "known issue"
    );
    assert_eq!(step_end(&events, "Still runs")["value"], "yes");
}

#[test]
fn parallel_returns_results_in_order_and_names_the_one_that_failed() {
    let ws = Workspace::new();
    ws.write(
        "parallel.rhai",
        r#"
        step("Fan out", || parallel([|| { sleep(0.2); "a" }, || "b", || { sleep(0.1); "c" }], #{max: 2}));
        step("One fails", || parallel([|| 1, || { throw "host two refused"; }]));
        "#,
    );
    let run = ws.run("parallel.rhai", &[]);
    assert_eq!(run.code, 1);
    let events = run.events(&ws);
    assert_eq!(
        step_end(&events, "Fan out")["value"],
        serde_json::json!(["a", "b", "c"])
    );
    let message = step_end(&events, "One fails")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("closure 2 of 2: host two refused"),
        "{message}"
    );
}

#[test]
fn failure_handlers_run_when_the_run_fails() {
    let ws = Workspace::new();
    ws.write(
        "handlers.rhai",
        r#"
        on_failure(|| log("paging the on-call"));
        step("Breaks", || fail("rollout stuck"));
        "#,
    );
    let run = ws.run("handlers.rhai", &[]);
    assert_eq!(run.code, 1);
    let events = run.events(&ws);
    let section = of_type(&events, "section_start");
    assert_eq!(section[0]["title"], "on failure");
    assert!(
        of_type(&events, "log")
            .iter()
            .any(|e| e["message"] == "paging the on-call")
    );
}

#[test]
fn manual_tasks_without_a_terminal_stay_pending_never_passed() {
    let ws = Workspace::new();
    ws.write(
        "manual.rhai",
        r#"manual("Test two-factor authentication", "Log in with the test account.");"#,
    );
    let run = ws.run("manual.rhai", &[]);
    assert_eq!(run.code, 3, "{}", run.screen());
    let end = step_end(&run.events(&ws), "Test two-factor authentication").clone();
    assert_eq!(end["status"], "pending");
    assert!(
        run.stdout
            .contains("pending (0 passed, 0 failed, 0 warnings, 0 skipped, 1 pending)")
    );
}

#[test]
fn a_second_run_of_the_same_runbook_waits_its_turn() {
    let ws = Workspace::new();
    ws.write("slow.rhai", r#"step("Hold the lock", || sleep(5));"#);
    let mut first = ws
        .command(&["run", "slow.rhai", "--runs-dir", "runs", "--no-progress"])
        .spawn()
        .unwrap();
    let runs = ws.path().join("runs");
    while !runs.exists() || std::fs::read_dir(&runs).unwrap().count() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = ws.run("slow.rhai", &[]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.code, 5, "{}", second.screen());
    assert!(
        second
            .stderr
            .contains("is already running in `default` (pid"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("by tester@"), "{}", second.stderr);
}

#[test]
fn resuming_skips_what_passed_and_restores_its_value() {
    let ws = Workspace::new();
    ws.write(
        "resume.rhai",
        r#"
        let ready = param("ready", false);
        let backup = step("Back up", || { shell::run(["sh", "-c", "echo x >> backups"]); "backup-7" });
        step("Migrate", || { if !ready { fail("lock held"); } `migrated after ${backup}` });
        "#,
    );
    let failed = ws.run("resume.rhai", &[]);
    assert_eq!(failed.code, 1);
    let previous = failed.transcript();
    let resumed = ws.run(
        "resume.rhai",
        &[
            "--param",
            "ready=true",
            "--resume",
            previous.to_str().unwrap(),
        ],
    );
    assert_eq!(resumed.code, 0, "{}", resumed.screen());
    let events = resumed.events(&ws);
    assert_eq!(step_end(&events, "Back up")["resumed"], true);
    assert_eq!(
        step_end(&events, "Migrate")["value"],
        "migrated after backup-7"
    );
    let backups = std::fs::read_to_string(ws.path().join("backups")).unwrap();
    assert_eq!(backups.lines().count(), 1, "the backup step ran again");
}

#[test]
fn ctrl_c_ends_the_run_and_the_transcript_says_so() {
    let ws = Workspace::new();
    ws.write(
        "wait.rhai",
        r#"section("Rollout", || { step("Wait", || sleep(60)); });"#,
    );
    let child = ws
        .command(&["run", "wait.rhai", "--runs-dir", "runs", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runs = ws.path().join("runs");
    wait_for_step_start(&runs);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(child.id() as i32, 2) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let transcript = find_transcript(&runs);
    let verify = ws.runbook(&["verify", transcript.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}", verify.screen());
    assert!(
        verify.stdout.contains("run interrupted"),
        "{}",
        verify.stdout
    );
    let text = std::fs::read_to_string(&transcript).unwrap();
    assert!(text.contains(r#""status":"interrupted""#));
}

#[test]
fn a_killed_run_leaves_a_transcript_that_verifies_as_incomplete() {
    let ws = Workspace::new();
    ws.write("wait.rhai", r#"step("Wait", || sleep(60));"#);
    let mut child = ws
        .command(&["run", "wait.rhai", "--runs-dir", "runs", "--no-progress"])
        .spawn()
        .unwrap();
    let runs = ws.path().join("runs");
    wait_for_step_start(&runs);
    child.kill().unwrap();
    let _ = child.wait();
    let transcript = find_transcript(&runs);
    let verify = ws.runbook(&["verify", transcript.to_str().unwrap()]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains("the run never recorded its end"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("2 events before it are intact"),
        "{}",
        verify.stdout
    );
}

#[test]
fn an_edited_transcript_fails_verification_at_the_line_after_the_edit() {
    let ws = Workspace::new();
    ws.write(
        "ok.rhai",
        r#"step("Deploy", || "v1.4.2"); step("Verify", || true);"#,
    );
    let run = ws.run("ok.rhai", &[]);
    let path = ws.path().join(run.transcript());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("v1.4.2", "v1.4.3");
    std::fs::write(&path, text).unwrap();
    let verify = ws.runbook(&["verify", path.to_str().unwrap()]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains(
            "line 4 (seq 3): its hash of the previous line does not match; line 3 was changed"
        ),
        "{}",
        verify.stdout
    );
}

fn wait_for_step_start(runs: &std::path::Path) {
    for _ in 0..500 {
        if let Some(path) = try_find_transcript(runs)
            && std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains("step_start")
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the run never started its step");
}

fn try_find_transcript(runs: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = std::fs::read_dir(runs).ok()?.flatten().next()?.path();
    Some(dir.join("transcript.jsonl")).filter(|p| p.exists())
}

fn find_transcript(runs: &std::path::Path) -> std::path::PathBuf {
    try_find_transcript(runs).expect("a transcript")
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

#[test]
fn script_errors_show_file_line_column_and_the_source() {
    let ws = Workspace::new();
    ws.write(
        "syntax.rhai",
        "section(\"A\", || {\n    step(\"B\", || 1)\n    step(\"C\", || 2);\n});\n",
    );
    let run = ws.run("syntax.rhai", &[]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("syntax_error", stable(&run.stderr));

    ws.write(
        "runtime.rhai",
        "let hosts = [\"a\", \"b\"];\nlet third = hosts[2];\nstep(\"Use it\", || third);\n",
    );
    let run = ws.run("runtime.rhai", &[]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("runtime_error", stable(&run.stderr));
}

#[test]
fn check_finds_unknown_functions_bad_imports_and_duplicate_titles() {
    let ws = Workspace::new();
    ws.write(
        "lint.rhai",
        "import \"../outside\" as outside;\nsection(\"Pre\", || {\n    check(\"Pods\", || true);\n    check(\"Pods\", || true);\n    shell::rnu([\"ls\"]);\n    chekc(\"x\", || true);\n});\n",
    );
    let run = ws.runbook(&["check", "lint.rhai"]);
    assert_eq!(run.code, 2, "{}", run.screen());
    insta::assert_snapshot!("lint", stable(&run.stderr));

    ws.write(
        "clean.rhai",
        "section(\"Pre\", || { check(\"Pods\", || true); });\n",
    );
    let clean = ws.runbook(&["check", "clean.rhai"]);
    assert_eq!(clean.code, 0, "{}", clean.screen());
    assert_eq!(clean.stdout, "clean.rhai: ok\n");
}

#[test]
fn plan_lists_every_step_with_its_effects_without_running_anything() {
    let ws = Workspace::new();
    ws.write(
        "plan.rhai",
        r#"
        let version = param("version");
        fn deploy(v) { shell::run(["touch", "deployed"]) }
        section("Deployment Execution", || {
            check("Listing", || shell::run(["ls"], #{effect: "read"}).code == 0);
            step("Run the deployment script", || deploy(version));
            manual("Monitor deployment progress", "Watch the dashboard.");
        });
        "#,
    );
    let run = ws.runbook(&["plan", "plan.rhai"]);
    assert_eq!(run.code, 0, "{}", run.screen());
    assert!(!ws.path().join("deployed").exists());
    insta::assert_snapshot!("plan", run.stdout);
}

#[test]
fn imports_come_from_the_runbook_folder_and_stdlib_only() {
    let ws = Workspace::new();
    ws.write("stdlib/helpers.rhai", "fn double(x) { x * 2 }\n");
    ws.write("runbooks/local.rhai", "fn triple(x) { x * 3 }\n");
    ws.write(
        "runbooks/use.rhai",
        "import \"helpers\" as h;\nimport \"local\" as l;\nstep(\"Math\", || h::double(l::triple(7)));\n",
    );
    let run = ws.run("runbooks/use.rhai", &[]);
    assert_eq!(run.code, 0, "{}", run.screen());
    assert_eq!(step_end(&run.events(&ws), "Math")["value"], 42);

    ws.write("secret.rhai", "fn x() { 1 }\n");
    ws.write(
        "runbooks/escape.rhai",
        "import \"../secret\" as s;\nstep(\"X\", || s::x());\n",
    );
    let escape = ws.run("runbooks/escape.rhai", &[]);
    assert_eq!(escape.code, 2);
    assert!(
        escape.stderr.contains("no absolute paths, no `..`"),
        "{}",
        escape.stderr
    );
}

#[test]
fn list_shows_descriptions_and_schedules() {
    let ws = Workspace::new();
    ws.write(
        "runbooks/deploy.rhai",
        "//! Production deployment checklist\nstep(\"x\", || 1);\n",
    );
    ws.write(
        "runbooks/maintenance/rotate.rhai",
        "//! Rotate API keys\n//! every: monthly\n",
    );
    let run = ws.runbook(&["list"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        "runbooks/deploy.rhai  Production deployment checklist\nruntbooks/maintenance/rotate.rhai  Rotate API keys [every: monthly]\n".replace("runt", "run")
    );
}

#[test]
fn docs_come_from_the_registered_functions() {
    let ws = Workspace::new();
    let run = ws.runbook(&["docs", "shell"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("### `shell::run(argv: Array, options: Map) -> Map`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Effect: mutate."));
    let all = ws.runbook(&["docs"]);
    for function in [
        "section(title: string, body: FnPtr)",
        "manual(title: string, instructions: string) -> bool",
        "parallel(closures: Array) -> Array",
    ] {
        assert!(all.stdout.contains(function), "missing {function}");
    }
    let unknown = ws.runbook(&["docs", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("no namespace `nope` (known: global, "),
        "{}",
        unknown.stderr
    );
}

#[test]
fn reports_render_from_the_transcript() {
    let ws = Workspace::new();
    ws.write(
        "r.rhai",
        r#"section("Security", || { check("HTTPS", || true); check("CORS", || ["allows *"]); });"#,
    );
    let run = ws.run("r.rhai", &["--report", "junit:junit.xml"]);
    assert_eq!(run.code, 1);
    let junit = std::fs::read_to_string(ws.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<testsuite name="Security" tests="2""#),
        "{junit}"
    );
    assert!(junit.contains(r#"<failure message="1 finding""#), "{junit}");
    let transcript = run.transcript();
    let markdown = ws.runbook(&[
        "report",
        transcript.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert!(
        markdown.stdout.contains("- ✗ **check** CORS (failed"),
        "{}",
        markdown.stdout
    );
    assert!(markdown.stdout.contains("  - finding: allows *"));
    let json = ws.runbook(&["report", transcript.to_str().unwrap(), "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["end"]["status"], "failed");
    let html = ws.runbook(&["report", transcript.to_str().unwrap(), "--format", "html"]);
    assert!(
        html.stdout.starts_with("<!doctype html>"),
        "{}",
        html.stdout
    );
    assert!(html.stdout.contains("finding: allows *"), "{}", html.stdout);
    assert!(
        ws.path()
            .join(transcript.parent().unwrap())
            .join("report.md")
            .exists()
    );
}

#[test]
fn a_runaway_script_ends_with_a_clear_error() {
    let ws = Workspace::new();
    ws.write("runaway.rhai", "let n = 0;\nwhile true { n += 1; }\n");
    let run = ws.run("runaway.rhai", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("error: Too many operations"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: a loop that never ends?"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_canary_secret_never_reaches_any_output_even_at_the_highest_verbosity() {
    const CANARY: &str = "canary-7f3a9c1e-do-not-leak";
    let ws = Workspace::new();
    ws.write("runbook.toml", "[secrets]\nenv = [\"LISTED_TOKEN\"]\n");
    ws.write(
        "leak.rhai",
        r#"
        let token = secret("CANARY_TOKEN");
        let db_password = secret_param("db_password");
        step("Echo it", || shell::run(["sh", "-c", "echo $TOKEN; echo $TOKEN | base64; echo $LISTED_TOKEN >&2"], #{env: #{TOKEN: token}, effect: "read"}).stdout);
        step("Fail with it", #{keep_going: true}, || shell::run(["sh", "-c", "echo failed for $1 >&2; exit 3", "sh", token], #{check: true, effect: "read"}));
        step("Return it", || #{token: token, password: db_password});
        step("Print it", #{keep_going: true}, || print(token));
        check("Length only", || token.len() == 27);
        "#,
    );
    let mut command = ws.command(&[
        "run",
        "leak.rhai",
        "--runs-dir",
        "runs",
        "-vv",
        "--report",
        "junit:junit.xml",
        "--report",
        "json:report.json",
        "--param",
        &format!("db_password={CANARY}-param"),
    ]);
    command
        .env("CANARY_TOKEN", CANARY)
        .env("LISTED_TOKEN", format!("{CANARY}-listed"))
        .env("RUST_LOG", "trace");
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("a secret cannot be printed"), "{stderr}");
    let transcript_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("transcript: "))
        .unwrap();
    let transcript = ws.path().join(transcript_line);
    let mut outputs = vec![stdout.to_string(), stderr.to_string()];
    for file in [
        transcript.clone(),
        transcript.with_file_name("report.md"),
        ws.path().join("junit.xml"),
        ws.path().join("report.json"),
    ] {
        outputs.push(std::fs::read_to_string(&file).unwrap());
    }
    let encoded = base64_of(CANARY);
    for text in &outputs {
        assert!(!text.contains(CANARY), "the canary leaked:\n{text}");
        assert!(
            !text.contains(&encoded[..20]),
            "the canary's base64 leaked:\n{text}"
        );
        assert!(
            !text.contains("canary-7f3a"),
            "part of the canary leaked:\n{text}"
        );
    }
    let text = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        text.contains(r#""line":"***""#),
        "the echoed value was not recorded masked"
    );
    assert!(text.contains(r#""db_password":"***""#));
}

fn base64_of(text: &str) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", &format!("printf %s '{text}' | base64 -w0")])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_failing_namespaced_binding_names_the_line_and_column_of_its_call() {
    let ws = Workspace::new();
    ws.write(
        "missing.rhai",
        "step(\"Start it\", || {\n    shell::run([\"/nonexistent/program\"])\n});\n",
    );
    let run = ws.run("missing.rhai", &[]);
    assert_eq!(run.code, 1, "{}", run.screen());
    let end = step_end(&run.events(&ws), "Start it").clone();
    assert_eq!(end["location"], "missing.rhai:2:12");
    let message = end["message"].as_str().unwrap();
    assert!(
        message.starts_with("shell::run on /nonexistent/program: cannot start"),
        "{message}"
    );
}
