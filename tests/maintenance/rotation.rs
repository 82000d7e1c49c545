//! Rotate API keys monthly, and the Secret Rotation guidelines checked on the way.

use super::*;

const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Plays the Deployment controller while `body` runs: once the runbook has looked at a
/// generation the controller has not observed, it is observed and reported fully rolled
/// out, as a healthy cluster would a moment later. The controller reads through a list, so
/// its own reads are not taken for the runbook's.
fn with_controller<T>(emulator: &Emulator, body: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    let list =
        "/apis/apps/v1/namespaces/elson/deployments?fieldSelector=metadata.name%3Delson-backend";
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let deployment = emulator.get(list)["items"][0].clone();
                let generation = deployment["metadata"]["generation"].as_i64();
                let behind = generation > deployment["status"]["observedGeneration"].as_i64();
                if behind && runbook_polled_since_last_change(emulator) {
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

/// Whether the Deployment was read after it was last changed.
fn runbook_polled_since_last_change(emulator: &Emulator) -> bool {
    let requests = emulator.requests();
    let on_deployment = |r: &Value, method: &str| r["method"] == method && r["path"] == DEPLOYMENT;
    let changed = requests
        .iter()
        .rposition(|r| on_deployment(r, "PATCH") || on_deployment(r, "PUT"));
    changed.is_some_and(|at| requests[at..].iter().any(|r| on_deployment(r, "GET")))
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

/// The servers a rotation touches, with the old keys in every store.
struct Rotation {
    emulator: Emulator,
    state: Arc<Mutex<vault::VaultState>>,
    vault: Receiver,
    moto: moto::Moto,
    slack: Receiver,
    ws: common::Workspace,
    tables: String,
    env: Vec<(&'static str, String)>,
}

impl Rotation {
    fn start() -> Self {
        let emulator = Emulator::start();
        let state = Arc::new(Mutex::new(vault::VaultState::new()));
        let old = json!({"SECRET_KEY": OLD_SECRET_KEY, "INTERNAL_API_KEY": OLD_INTERNAL_KEY,
            "DATABASE_URL": "postgres://kept@db/elson"});
        state
            .lock()
            .unwrap()
            .kv
            .insert("elson/backend".into(), vec![old]);
        let vault = vault::start_vault(state.clone());
        let moto = moto::Moto::start(ROTATION_SETUP, &[OLD_SECRET_KEY, OLD_INTERNAL_KEY]);
        let slack = slack();
        let tables = format!(
            "{}[aws]\nendpoint = \"{}\"\nregion = \"eu-west-1\"\n{ALERTS}",
            vault::vault_config(&vault),
            moto.url
        );
        let mut env = moto.env();
        env.extend([
            kube_env(&emulator),
            slack_env(&slack),
            ("VAULT_TOKEN", vault::TOKEN.into()),
        ]);
        let ws = workspace();
        configure(
            &ws,
            &rotation_settings("\"local/elson/market-data\""),
            &tables,
        );
        Self {
            emulator,
            state,
            vault,
            moto,
            slack,
            ws,
            tables,
            env,
        }
    }

    fn run(&self, args: &[&str]) -> Outcome {
        run(&self.ws, "rotate-api-keys", args, &self.env)
    }

    /// The version Vault holds now, as the runbook wrote it.
    fn vault_version(&self, version: usize) -> Value {
        self.state.lock().unwrap().kv["elson/backend"][version - 1].clone()
    }

    fn vault_writes(&self) -> Vec<Value> {
        let requests = self.vault.requests();
        requests
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.json())
            .collect()
    }

    /// A dry run reads everything and changes nothing.
    fn dry_run_changes_nothing(&self) {
        let secret_before = self.emulator.get(SECRET)["data"].clone();
        let dry = self.run(&["--dry-run"]);
        dry.expect(0, &all_passed(ROTATION_STEPS));
        let mutations = ["vault::write", "aws::put_secret", "k8s::create_secret"];
        for binding in mutations
            .iter()
            .chain(&["k8s::rollout_restart", "alert::notify"])
        {
            assert_eq!(dry.outcomes(binding), ["would_run"], "{binding}");
        }
        assert!(self.vault_writes().is_empty(), "nothing written to Vault");
        assert_eq!(self.state.lock().unwrap().kv["elson/backend"].len(), 1);
        let secret_after = self.emulator.get(SECRET)["data"].clone();
        assert_eq!(secret_after, secret_before, "the Secret is unchanged");
        assert_eq!(restarted_at(&self.emulator), Value::Null, "no restart");
        assert!(self.slack.requests().is_empty(), "no alert sent");
        let in_aws = self.moto.read("local/elson/backend");
        assert_eq!(json_field(&in_aws, "SECRET_KEY"), OLD_SECRET_KEY);
    }

    /// The real run: every store gets the same new values, then the backend restarts and
    /// the team hears of it.
    fn real_run_rotates_everywhere(&self) {
        let secret_before = self.emulator.get(SECRET)["data"].clone();
        let real = with_controller(&self.emulator, || self.run(&[]));
        real.expect(0, &all_passed(ROTATION_STEPS));
        let writes = self.vault_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(
            writes[0]["options"]["cas"], 1,
            "the write names the version it replaces"
        );
        let written = self.vault_version(2);
        let new_key = written["SECRET_KEY"].as_str().unwrap().to_owned();
        assert_eq!(new_key.len(), 48);
        assert!(new_key.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(written["INTERNAL_API_KEY"], OLD_INTERNAL_KEY);
        assert_eq!(
            written["DATABASE_URL"], "postgres://kept@db/elson",
            "unrotated keys kept"
        );

        let in_aws = self.moto.read("local/elson/backend");
        assert_eq!(json_field(&in_aws, "SECRET_KEY"), new_key);
        assert_eq!(
            json_field(&in_aws, "STRIPE_SECRET_KEY"),
            "canary-stripe-kept-3c1d"
        );
        let previous = self.moto.read_stage("local/elson/backend", "AWSPREVIOUS");
        assert_eq!(json_field(&previous, "SECRET_KEY"), OLD_SECRET_KEY);

        assert_eq!(secret_value(&self.emulator, "SECRET_KEY"), new_key);
        assert_eq!(
            secret_value(&self.emulator, "INTERNAL_API_KEY"),
            written["INTERNAL_API_KEY"]
        );
        let secret_after = self.emulator.get(SECRET)["data"].clone();
        assert_eq!(secret_after["DATABASE_URL"], secret_before["DATABASE_URL"]);
        assert!(restarted_at(&self.emulator).is_string(), "restarted");
        let waited = real
            .output()
            .iter()
            .any(|l| l.contains("has not yet seen generation 3"));
        assert!(
            waited,
            "the run waited for the restart: {:?}",
            real.output()
        );

        let texts = slack_texts(&self.slack);
        assert_eq!(texts.len(), 1, "{texts:?}");
        let told = "API keys rotated in local: SECRET_KEY, INTERNAL_API_KEY have new values";
        assert!(texts[0].contains(told), "{}", texts[0]);
        for (value, what) in [
            (new_key.as_str(), "the new key"),
            (OLD_SECRET_KEY, "the old key"),
        ] {
            real.assert_hidden(value, what);
            assert!(!texts[0].contains(value), "{what} in the alert");
        }
    }

    /// Another writer changes the Vault secret between the runbook's read and its write: the
    /// rotation stops before the Kubernetes Secret, the team is told, and an API key without
    /// automatic rotation is reported.
    fn a_concurrent_write_stops_the_rotation(&self) {
        let someone_else = json!({"SECRET_KEY": "canary-someone-else-9f2a"});
        self.state.lock().unwrap().concurrent_write = Some(someone_else);
        configure(
            &self.ws,
            &rotation_settings("\"local/elson/unrotated\""),
            &self.tables,
        );
        let restart = restarted_at(&self.emulator);
        let secret_before = self.emulator.get(SECRET)["data"].clone();
        let broken = self.run(&[]);
        let vault_step = "Write the new values to Vault with check-and-set";
        let api_keys = "Set up automatic rotation for API keys where supported";
        broken.expect(
            1,
            &[
                (
                    "Configure automatic rotation for database credentials",
                    "passed",
                ),
                (api_keys, "failed"),
                (vault_step, "failed"),
            ],
        );
        assert_eq!(
            broken.findings(api_keys),
            ["local/elson/unrotated: automatic rotation is not enabled"]
        );
        assert!(
            broken.found(vault_step, "check-and-set failed"),
            "{}",
            broken.message(vault_step)
        );
        let secret_step = "Update the Kubernetes Secret backend-secrets";
        assert!(
            broken.events.iter().all(|e| e["title"] != secret_step),
            "the run stopped"
        );
        let secret_after = self.emulator.get(SECRET)["data"].clone();
        assert_eq!(secret_after, secret_before, "the Secret was not touched");
        assert_eq!(restarted_at(&self.emulator), restart, "no second restart");
        let texts = slack_texts(&self.slack);
        assert_eq!(texts.len(), 2, "{texts:?}\n{}", broken.screen);
        let told = "The API key rotation in local did not pass";
        assert!(texts[1].contains(told), "{}", texts[1]);
    }
}

#[test]
fn rotate_api_keys_writes_every_store_with_check_and_set_and_restarts_the_backend() {
    let rotation = Rotation::start();
    rotation.dry_run_changes_nothing();
    rotation.real_run_rotates_everywhere();
    rotation.a_concurrent_write_stops_the_rotation();
}

fn json_field(text: &str, key: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    value[key].as_str().unwrap_or_default().to_owned()
}
