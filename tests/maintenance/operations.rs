//! The daily log review and the monthly dependency reports.

use super::*;

// ---------------------------------------------------------------------------------------
// Review logs for error patterns daily

const LOG_REVIEW: &str = "Review the centralized logging for error patterns";

#[test]
fn review_logs_counts_error_lines_per_pod_and_leaves_the_central_logs_to_a_person() {
    let emulator = Emulator::start();
    let ws = workspace();
    configure(
        &ws,
        "log_window = \"24h\"\nerror_threshold = 3\nlogging_url = \"https://logs.elson.test\"",
        "",
    );
    let env = [kube_env(&emulator)];

    // The fixture's pods log a warning and no error. A person still has to look at the
    // centralized logging, so the run ends pending.
    for args in [&["--dry-run"][..], &[]] {
        let outcome = run(&ws, "review-logs", args, &env);
        outcome.expect(
            3,
            &[
                ("Read the backend pods' logs", "passed"),
                ("Error patterns stay below the threshold", "passed"),
                (LOG_REVIEW, "pending"),
            ],
        );
        let counts = &outcome.step("Read the backend pods' logs")["value"];
        assert_eq!(
            counts.as_object().map(|pods| pods.len()),
            Some(3),
            "{counts}"
        );
        assert_eq!(counts[POD]["matching"], 0);
        assert!(
            outcome
                .instructions(LOG_REVIEW)
                .contains("Open https://logs.elson.test")
        );
    }

    let failing = "INFO:     Application startup complete.\n\
        ERROR:    elson.db: connection to db.elson.svc.cluster.local refused\n\
        ERROR:    elson.db: connection to db.elson.svc.cluster.local refused\n\
        Traceback (most recent call last):\n  File \"/app/db.py\", line 3, in connect\n\
        ERROR:    elson.payments: charge failed for order 1812\n\
        CRITICAL: elson.worker: giving up after 5 retries\n";
    emulator.put(
        &format!("/_emulator/pods/elson/{POD}/logs"),
        &json!({"logs": {"backend": failing}}),
    );
    let broken = run(&ws, "review-logs", &[], &env);
    broken.expect(
        1,
        &[
            ("Error patterns stay below the threshold", "failed"),
            (LOG_REVIEW, "pending"),
        ],
    );
    let findings = broken.findings("Error patterns stay below the threshold");
    assert_eq!(findings.len(), 1, "only the failing pod: {findings:?}");
    assert!(
        findings[0].starts_with(&format!(
            "{POD}: 5 of 7 lines in the last 24h match error patterns ("
        )),
        "{findings:?}"
    );
    for part in [
        "ERROR × 3",
        "CRITICAL × 1",
        "Traceback (most recent call last) × 1",
        "more than 3",
        "connection to db.elson.svc.cluster.local refused",
    ] {
        assert!(findings[0].contains(part), "{part}: {findings:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Update dependencies monthly

const PIP_STEP: &str = "List outdated Python packages (pip list --outdated)";
const PIP_CHECK: &str = "Python packages are up to date";
const NPM_STEP: &str = "List outdated npm packages (npm outdated)";
const UPGRADE: &str = "Upgrade the outdated dependencies and open a change";

#[test]
fn update_dependencies_lists_outdated_packages_and_skips_what_the_repository_lacks() {
    let ws = workspace();
    let repo = ws.path().join("elson");
    git_repo(&repo, APP_FILES);
    std::fs::remove_dir_all(repo.join("frontend")).unwrap();
    // The backend's own environment, found as `backend/.venv` when no `python` is set: the
    // test tools' venv stands in for it.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    std::os::unix::fs::symlink(&venv, repo.join("backend/.venv")).unwrap();
    // pip reads package indexes from a local folder of (empty) distribution files, so the
    // report needs no network: a folder without files means nothing is newer.
    let index = ws.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    let local_index = format!("\"--no-index\", \"--find-links\", \"{}\"", index.display());
    let settings = |more: &str| {
        format!(
            "repo_dir = \"{}\"\npython_dir = \"backend\"\nnode_dir = \"frontend\"\n{more}",
            repo.display()
        )
    };
    configure(
        &ws,
        &settings(&format!("pip_options = [{local_index}]")),
        "",
    );

    for args in [&["--dry-run"][..], &[]] {
        let outcome = run(&ws, "update-dependencies", args, &[]);
        outcome.expect(
            3,
            &[
                (PIP_STEP, "passed"),
                (PIP_CHECK, "passed"),
                (NPM_STEP, "skipped"),
                ("npm packages are up to date", "skipped"),
                (UPGRADE, "pending"),
            ],
        );
        let npm = outcome.message(NPM_STEP);
        assert!(npm.starts_with("no package.json in "), "{npm}");
        let argv = &outcome.call_of("shell::run", "pip")["args"]["argv"][0];
        let expected = repo
            .canonicalize()
            .unwrap()
            .join("backend/.venv/bin/python");
        assert_eq!(argv.as_str(), expected.to_str(), "the project's own venv");
    }

    // A newer pytest than the one installed: a finding for the person who upgrades, named
    // by the interpreter the environment gives.
    std::fs::write(index.join("pytest-99.0.0-py3-none-any.whl"), "").unwrap();
    let python = format!("python = \"{}\"\n", venv.join("bin/python").display());
    configure(
        &ws,
        &settings(&format!("{python}pip_options = [{local_index}]")),
        "",
    );
    let outdated = run(&ws, "update-dependencies", &[], &[]);
    outdated.expect(
        3,
        &[
            (PIP_STEP, "passed"),
            (PIP_CHECK, "failed"),
            (UPGRADE, "pending"),
        ],
    );
    let findings = outdated.findings(PIP_CHECK);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let newer = findings[0].starts_with("pytest ") && findings[0].ends_with(" → 99.0.0");
    assert!(newer, "{findings:?}");
    assert_eq!(outdated.step(PIP_CHECK)["severity"], "warning");

    // pip itself failing is no finding about packages: the step fails and the run with it.
    configure(
        &ws,
        &settings(&format!("{python}pip_options = [\"--no-such-option\"]")),
        "",
    );
    let broken = run(&ws, "update-dependencies", &[], &[]);
    broken.expect(
        1,
        &[
            (PIP_STEP, "failed"),
            (PIP_CHECK, "skipped"),
            (UPGRADE, "pending"),
        ],
    );
    let message = broken.message(PIP_STEP);
    assert!(
        message.contains("pip list --outdated exited with 2: "),
        "{message}"
    );
    assert!(
        message.contains("no such option: --no-such-option"),
        "{message}"
    );
}
