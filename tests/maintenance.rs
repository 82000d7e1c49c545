//! The shipped maintenance runbooks (runbooks/maintenance/) end to end through the binary, in
//! a dry run and for real, against servers each test starts: the Kubernetes API emulator,
//! PostgreSQL (the server at 127.0.0.1:5432 and a primary with a streaming replica of the
//! test's own), Redis Sentinel, a real Prometheus, moto for AWS Secrets Manager, the HTTPS
//! servers of the web tests, loopback receivers for alerts, and the Vault stand-in (no Vault
//! server can be installed here). Each test also breaks its setup and looks for the findings
//! an operator would be shown.

mod common;
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
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

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

/// Plays the Deployment controller while `body` runs: a generation it has not seen yet is
/// observed and reported fully rolled out, as a healthy cluster would a moment later.
fn with_controller<T>(emulator: &Emulator, body: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let deployment = emulator.get(DEPLOYMENT);
                let generation = deployment["metadata"]["generation"].as_i64();
                if generation > deployment["status"]["observedGeneration"].as_i64() {
                    let status = json!({"status": {"observedGeneration": generation,
                        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
                    emulator.merge_patch(&format!("{DEPLOYMENT}/status"), &status);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = body();
        stop.store(true, Ordering::SeqCst);
        result
    })
}

fn restarted_at(emulator: &Emulator) -> Value {
    emulator.get(DEPLOYMENT)["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT].clone()
}

/// A Kubernetes Secret's value, decoded.
fn secret_value(emulator: &Emulator, key: &str) -> String {
    let secret = emulator.get(SECRET);
    let encoded = secret["data"][key].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
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

// ---------------------------------------------------------------------------------------
// Rotate API keys monthly

const ROTATION_SETUP: &str = r#"
secret_key, internal_key = args
sm.create_secret(Name="local/elson/backend", SecretString=json.dumps({"SECRET_KEY": secret_key, "INTERNAL_API_KEY": internal_key, "STRIPE_SECRET_KEY": "canary-stripe-kept-3c1d"}))
sm.create_secret(Name="local/elson/database", SecretString=json.dumps({"password": "canary-db-password-5b1e"}))
sm.rotate_secret(SecretId="local/elson/database", RotationRules={"AutomaticallyAfterDays": 30})
sm.create_secret(Name="local/elson/market-data", SecretString="canary-market-data-key-77a")
sm.rotate_secret(SecretId="local/elson/market-data", RotationRules={"AutomaticallyAfterDays": 30})
sm.create_secret(Name="local/elson/unrotated", SecretString="canary-unrotated-key-31f0")
"#;

const OLD_SECRET_KEY: &str = "canary-old-secret-key-0123456789abcdef";
const OLD_INTERNAL_KEY: &str = "canary-old-internal-key-fedcba987654";

fn rotation_settings(api_key_secrets: &str) -> String {
    format!(
        "rotated_keys = [\"SECRET_KEY\", \"INTERNAL_API_KEY\"]\nrotated_key_length = 48\n\
         vault_secret_path = \"secret/elson/backend\"\naws_secret_id = \"local/elson/backend\"\n\
         backend_secret = \"backend-secrets\"\nrollout_timeout = 30\n\
         rotation_database_secrets = [\"local/elson/database\"]\n\
         rotation_api_key_secrets = [{api_key_secrets}]"
    )
}

const ROTATION_STEPS: &[&str] = &[
    "Generate new values for the rotated keys",
    "Write the new values to Vault with check-and-set",
    "Write the new values to AWS Secrets Manager",
    "Update the Kubernetes Secret backend-secrets",
    "Restart elson-backend so it reads the new keys",
    "Wait for elson-backend to roll out",
    "Notify the team",
    "Configure automatic rotation for database credentials",
    "Set up automatic rotation for API keys where supported",
];

fn all_passed(titles: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    titles.iter().map(|title| (*title, "passed")).collect()
}

#[test]
fn rotate_api_keys_writes_every_store_with_check_and_set_and_restarts_the_backend() {
    let emulator = Emulator::start();
    let state = Arc::new(Mutex::new(vault::VaultState::new()));
    state.lock().unwrap().kv.insert(
        "elson/backend".into(),
        vec![json!({"SECRET_KEY": OLD_SECRET_KEY, "INTERNAL_API_KEY": OLD_INTERNAL_KEY, "DATABASE_URL": "postgres://kept@db/elson"})],
    );
    let vault = vault::start_vault(state.clone());
    let moto = moto::Moto::start(ROTATION_SETUP, &[OLD_SECRET_KEY, OLD_INTERNAL_KEY]);
    let slack = slack();
    let ws = workspace();
    let tables = format!(
        "{}[aws]\nendpoint = \"{}\"\nregion = \"eu-west-1\"\n{ALERTS}",
        vault::vault_config(&vault),
        moto.url
    );
    configure(
        &ws,
        &rotation_settings("\"local/elson/market-data\""),
        &tables,
    );
    let mut env = moto.env();
    env.extend([
        kube_env(&emulator),
        slack_env(&slack),
        ("VAULT_TOKEN", vault::TOKEN.into()),
    ]);
    let secret_before = emulator.get(SECRET)["data"].clone();

    // A dry run reads everything and changes nothing.
    let dry = run(&ws, "rotate-api-keys", &["--dry-run"], &env);
    dry.expect(0, &all_passed(ROTATION_STEPS));
    for binding in [
        "vault::write",
        "aws::put_secret",
        "k8s::create_secret",
        "k8s::rollout_restart",
        "alert::notify",
    ] {
        assert_eq!(dry.outcomes(binding), ["would_run"], "{binding}");
    }
    assert!(
        vault.requests().iter().all(|r| r.method != "POST"),
        "nothing written to Vault"
    );
    assert_eq!(state.lock().unwrap().kv["elson/backend"].len(), 1);
    assert_eq!(
        emulator.get(SECRET)["data"],
        secret_before,
        "the Secret is unchanged"
    );
    assert_eq!(restarted_at(&emulator), Value::Null, "no restart");
    assert!(slack.requests().is_empty(), "no alert sent");
    assert_eq!(
        json_field(&moto.read("local/elson/backend"), "SECRET_KEY"),
        OLD_SECRET_KEY
    );

    // The real run: every store gets the same new values, then the backend restarts.
    let real = with_controller(&emulator, || run(&ws, "rotate-api-keys", &[], &env));
    real.expect(0, &all_passed(ROTATION_STEPS));
    let writes: Vec<Value> = vault
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json())
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0]["options"]["cas"], 1,
        "the write names the version it replaces"
    );
    let written = state.lock().unwrap().kv["elson/backend"][1].clone();
    let new_key = written["SECRET_KEY"].as_str().unwrap().to_owned();
    assert_eq!(new_key.len(), 48);
    assert!(new_key.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(written["INTERNAL_API_KEY"], OLD_INTERNAL_KEY);
    assert_eq!(
        written["DATABASE_URL"], "postgres://kept@db/elson",
        "keys not rotated are kept"
    );
    let in_aws = moto.read("local/elson/backend");
    assert_eq!(json_field(&in_aws, "SECRET_KEY"), new_key);
    assert_eq!(
        json_field(&in_aws, "STRIPE_SECRET_KEY"),
        "canary-stripe-kept-3c1d"
    );
    let previous = moto.read_stage("local/elson/backend", "AWSPREVIOUS");
    assert_eq!(json_field(&previous, "SECRET_KEY"), OLD_SECRET_KEY);
    assert_eq!(secret_value(&emulator, "SECRET_KEY"), new_key);
    assert_eq!(
        secret_value(&emulator, "INTERNAL_API_KEY"),
        written["INTERNAL_API_KEY"]
    );
    assert_eq!(
        emulator.get(SECRET)["data"]["DATABASE_URL"],
        secret_before["DATABASE_URL"]
    );
    assert!(restarted_at(&emulator).is_string(), "restarted");
    assert!(
        real.output()
            .iter()
            .any(|l| l.contains("the controller has not yet seen generation 3")),
        "the run waited for the restart: {:?}",
        real.output()
    );
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("API keys rotated in local: SECRET_KEY, INTERNAL_API_KEY"),
        "{}",
        texts[0]
    );
    for (value, what) in [
        (new_key.as_str(), "the new key"),
        (OLD_SECRET_KEY, "the old key"),
    ] {
        real.assert_hidden(value, what);
        assert!(!texts[0].contains(value), "{what} in the alert");
    }

    // Another writer changes the secret between the read and the write: the rotation stops
    // before the Kubernetes Secret, and the unrotated API key is reported.
    state.lock().unwrap().concurrent_write =
        Some(json!({"SECRET_KEY": "canary-someone-else-9f2a"}));
    configure(
        &ws,
        &rotation_settings("\"local/elson/unrotated\""),
        &tables,
    );
    let restart = restarted_at(&emulator);
    let secret_now = emulator.get(SECRET)["data"].clone();
    let broken = run(&ws, "rotate-api-keys", &[], &env);
    broken.expect(
        1,
        &[
            (
                "Configure automatic rotation for database credentials",
                "passed",
            ),
            (
                "Set up automatic rotation for API keys where supported",
                "failed",
            ),
            ("Write the new values to Vault with check-and-set", "failed"),
        ],
    );
    assert_eq!(
        broken.findings("Set up automatic rotation for API keys where supported"),
        ["local/elson/unrotated: automatic rotation is not enabled"]
    );
    assert!(broken.found(
        "Write the new values to Vault with check-and-set",
        "check-and-set"
    ));
    assert!(
        broken
            .events
            .iter()
            .all(|e| e["title"] != "Update the Kubernetes Secret backend-secrets")
    );
    assert_eq!(
        emulator.get(SECRET)["data"],
        secret_now,
        "the Secret was not touched"
    );
    assert_eq!(restarted_at(&emulator), restart, "no second restart");
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 2, "{texts:?}\n{}", broken.screen);
    assert!(
        texts[1].contains("The API key rotation in local did not pass"),
        "{}",
        texts[1]
    );
}

