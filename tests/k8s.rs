//! The `k8s::` bindings and the `k8s` stdlib checks, run through the binary against the
//! Kubernetes API emulator loaded with the healthy `elson` namespace.

#[path = "support/emulator.rs"]
mod emulator;
#[path = "support/runbook.rs"]
mod runbook;

use std::time::{Duration, Instant};

use emulator::Emulator;
use runbook::{finish, run, spawn};
use serde_json::{Value, json};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/elson/deployments/elson-backend";
const POD: &str = "elson-backend-6d8f7c9b5d-4xkqz";

fn image_of(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// Reading objects

#[test]
fn get_and_list_resolve_kinds_by_every_name_through_discovery() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        print(k8s::get("deploy", "elson", "elson-backend").spec.template.spec.containers[0].image);
        print(k8s::get("apps/v1/Deployment", "elson", "elson-backend").metadata.name);
        print(k8s::get("Deployment", "elson", "missing") == ());
        print(k8s::list("networkpolicies", "elson").map(|p| p.metadata.name));
        print(k8s::list("po", "elson", #{labels: #{app: "elson-backend"}, limit: 2}).len());
        print(k8s::list("pods", "elson", #{fields: "spec.nodeName=worker-2"}).map(|p| p.kind + " " + p.metadata.name));
        print(k8s::get("node", "", "worker-1").status.nodeInfo.kubeletVersion);
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.printed(),
        [
            "registry.example.com/elson/backend:1.4.2",
            "elson-backend",
            "true",
            r#"["allow-ingress-to-backend", "default-deny"]"#,
            "2",
            r#"["Pod elson-backend-6d8f7c9b5d-8rtwn"]"#,
            "v1.33.4",
        ]
    );
    let discovery = emulator
        .requests()
        .iter()
        .filter(|r| r["path"] == "/apis" || r["path"] == "/api")
        .count();
    assert_eq!(discovery, 2, "discovery runs once per run");
}

#[test]
fn an_unknown_kind_is_an_error_naming_the_server() {
    let emulator = Emulator::start();
    let run = run(&emulator, r#"k8s::get("gizmo", "elson", "x");"#, &[]);
    assert_eq!(run.code, 2);
    let expected = format!(
        "k8s::get on gizmo elson/x: the API server {} (context `emulator`) serves no kind `gizmo`",
        emulator.server()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
}

#[test]
fn mistyped_options_are_named_with_the_known_ones() {
    let emulator = Emulator::start();
    let script = r#"
        try { k8s::logs("elson", "x", #{tial: 5}); } catch (error) { print(error); }
        try { k8s::patch("deploy", "elson", "elson-backend", #{}, #{type: "xml"}); } catch (error) { print(error); }
        try { k8s::patch("deploy", "elson", "elson-backend", #{}, #{type: "json"}); } catch (error) { print(error); }
        try { k8s::rollout_status("elson", "elson-backend", #{timeout: "soon"}); } catch (error) { print(error); }
    "#;
    let run = run(&emulator, script, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.printed(),
        [
            "k8s::logs: unknown option `tial` (known: tail, since, container, previous)",
            "k8s::patch: unknown patch type `xml` (merge, strategic or json)",
            "k8s::patch: a `json` patch is an array of operations",
            "k8s::rollout_status: `timeout` takes seconds or a duration like \"10m\"",
        ]
    );
    assert!(emulator.requests().is_empty(), "nothing was sent");
}

#[test]
fn a_secrets_values_reach_the_script_only_as_secrets() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        let secret = k8s::get("secret", "elson", "backend-secrets");
        print(secret);
        print(secret.data.SECRET_KEY.len());
        let key = secret("k8s:elson/backend-secrets#SECRET_KEY");
        check("SECRET_KEY is long enough", || key.len() >= 32);
        shell::run(["echo", key], #{effect: "read"});
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.printed()[0].contains(r#""SECRET_KEY": <secret>"#));
    assert_eq!(run.printed()[1], "41");
    for leak in [
        "fake-secret-key-for-tests-only-0000000000",
        "ZmFrZS1zZWNyZXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDAwMDA=",
        "not-a-real-password",
    ] {
        assert!(!run.transcript.contains(leak), "{leak} leaked");
        assert!(!run.stderr.contains(leak) && !run.stdout.contains(leak));
    }
    assert_eq!(run.output(), ["***"]);
    assert_eq!(run.outcome_of("k8s::secret"), ["ok"]);
}

#[test]
fn a_missing_secret_key_names_the_keys_there_are() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"let key = secret("k8s:elson/backend-secrets#API_KEY");"#,
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "the Kubernetes Secret elson/backend-secrets does not exist or has no key `API_KEY`"
        ),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Writing objects

#[test]
fn apply_patch_and_delete_change_the_cluster_with_the_runbook_field_manager() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        let stored = k8s::apply(#{apiVersion: "v1", kind: "ConfigMap",
            metadata: #{name: "release", namespace: "elson"}, data: #{version: "1.4.2"}});
        print(stored.metadata.resourceVersion != ());
        k8s::patch("configmap", "elson", "release", #{data: #{notes: "hotfix"}});
        k8s::patch("deployment", "elson", "elson-backend",
            [#{op: "replace", path: "/spec/replicas", value: 4}], #{type: "json"});
        k8s::patch("deployment", "elson", "elson-backend",
            #{spec: #{template: #{spec: #{containers: [#{name: "backend", image: "registry.example.com/elson/backend:1.4.3"}]}}}},
            #{type: "strategic"});
        print(k8s::delete("pod", "elson", "elson-backend-6d8f7c9b5d-z2v9m"));
        print(k8s::delete("pod", "elson", "elson-backend-6d8f7c9b5d-z2v9m"));
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.printed(), ["true", "true", "false"]);
    let config = emulator.get("/api/v1/namespaces/elson/configmaps/release");
    assert_eq!(
        config["data"],
        json!({"version": "1.4.2", "notes": "hotfix"})
    );
    let deployment = emulator.get(DEPLOYMENT);
    assert_eq!(deployment["spec"]["replicas"], 4);
    assert_eq!(
        image_of(&deployment),
        "registry.example.com/elson/backend:1.4.3"
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["ports"][0]["containerPort"], 8000,
        "strategic merge kept the rest"
    );
    let apply = emulator
        .requests()
        .into_iter()
        .find(|r| r["method"] == "PATCH" && r["path"].as_str().unwrap().ends_with("/release"))
        .unwrap();
    assert_eq!(apply["contentType"], "application/apply-patch+yaml");
    assert!(
        apply["query"]
            .to_string()
            .contains(r#"["fieldManager","runbook"]"#)
    );
}

#[test]
fn a_dry_run_write_is_validated_by_the_server_and_stores_nothing() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        let stored = k8s::apply(#{apiVersion: "v1", kind: "ConfigMap",
            metadata: #{name: "release", namespace: "elson"}, data: #{version: "1.4.2"}});
        print(stored.data.version);
        print(k8s::patch("deployment", "elson", "elson-backend", #{spec: #{replicas: 9}}).spec.replicas);
        print(k8s::delete("configmap", "elson", "backend-config"));
        "#,
        &["--dry-run"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.printed(), ["1.4.2", "9", "true"]);
    assert_eq!(run.outcome_of("k8s::apply"), ["would_run"]);
    assert_eq!(run.outcome_of("k8s::patch"), ["would_run"]);
    let output = run.output();
    assert!(
        output[0].starts_with("server dry run, would be: "),
        "{output:?}"
    );
    assert!(output[1].contains(r#""replicas":9"#), "{output:?}");
    assert_eq!(
        emulator.get("/api/v1/namespaces/elson/configmaps/release")["code"],
        404
    );
    assert_eq!(emulator.get(DEPLOYMENT)["spec"]["replicas"], 3);
    assert_eq!(
        emulator.get("/api/v1/namespaces/elson/configmaps/backend-config")["kind"],
        "ConfigMap"
    );
    let writes: Vec<Value> = emulator
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert_eq!(writes.len(), 3);
    for write in writes {
        // kube sends a delete's options, dryRun among them, in the body, as the API allows.
        let in_query = write["query"].to_string().contains(r#"["dryRun","All"]"#);
        let in_body = write["body"]["dryRun"] == json!(["All"]);
        assert!(in_query || in_body, "{write}");
    }
}

#[test]
fn create_secret_stores_values_the_transcript_never_shows() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        let made = k8s::create_secret("elson", "payments", #{STRIPE_KEY: "sk_test_not_a_real_key_123", WEBHOOK: "whsec_not_real_456"});
        print(made);
        let key = secret("k8s:elson/backend-secrets#SECRET_KEY");
        k8s::apply(#{apiVersion: "v1", kind: "Secret", metadata: #{name: "copy", namespace: "elson"},
            data: #{SECRET_KEY: key}});
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.printed(),
        [
            r#"#{"keys": ["STRIPE_KEY", "WEBHOOK"], "name": "payments", "namespace": "elson", "type": "Opaque"}"#
        ]
    );
    let secret = emulator.get("/api/v1/namespaces/elson/secrets/payments");
    assert_eq!(
        secret["data"]["STRIPE_KEY"],
        "c2tfdGVzdF9ub3RfYV9yZWFsX2tleV8xMjM="
    );
    let original = emulator.get("/api/v1/namespaces/elson/secrets/backend-secrets");
    let copy = emulator.get("/api/v1/namespaces/elson/secrets/copy");
    assert_eq!(copy["data"]["SECRET_KEY"], original["data"]["SECRET_KEY"]);
    for leak in [
        "sk_test_not_a_real_key_123",
        "c2tfdGVzdF9ub3RfYV9yZWFsX2tleV8xMjM=",
        "whsec_not_real_456",
        "fake-secret-key-for-tests-only-0000000000",
        "ZmFrZS1zZWNyZXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDAwMDA=",
    ] {
        assert!(!run.transcript.contains(leak), "{leak} leaked");
    }
}

// ---------------------------------------------------------------------------------------
// Pods

#[test]
fn pods_ready_names_each_pod_that_is_not_and_why() {
    let emulator = Emulator::start();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "backend", "ready": false, "restartCount": 4,
            "image": "registry.example.com/elson/backend:1.4.2", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
    emulator.merge_patch(
        &format!("/api/v1/namespaces/elson/pods/{POD}/status"),
        &status,
    );
    let run = run(
        &emulator,
        r#"
        print(k8s::pods("elson", "app=elson-backend").len());
        print(k8s::pods_ready("elson", #{app: "elson-backend"}));
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.printed(),
        [
            "3".to_owned(),
            format!(
                r#"#{{"not_ready": [#{{"phase": "Running", "pod": "{POD}", "reason": "CrashLoopBackOff", "restarts": 4}}], "ready": 2, "total": 3}}"#
            )
        ]
    );
}

#[test]
fn logs_and_events_of_the_backend() {
    let emulator = Emulator::start();
    let script = format!(
        r#"
        print(k8s::logs("elson", "{POD}", #{{tail: 2, container: "backend"}}));
        print(k8s::logs("elson", "{POD}").split("\n").len());
        for event in k8s::events("deploy", "elson", "elson-backend") {{ print(event.reason + ": " + event.message); }}
        "#
    );
    let run = run(&emulator, &script, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed = run.printed();
    assert_eq!(
        printed[0],
        "INFO:     10.244.0.5:48844 - \"POST /api/v1/invoices HTTP/1.1\" 201 Created\nINFO:     10.244.0.5:48870 - \"GET /healthz HTTP/1.1\" 200 OK\n"
    );
    assert_eq!(printed[1], "14");
    assert_eq!(
        printed[2..],
        [
            "ScalingReplicaSet: Scaled up replica set elson-backend-6d8f7c9b5d from 0 to 3",
            "ScalingReplicaSet: Scaled down replica set elson-backend-5c7d9f6b8a from 3 to 0",
        ]
    );
}

#[test]
fn exec_runs_alembic_in_the_pod_and_reports_the_exit_code() {
    let emulator = Emulator::start();
    let script = format!(
        r#"
        let current = k8s::exec("elson", "{POD}", ["alembic", "current"], #{{effect: "read"}});
        print(current.code);
        print(current.stdout.split("\n")[2]);
        let missing = k8s::exec("elson", "{POD}", ["flask", "db", "upgrade"]);
        print(missing.code);
        k8s::exec("elson", "{POD}", ["false"], #{{check: true, container: "backend"}});
        "#
    );
    let run = run(&emulator, &script, &[]);
    assert_eq!(&run.printed()[..3], ["0", "3c9e1f2a7b4d (head)", "127"]);
    assert!(run.output().contains(&"3c9e1f2a7b4d (head)".to_owned()));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!(
            "k8s::exec on pod elson/{POD}: false: exited with code 1"
        )),
        "{}",
        run.stderr
    );
    let log = emulator.get("/_emulator/exec-log");
    let commands: Vec<Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["command"].clone())
        .collect();
    assert_eq!(commands[0], json!(["alembic", "current"]));
    assert_eq!(log["items"][2]["container"], "backend");
}

#[test]
fn exec_that_changes_things_is_only_planned_in_a_dry_run() {
    let emulator = Emulator::start();
    let script = format!(
        r#"
        print(k8s::exec("elson", "{POD}", ["alembic", "current"], #{{effect: "read"}}).code);
        print(k8s::exec("elson", "{POD}", ["alembic", "downgrade", "9a1b2c3d4e5f"]));
        "#
    );
    let run = run(&emulator, &script, &["--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.outcome_of("k8s::exec"), ["ok", "would_run"]);
    let log = emulator.get("/_emulator/exec-log");
    assert_eq!(log["items"].as_array().unwrap().len(), 1);
}

#[test]
fn can_i_answers_from_access_reviews() {
    let emulator = Emulator::start();
    emulator.put(
        "/_emulator/access",
        &json!({"default": "deny", "rules": [
            {"verbs": ["get", "list"], "resources": ["pods", "pods/log"], "groups": [""], "namespaces": ["elson"], "allowed": true},
            {"verbs": ["update"], "resources": ["deployments"], "groups": ["apps"], "namespaces": ["elson"], "allowed": true}
        ]}),
    );
    let run = run(
        &emulator,
        r#"
        print(k8s::can_i("get", "pods", "elson"));
        print(k8s::can_i("get", "pods/log", "elson"));
        print(k8s::can_i("update", "deploy", "elson"));
        print(k8s::can_i("delete", "deployments", "elson"));
        print(k8s::can_i("get", "secrets", "elson"));
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.printed(), ["true", "true", "true", "false", "false"]);
}

// ---------------------------------------------------------------------------------------
// Rollouts

#[test]
fn rollout_undo_goes_back_to_revision_one_as_kubectl_does() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        for revision in k8s::rollout_history("elson", "elson-backend") {
            print(`${revision.revision} ${revision.images[0]} ${revision.change_cause} ${revision.current}`);
        }
        print(k8s::rollout_undo("elson", "elson-backend"));
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.printed(),
        [
            "1 registry.example.com/elson/backend:1.4.1 deploy backend 1.4.1 false",
            "2 registry.example.com/elson/backend:1.4.2 deploy backend 1.4.2 true",
            r#"#{"from_revision": 2, "images": ["registry.example.com/elson/backend:1.4.1"], "skipped": false, "to_revision": 1}"#,
        ]
    );
    let deployment = emulator.get(DEPLOYMENT);
    assert_eq!(
        image_of(&deployment),
        "registry.example.com/elson/backend:1.4.1"
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels,
        &json!({"app": "elson-backend"}),
        "no pod-template-hash"
    );
    let annotations = &deployment["metadata"]["annotations"];
    assert_eq!(
        annotations["kubernetes.io/change-cause"],
        "deploy backend 1.4.1"
    );
    let put = emulator
        .requests()
        .into_iter()
        .find(|r| r["method"] == "PUT")
        .unwrap();
    assert_eq!(put["path"], DEPLOYMENT, "a replace, not a patch");
}

#[test]
fn a_dry_run_rollback_changes_nothing_and_asks_the_server_for_a_dry_run() {
    let emulator = Emulator::start();
    let before = emulator.get(DEPLOYMENT);
    let run = run(
        &emulator,
        r#"step("Roll back", || k8s::rollout_undo("elson", "elson-backend", #{to_revision: 1}));"#,
        &["--dry-run"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.outcome_of("k8s::rollout_undo"), ["would_run"]);
    let shown = run.output().join("\n");
    assert!(shown.contains("server dry run, would be: "), "{shown}");
    assert!(
        shown.contains("registry.example.com/elson/backend:1.4.1"),
        "{shown}"
    );
    let after = emulator.get(DEPLOYMENT);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(image_of(&after), "registry.example.com/elson/backend:1.4.2");
    let put = emulator
        .requests()
        .into_iter()
        .find(|r| r["method"] == "PUT")
        .unwrap();
    assert_eq!(
        put["query"],
        json!([["dryRun", "All"], ["fieldManager", "runbook"]])
    );
}

#[test]
fn a_rollback_over_a_change_made_meanwhile_is_a_conflict() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        let seen = k8s::get("deployment", "elson", "elson-backend").metadata.resourceVersion;
        // Someone else scales the Deployment after it was read.
        k8s::patch("deployment", "elson", "elson-backend", #{spec: #{replicas: 5}});
        step("Roll back", || k8s::rollout_undo("elson", "elson-backend", #{resource_version: seen}));
        "#,
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let expected = format!(
        "roll back Deployment elson/elson-backend to revision 1: conflict: the object changed since it was read (someone else wrote it meanwhile); nothing was written: read it again and decide anew (API server {}, context `emulator`)",
        emulator.server()
    );
    let end = run.of_type("step_end").next().unwrap();
    assert!(
        end["message"].as_str().unwrap().contains(&expected),
        "{end}"
    );
    let deployment = emulator.get(DEPLOYMENT);
    assert_eq!(
        image_of(&deployment),
        "registry.example.com/elson/backend:1.4.2"
    );
    assert_eq!(deployment["spec"]["replicas"], 5);
}

#[test]
fn pause_resume_and_restart_as_kubectl_does_them() {
    let emulator = Emulator::start();
    let run = run(
        &emulator,
        r#"
        print(k8s::rollout_pause("elson", "elson-backend").spec.paused);
        try { k8s::rollout_restart("elson", "elson-backend"); } catch (error) { print(error); }
        try { k8s::rollout_undo("elson", "elson-backend"); } catch (error) { print(error); }
        print(k8s::rollout_resume("elson", "elson-backend").spec.paused);
        k8s::rollout_restart("elson", "elson-backend");
        "#,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed = run.printed();
    assert_eq!(printed[0], "true");
    assert!(
        printed[1].contains("Deployment elson/elson-backend is paused: resume it first"),
        "{}",
        printed[1]
    );
    assert!(
        printed[2].contains("a paused Deployment is not rolled back"),
        "{}",
        printed[2]
    );
    assert_eq!(printed[3], "false");
    let deployment = emulator.get(DEPLOYMENT);
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{deployment}"
    );
    assert_eq!(
        image_of(&deployment),
        "registry.example.com/elson/backend:1.4.2"
    );
}

#[test]
fn rollout_status_waits_for_the_controller_and_the_replicas() {
    let emulator = Emulator::start();
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "backend", "image": "registry.example.com/elson/backend:1.4.3"}]}}}});
    emulator.merge_patch(DEPLOYMENT, &image);
    let (child, dir) = spawn(
        &emulator,
        r#"step("Verify rollout", || k8s::rollout_status("elson", "elson-backend", #{timeout: 30}));"#,
    );
    let polls = || {
        let requests = emulator.requests();
        requests
            .iter()
            .filter(|r| r["method"] == "GET" && r["path"] == DEPLOYMENT)
            .count()
    };
    wait_until("a first poll", || polls() >= 1);
    // The controller sees the new generation and starts replacing pods...
    let status = |updated: i64, replicas: i64| {
        json!({"status": {"observedGeneration": 3,
        "replicas": replicas, "updatedReplicas": updated, "readyReplicas": 3, "availableReplicas": 3}})
    };
    emulator.merge_patch(&format!("{DEPLOYMENT}/status"), &status(1, 4));
    let seen = polls();
    wait_until("a poll of the partial rollout", || polls() > seen);
    // ...and finishes.
    emulator.merge_patch(&format!("{DEPLOYMENT}/status"), &status(3, 3));
    let run = finish(child.wait_with_output().unwrap(), &dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("Verify rollout"), "passed");
    assert_eq!(
        run.output(),
        [
            "waiting: the controller has not yet seen generation 3 (it has seen 2)",
            "waiting: 1 of 3 new replicas have been updated",
        ]
    );
}

#[test]
fn rollout_status_fails_on_an_exceeded_deadline_but_not_on_a_stale_one() {
    let emulator = Emulator::start();
    let exceeded = json!({"status": {"conditions": [{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"elson-backend-7f\" has timed out progressing."}]}});
    emulator.merge_patch(&format!("{DEPLOYMENT}/status"), &exceeded);
    emulator.merge_patch(DEPLOYMENT, &json!({"spec": {"replicas": 4}}));
    // The condition is from before the change: the rollout is waited for, not failed.
    let stale = run(
        &emulator,
        r#"k8s::rollout_status("elson", "elson-backend", #{timeout: 2});"#,
        &[],
    );
    assert!(
        stale.stderr.contains(
            "did not finish rolling out within 2 s: the controller has not yet seen generation 3"
        ),
        "{}",
        stale.stderr
    );
    emulator.merge_patch(
        &format!("{DEPLOYMENT}/status"),
        &json!({"status": {"observedGeneration": 3}}),
    );
    let failed = run(
        &emulator,
        r#"k8s::rollout_status("elson", "elson-backend");"#,
        &[],
    );
    assert_eq!(failed.code, 2);
    assert!(failed.stderr.contains("Deployment elson/elson-backend exceeded its progress deadline: ReplicaSet \"elson-backend-7f\" has timed out progressing."), "{}", failed.stderr);
}

// ---------------------------------------------------------------------------------------
// Which cluster

#[test]
fn errors_name_the_context_and_the_api_server_that_failed() {
    let emulator = Emulator::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&emulator.kubeconfig).unwrap();
    let text = text.replace(&emulator.server(), &format!("http://127.0.0.1:{port}"));
    std::fs::write(&emulator.kubeconfig, text).unwrap();
    let run = run(
        &emulator,
        r#"check("Pods ready", || k8s::pods_ready("elson", "").ready > 0);"#,
        &[],
    );
    assert_eq!(run.code, 1);
    let message = run.of_type("step_end").next().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected =
        format!("no answer from the API server http://127.0.0.1:{port} (context `emulator`)");
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!run.stderr.contains("kube_client"), "{}", run.stderr);
}

#[test]
fn without_a_kubeconfig_or_a_cluster_the_error_says_where_it_looked() {
    let emulator = Emulator::start();
    std::fs::remove_file(&emulator.kubeconfig).unwrap();
    let run = run(&emulator, r#"k8s::pods("elson", "");"#, &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "k8s::pods on all pods in elson: no kubeconfig (KUBECONFIG or ~/.kube/config) and not running inside a cluster"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("caused by: failed to read kubeconfig"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_context_comes_from_the_environment_or_the_command_line() {
    let emulator = Emulator::start();
    let text = std::fs::read_to_string(&emulator.kubeconfig).unwrap();
    let broken = text
        .replace("current-context: emulator", "current-context: old-cluster")
        .replace(
            "contexts:\n",
            "contexts:\n- name: old-cluster\n  context:\n    cluster: old\n    user: emulator\n",
        )
        .replace(
            "clusters:\n",
            "clusters:\n- name: old\n  cluster:\n    server: http://127.0.0.1:9\n",
        );
    std::fs::write(&emulator.kubeconfig, broken).unwrap();
    std::fs::write(
        emulator.dir.path().join("runbook.toml"),
        "[environments.staging]\ncontext = \"emulator\"\n[environments.old]\n",
    )
    .unwrap();
    let script = r#"print(k8s::get("deploy", "elson", "elson-backend").metadata.name);"#;
    let staging = run(&emulator, script, &["--env", "staging"]);
    assert_eq!(staging.code, 0, "{}", staging.stderr);
    let current = run(&emulator, script, &["--env", "old"]);
    assert!(
        current
            .stderr
            .contains("API server http://127.0.0.1:9 (context `old-cluster`)"),
        "{}",
        current.stderr
    );
    let flag = run(
        &emulator,
        script,
        &["--env", "old", "--context", "emulator"],
    );
    assert_eq!(flag.code, 0, "{}", flag.stderr);
    let unknown = run(&emulator, script, &["--env", "old", "--context", "prod"]);
    assert!(
        unknown
            .stderr
            .contains("no context `prod` in the kubeconfig (known: old-cluster, emulator)"),
        "{}",
        unknown.stderr
    );
}

// ---------------------------------------------------------------------------------------
// The checklist's Infrastructure checks (stdlib/k8s.rhai)

const CHECKS: [(&str, &str); 9] = [
    (
        "CPU and memory limits for all containers",
        "container_resources",
    ),
    ("Namespace resource quotas", "quota_and_limits"),
    ("Horizontal Pod Autoscalers", "autoscalers"),
    ("Pod Disruption Budgets", "disruption_budgets"),
    ("Network policies", "network_policies"),
    ("Ingress rules and TLS", "ingress_tls"),
    ("ConfigMaps and Secrets defined", "config_references"),
    ("All pods running", "pods_healthy"),
    ("No latest images", "image_tags"),
];

fn check_script(function: &str) -> String {
    let title = CHECKS.iter().find(|(_, f)| *f == function).unwrap().0;
    format!(
        "import \"k8s\" as k8s_checks;\ncheck(\"{title}\", || k8s_checks::{function}(\"elson\"));\n"
    )
}

/// Runs one check, expecting it to fail with exactly these findings.
fn assert_findings(emulator: &Emulator, function: &str, expected: &[&str]) {
    let run = run(emulator, &check_script(function), &[]);
    let title = CHECKS.iter().find(|(_, f)| *f == function).unwrap().0;
    assert_eq!(run.code, 1, "{function}: {}", run.stderr);
    assert_eq!(run.findings(title), expected, "{function}");
}

#[test]
fn every_check_passes_on_the_healthy_namespace() {
    let emulator = Emulator::start();
    let mut script = String::from("import \"k8s\" as k8s_checks;\n");
    for (title, function) in CHECKS {
        script.push_str(&format!(
            "check(\"{title}\", || k8s_checks::{function}(\"elson\"));\n"
        ));
    }
    let run = run(&emulator, &script, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.transcript);
    for (title, _) in CHECKS {
        assert_eq!(run.status_of(title), "passed", "{title}");
    }
}

fn pod(name: &str, labels: Value, container: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "elson", "labels": labels},
        "spec": {"containers": [container]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

#[test]
fn container_resources_finds_a_container_without_limits() {
    let emulator = Emulator::start();
    let limits = json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}});
    emulator.load(&json!([pod(
        "debug-shell",
        json!({"app": "debug"}),
        json!({"name": "shell", "image": "busybox:1.37", "resources": limits})
    )]));
    assert_findings(
        &emulator,
        "container_resources",
        &["Pod elson/debug-shell container shell has no memory limits"],
    );
}

#[test]
fn quota_and_limits_finds_a_namespace_without_them() {
    let emulator = Emulator::start();
    emulator.delete("/api/v1/namespaces/elson/resourcequotas/elson-quota");
    emulator.delete("/api/v1/namespaces/elson/limitranges/elson-limits");
    assert_findings(
        &emulator,
        "quota_and_limits",
        &[
            "Namespace elson has no ResourceQuota",
            "Namespace elson has no LimitRange",
        ],
    );
}

#[test]
fn autoscalers_finds_a_single_replica_minimum_and_a_deployment_without_one() {
    let emulator = Emulator::start();
    let hpa = "/apis/autoscaling/v2/namespaces/elson/horizontalpodautoscalers/elson-backend";
    emulator.merge_patch(hpa, &json!({"spec": {"minReplicas": 1}}));
    emulator.load(&json!([{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "worker", "namespace": "elson"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "worker"}},
            "template": {"metadata": {"labels": {"app": "worker"}}, "spec": {"containers": [{"name": "worker", "image": "w:1"}]}}}}]));
    assert_findings(
        &emulator,
        "autoscalers",
        &[
            "HorizontalPodAutoscaler elson/elson-backend keeps only 1 replica of Deployment elson/elson-backend (at least 2 wanted)",
            "Deployment elson/worker has no HorizontalPodAutoscaler",
        ],
    );
}

#[test]
fn disruption_budgets_finds_a_budget_that_blocks_drains() {
    let emulator = Emulator::start();
    let pdb = "/apis/policy/v1/namespaces/elson/poddisruptionbudgets/elson-backend";
    emulator.merge_patch(pdb, &json!({"spec": {"maxUnavailable": 0}}));
    assert_findings(
        &emulator,
        "disruption_budgets",
        &[
            "PodDisruptionBudget elson/elson-backend blocks node drains for Deployment elson/elson-backend: maxUnavailable is 0",
        ],
    );
    emulator.delete(pdb);
    assert_findings(
        &emulator,
        "disruption_budgets",
        &["Deployment elson/elson-backend has no PodDisruptionBudget"],
    );
}

#[test]
fn network_policies_finds_no_default_deny_and_an_unselected_pod() {
    let emulator = Emulator::start();
    emulator.delete("/apis/networking.k8s.io/v1/namespaces/elson/networkpolicies/default-deny");
    let limits =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    emulator.load(&json!([pod(
        "cron-runner",
        json!({"app": "cron"}),
        json!({"name": "cron", "image": "c:1", "resources": limits})
    )]));
    assert_findings(
        &emulator,
        "network_policies",
        &[
            "Namespace elson has no default-deny NetworkPolicy",
            "Pod elson/cron-runner is selected by no NetworkPolicy that admits traffic",
        ],
    );
}

#[test]
fn ingress_tls_finds_a_host_without_tls_and_a_missing_secret() {
    let emulator = Emulator::start();
    emulator.delete("/api/v1/namespaces/elson/secrets/api-elson-example-com-tls");
    let ingress = "/apis/networking.k8s.io/v1/namespaces/elson/ingresses/elson-api";
    let mut rules = emulator.get(ingress)["spec"]["rules"].clone();
    let http = rules[0]["http"].clone();
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"host": "admin.elson.example.com", "http": http}));
    emulator.merge_patch(ingress, &json!({"spec": {"rules": rules}}));
    assert_findings(
        &emulator,
        "ingress_tls",
        &[
            "Ingress elson/elson-api uses Secret elson/api-elson-example-com-tls for api.elson.example.com, which does not exist",
            "Ingress elson/elson-api serves admin.elson.example.com without TLS",
        ],
    );
}

#[test]
fn config_references_finds_a_missing_configmap_and_secret_key() {
    let emulator = Emulator::start();
    emulator.delete("/api/v1/namespaces/elson/configmaps/backend-config");
    let data = json!({"data": {"SECRET_KEY": null}});
    emulator.merge_patch("/api/v1/namespaces/elson/secrets/backend-secrets", &data);
    let mut expected = Vec::new();
    for pod in ["4xkqz", "8rtwn", "z2v9m"] {
        let pod = format!("Pod elson/elson-backend-6d8f7c9b5d-{pod}");
        expected.push(format!(
            "{pod} uses ConfigMap elson/backend-config, which does not exist"
        ));
        expected.push(format!(
            "{pod} uses key SECRET_KEY of Secret elson/backend-secrets, which it does not have"
        ));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_findings(&emulator, "config_references", &expected);
}

#[test]
fn pods_healthy_finds_an_unready_pod_and_restarts() {
    let emulator = Emulator::start();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "backend", "ready": false, "restartCount": 7,
            "image": "registry.example.com/elson/backend:1.4.2", "imageID": ""}]}});
    emulator.merge_patch(
        &format!("/api/v1/namespaces/elson/pods/{POD}/status"),
        &status,
    );
    emulator.merge_patch(
        "/api/v1/namespaces/elson/pods/elson-backend-6d8f7c9b5d-8rtwn/status",
        &json!({"status": {"phase": "Pending"}}),
    );
    assert_findings(
        &emulator,
        "pods_healthy",
        &[
            &format!("Pod elson/{POD} is Running but not ready"),
            &format!("Pod elson/{POD} container backend restarted 7 times (fewer than 5 wanted)"),
            "Pod elson/elson-backend-6d8f7c9b5d-8rtwn is Pending, not Running",
        ],
    );
}

#[test]
fn image_tags_finds_latest_and_untagged_images() {
    let emulator = Emulator::start();
    let limits =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    emulator.load(&json!([
        pod("tools", json!({"app": "tools"}), json!({"name": "tools", "image": "registry.example.com:5000/ops/tools:latest", "resources": limits})),
        pod("shell", json!({"app": "shell"}), json!({"name": "shell", "image": "busybox", "resources": limits})),
        pod("pinned", json!({"app": "pinned"}), json!({"name": "pinned", "image": "busybox@sha256:0123", "resources": limits})),
    ]));
    assert_findings(
        &emulator,
        "image_tags",
        &[
            "Pod elson/shell container shell image busybox has no tag (so latest)",
            "Pod elson/tools container tools image registry.example.com:5000/ops/tools:latest is tagged latest",
        ],
    );
}