fn json_field(text: &str, key: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    value[key].as_str().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------
// Check database performance weekly

const PERFORMANCE_CHECKS: &[&str] = &[
    "The database answers quickly",
    "No slow queries recorded",
    "Critical queries run fast",
    "Connections stay below the server's limit",
    "The backend's connection pools fit the server's limit",
    "Replication lag is within limits",
];

/// A database like the application's: Alembic at head and a table with a few rows.
fn application_database(db: &postgres::PgDb) {
    db.sql(
        "create table alembic_version (version_num varchar(32) primary key);
         insert into alembic_version values ('3c9e1f2a7b4d');
         create table holdings (id serial primary key, user_id int not null, symbol text not null);
         insert into holdings (user_id, symbol) values (1, 'AAPL'), (1, 'MSFT'), (2, 'VTI');",
    );
}

#[test]
fn database_performance_passes_on_a_monitored_replicated_server_and_names_what_is_not() {
    let pair = postgres::PgPair::start();
    let db = postgres::PgDb::on(pair.primary, "perf");
    application_database(&db);
    db.sql("create extension pg_stat_statements");
    let ws = workspace();
    let settings = |max_ms: u32, pool: u32| {
        format!(
            "database_url = \"DATABASE_URL\"\nmax_db_latency_ms = 1000\nslow_query_ms = 5000\n\
             critical_queries = [{{ name = \"holdings of one user\", sql = \"select * from holdings where user_id = $1\", params = [1] }}, \
             {{ name = \"a slow report\", sql = \"select pg_sleep(0.2)\" }}]\n\
             critical_query_ms = {max_ms}\nmax_connection_usage = 0.8\ndb_pool_size = {pool}\n\
             max_instances = 3\nmax_replication_lag_seconds = 30\nmin_replicas = 1"
        )
    };
    configure(&ws, &settings(2000, 5), "");
    let env = [("DATABASE_URL", db.url())];

    // Everything here only reads: the dry run and the real run check the same things.
    for args in [&["--dry-run"][..], &[]] {
        let outcome = run(&ws, "database-performance", args, &env);
        outcome.expect(0, &all_passed(PERFORMANCE_CHECKS));
        assert!(outcome.outcomes("db::connect").iter().all(|o| o == "ok"));
    }

    // The local server records no statements and has no replica; the slow report is slow
    // and the pools are far too big for it.
    let local = postgres::PgDb::new("perfbroken");
    application_database(&local);
    configure(&ws, &settings(100, 1000), "");
    let broken = run(
        &ws,
        "database-performance",
        &[],
        &[("DATABASE_URL", local.url())],
    );
    broken.expect(
        1,
        &[
            ("The database answers quickly", "passed"),
            ("No slow queries recorded", "failed"),
            ("Critical queries run fast", "failed"),
            ("Connections stay below the server's limit", "passed"),
            (
                "The backend's connection pools fit the server's limit",
                "failed",
            ),
            ("Replication lag is within limits", "failed"),
        ],
    );
    assert!(broken.found("No slow queries recorded", "pg_stat_statements"));
    let slow = broken.findings("Critical queries run fast");
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(slow[0].starts_with("a slow report took 2"), "{slow:?}");
    assert!(broken.found(
        "The backend's connection pools fit the server's limit",
        "3 instances × pool of 1000 = 3000 connections"
    ));
    assert_eq!(
        broken.findings("Replication lag is within limits"),
        ["0 replicas streaming, expected at least 1"]
    );
}
