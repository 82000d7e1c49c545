//! Secret sources end to end through the binary: Vault KV v2 (against a loopback server that
//! speaks the parts of Vault's HTTP API the bindings use, since no Vault server can be
//! installed here), AWS Secrets Manager (moto's server, with signature checking on), the
//! configured lookup order, generated secrets, and a canary proving no secret reaches any
//! output.

mod loopback;
#[path = "support/moto.rs"]
mod moto;
#[path = "support/vault.rs"]
mod vault;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use loopback::{Receiver, Recorded, Reply, project, report, run};
use moto::Moto;
use serde_json::{Value, json};
use vault::{APP_KEY, TOKEN, VaultState, start_vault, vault_config};

fn assert_absent(haystack: &str, secret: &str, what: &str) {
    let forms = [
        secret.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    ];
    for form in forms {
        assert!(
            !haystack.contains(&form),
            "{what} leaked ({form}) into:\n{haystack}"
        );
    }
}

fn step_message(run: &loopback::Run, title: &str) -> String {
    run.events()
        .into_iter()
        .find(|e| e["type"] == "step_end" && e["title"] == title)
        .unwrap_or_else(|| panic!("no step `{title}` in\n{}", run.transcript))["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn vault_reads_writes_with_check_and_set_and_answers_integration_checks() {
    let state = Arc::new(Mutex::new(VaultState::new()));
    let vault = start_vault(state.clone());
    let dir = project(
        &vault_config(&vault),
        r#"
        let app = vault::read("secret/elson/app");
        check("read", || app.version == 1 && app.data.api_key.len() == 32 && app.data.user.len() == 9);
        check("by reference", || secret("vault:secret/elson/app#api_key").len() == 32);
        check("a key is needed when there are several", || {
            try { secret("vault:secret/elson/app"); false } catch (e) { e.contains("holds 2 keys (api_key, user)") }
        });
        let fresh = secrets::generate(40);
        let written = step("rotate the API key", || vault::write("secret/elson/app", #{api_key: fresh, rotated_by: "runbook"}));
        check("new version", || written.version == 2 && vault::read("secret/elson/app").version == 2);
        check("old version still readable", || vault::read("secret/elson/app", #{version: 1}).data.api_key.len() == 32);
        check("token lasts", || vault::token_ttl() == 3500);
        check("token policies", || vault::token_info().policies.contains("elson-backend"));
        check("policies", || vault::policies().contains("elson-backend"));
        check("policy text", || vault::policy("elson-backend").contains("secret/data/elson/*"));
        check("kubernetes auth enabled", || vault::auth_methods()["kubernetes/"]["type"] == "kubernetes");
        check("unsealed", || !vault::health().sealed);
        check("missing secret", || { try { vault::read("secret/elson/none"); false } catch (e) { e.contains("no secret at this path") } });
        "#,
    );
    let result = run(dir.path(), "test.rhai", &[], &[("VAULT_TOKEN", TOKEN)]);
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);

    let writes: Vec<Recorded> = vault
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0].json()["options"]["cas"],
        1,
        "the write sends the version it replaces"
    );
    let state = state.lock().unwrap();
    let written = state.kv["elson/app"][1]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(written.len(), 40);
    assert!(written.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(state.kv["elson/app"][1]["rotated_by"], "runbook");
    let everything = result.everything();
    assert_absent(&everything, APP_KEY, "the Vault value");
    assert_absent(&everything, &written, "the generated value");
    assert_absent(&everything, TOKEN, "the Vault token");
    assert!(result.transcript.contains("\"name\":\"vault::write\""));
}

#[test]
fn a_stale_check_and_set_write_fails_instead_of_overwriting() {
    let state = Arc::new(Mutex::new(VaultState::new()));
    let vault = start_vault(state.clone());
    let dir = project(
        &vault_config(&vault),
        r#"
        let before = vault::read("secret/elson/app");
        step("another writer", || vault::write("secret/elson/app", #{api_key: "value-of-the-other-writer"}));
        step("stale write", || vault::write("secret/elson/app", #{api_key: "value-of-the-stale-writer"}, #{cas: before.version}));
        "#,
    );
    let result = run(dir.path(), "test.rhai", &[], &[("VAULT_TOKEN", TOKEN)]);
    assert_eq!(result.code, 1, "{}", result.transcript);
    let message = step_message(&result, "stale write");
    assert!(
        message.contains("vault::write on secret/elson/app: check-and-set failed"),
        "{message}"
    );
    let state = state.lock().unwrap();
    assert_eq!(state.kv["elson/app"].len(), 2);
    assert_eq!(
        state.kv["elson/app"][1]["api_key"],
        "value-of-the-other-writer"
    );
}

#[test]
fn kubernetes_auth_logs_in_once_and_again_when_the_token_expires() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.canary-service-account-jwt.c2lnbmF0dXJl";
    let issued = "hvs.canary-issued-by-kubernetes-login-77c1";
    let runbook = r#"
        check("read", || secret("vault:secret/elson/app#api_key").len() == 32);
        check("ttl", || vault::token_ttl() > 0);
        check("policies", || vault::policies().len() == 3);
        "#;
    for expires in [false, true] {
        let state = Arc::new(Mutex::new(VaultState::new()));
        {
            let mut state = state.lock().unwrap();
            state.tokens.clear();
            state.jwt = jwt.into();
            state.role = "elson-backend".into();
            state.issued = issued.into();
            state.first_login_expires = expires;
        }
        let vault = start_vault(state.clone());
        let config = format!(
            "{}[vault.kubernetes]\nrole = \"elson-backend\"\ntoken_file = \"sa-token\"\n",
            vault_config(&vault)
        );
        let dir = project(&config, runbook);
        std::fs::write(dir.path().join("sa-token"), format!("{jwt}\n")).unwrap();
        let result = run(dir.path(), "test.rhai", &[], &[]);
        assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
        let logins = state.lock().unwrap().logins;
        assert_eq!(logins, if expires { 2 } else { 1 }, "expired: {expires}");
        let authenticated: Vec<Recorded> = vault
            .requests()
            .into_iter()
            .filter(|r| r.path != "/v1/auth/kubernetes/login")
            .collect();
        assert_eq!(authenticated.len(), if expires { 4 } else { 3 });
        let last = format!("{issued}-{logins}");
        assert_eq!(
            authenticated.last().unwrap().header("x-vault-token"),
            Some(last.as_str())
        );
        let everything = result.everything();
        assert_absent(&everything, jwt, "the service-account token");
        assert_absent(&everything, issued, "the issued Vault token");
    }
}

#[test]
fn a_wrong_kubernetes_role_is_reported_without_the_token() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.canary-refused-jwt.c2lnbmF0dXJl";
    let state = Arc::new(Mutex::new(VaultState::new()));
    {
        let mut state = state.lock().unwrap();
        state.jwt = "some-other-jwt".into();
        state.role = "elson-backend".into();
    }
    let vault = start_vault(state);
    let config = format!(
        "{}[vault.kubernetes]\nrole = \"wrong-role\"\ntoken_file = \"sa-token\"\n",
        vault_config(&vault)
    );
    let dir = project(&config, "check(\"ttl\", || vault::token_ttl() > 0);");
    std::fs::write(dir.path().join("sa-token"), jwt).unwrap();
    let result = run(dir.path(), "test.rhai", &[], &[]);
    assert_eq!(result.code, 1);
    let message = step_message(&result, "ttl");
    assert!(
        message.contains("Kubernetes login as role `wrong-role` failed: Vault answered 403 Forbidden: permission denied"),
        "{message}"
    );
    assert_absent(&result.everything(), jwt, "the service-account token");
}

#[test]
fn secret_requests_do_not_follow_a_redirect_to_another_host() {
    let elsewhere = Receiver::start_on("127.0.0.2", |_, _| Reply::json(200, json!({})));
    let state = Arc::new(Mutex::new(VaultState::new()));
    state.lock().unwrap().moved_to = Some(elsewhere.url());
    let vault = start_vault(state);
    let dir = project(
        &vault_config(&vault),
        "check(\"moved\", || vault::read(\"secret/moved/app\").version > 0);",
    );
    let result = run(dir.path(), "test.rhai", &[], &[("VAULT_TOKEN", TOKEN)]);
    assert_eq!(result.code, 1);
    let message = step_message(&result, "moved");
    assert!(
        message.contains("refused a redirect to another host (127.0.0.2)"),
        "{message}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the token went to the other host"
    );
}

#[test]
fn plain_http_to_vault_off_loopback_is_refused_before_sending() {
    let dir = project(
        "[vault]\naddress = \"http://vault.example.invalid:8200\"\n",
        "check(\"read\", || secret(\"vault:secret/elson/app#api_key\").len() > 0);",
    );
    let result = run(dir.path(), "test.rhai", &[], &[("VAULT_TOKEN", TOKEN)]);
    assert_eq!(result.code, 1);
    let message = step_message(&result, "read");
    assert!(
        message.contains("plain HTTP to vault.example.invalid: secrets are sent over HTTPS only"),
        "{message}"
    );
    assert_absent(&result.everything(), TOKEN, "the Vault token");
}

#[test]
fn bare_names_follow_the_configured_source_order() {
    let state = Arc::new(Mutex::new(VaultState::new()));
    let vault = start_vault(state);
    let config = format!(
        "[secrets]\nsources = [\"env\", \"vault:secret/elson/app\"]\n{}",
        vault_config(&vault)
    );
    let runbook = format!(
        r#"
        let from_vault = secret("api_key");
        let from_env = secret("user");
        check("api_key comes from Vault", || shell::run(["test", from_vault, "=", "{APP_KEY}"], #{{effect: "read"}}).code == 0);
        check("user comes from the environment first", || shell::run(["test", from_env, "=", "env-user-wins"], #{{effect: "read"}}).code == 0);
        check("a missing name lists where it looked", || {{
            try {{ secret("nothing_here"); false }} catch (e) {{ e.contains("looked in: env var nothing_here, vault secret/elson/app#nothing_here") }}
        }});
        "#
    );
    let dir = project(&config, &runbook);
    let result = run(
        dir.path(),
        "test.rhai",
        &[],
        &[("VAULT_TOKEN", TOKEN), ("user", "env-user-wins")],
    );
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    assert_absent(&result.everything(), APP_KEY, "the Vault value");
}

#[test]
fn generated_secrets_have_the_asked_length_and_alphabet() {
    let dir = project(
        "",
        r#"
        let hex = secrets::generate(32, #{alphabet: "hex"});
        check("hex", || shell::run(["sh", "-c", "printf %s \"$S\" | grep -Eqx '[0-9a-f]{32}'"], #{env: #{S: hex}, effect: "read"}).code == 0);
        let custom = secrets::generate(64, #{alphabet: "xyz"});
        check("custom", || shell::run(["sh", "-c", "printf %s \"$S\" | grep -Eqx '[xyz]{64}'"], #{env: #{S: custom}, effect: "read"}).code == 0);
        check("two draws differ", || {
            let a = secrets::generate(24);
            let b = secrets::generate(24);
            shell::run(["test", a, "!=", b], #{effect: "read"}).code == 0
        });
        check("too short", || { try { secrets::generate(4); false } catch (e) { e.contains("out of range (8 to 4096)") } });
        check("a secret cannot be printed", || { try { print(hex); false } catch (e) { e.contains("cannot be") } });
        "#,
    );
    let result = run(dir.path(), "test.rhai", &[], &[]);
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
}

/// moto with the secrets these tests read: a JSON one, a plain one and one with rotation on.
fn start_moto() -> Moto {
    Moto::start(MOTO_SETUP, &[AWS_PASSWORD, AWS_TOKEN_VALUE])
}

const AWS_PASSWORD: &str = "canary-aws-password-51c7e2";
const AWS_TOKEN_VALUE: &str = "canary-aws-whole-token-0f3e9d8c7";

/// The secrets these tests read (`sm` is the Secrets Manager client, `args` the values).
const MOTO_SETUP: &str = r#"
password, token = args
sm.create_secret(Name="prod/elson/app", SecretString=json.dumps({"password": password, "user": "elson"}))
sm.create_secret(Name="prod/elson/token", SecretString=token)
sm.create_secret(Name="prod/elson/rotated", SecretString="initial-rotated-value")
sm.rotate_secret(SecretId="prod/elson/rotated", RotationRules={"AutomaticallyAfterDays": 30})
"#;

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn secrets_manager_get_put_and_rotation_against_moto() {
    let moto = start_moto();
    let config = format!(
        "[secrets]\nsources = [\"env\", \"aws:prod/elson/app\"]\n[aws]\nendpoint = \"{}\"\n",
        moto.url
    );
    let dir = project(
        &config,
        r#"
        let app = aws::get_secret("prod/elson/app");
        check("a bare name from the aws source", || secret("password").len() == 26);
        check("fields", || app.fields.password.len() == 26 && app.version_stages.contains("AWSCURRENT"));
        check("a field by reference", || secret("aws:prod/elson/app#password").len() == 26);
        check("a whole secret by reference", || secret("aws:prod/elson/token").len() == 32);
        let before = aws::get_secret("prod/elson/token").version_id;
        let put = step("put a new version", || aws::put_secret("prod/elson/token", secrets::generate(48)));
        check("new current version", || put.version_id != before && aws::get_secret("prod/elson/token").value.len() == 48);
        check("previous version kept", || aws::get_secret("prod/elson/token", #{version_stage: "AWSPREVIOUS"}).value.len() == 32);
        let rotation = aws::describe_rotation("prod/elson/rotated");
        check("rotation", || rotation.rotation_enabled && rotation.rotation_rules.automatically_after_days == 30 && rotation.days_since_rotation == 0);
        check("never rotated", || aws::describe_rotation("prod/elson/app").days_since_rotation == ());
        check("missing", || { try { aws::get_secret("prod/elson/none"); false } catch (e) { e.contains("no such secret") } });
        "#,
    );
    let env = moto.env();
    let result = run(dir.path(), "test.rhai", &[], &borrowed(&env));
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);

    let stored = moto.read("prod/elson/token");
    assert_eq!(
        stored.len(),
        48,
        "the new version is current in Secrets Manager"
    );
    let everything = result.everything();
    for (value, what) in [
        (AWS_PASSWORD, "the password field"),
        (AWS_TOKEN_VALUE, "the whole secret"),
        (stored.as_str(), "the new version"),
        (moto.secret_key.as_str(), "the secret access key"),
    ] {
        assert_absent(&everything, value, what);
    }
}

#[test]
fn a_bad_signature_is_refused_and_the_key_not_shown() {
    let moto = start_moto();
    let config = format!("[aws]\nendpoint = \"{}\"\n", moto.url);
    let dir = project(
        &config,
        "check(\"read\", || aws::get_secret(\"prod/elson/app\").value.len() > 0);",
    );
    let wrong = "canary-wrong-secret-access-key-6b2d";
    let env = [
        ("AWS_ACCESS_KEY_ID", moto.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", wrong),
        ("AWS_REGION", "eu-west-1"),
    ];
    let result = run(dir.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 1);
    let message = step_message(&result, "read");
    assert!(
        message.contains("aws::get_secret on prod/elson/app: Secrets Manager answered 403 Forbidden: SignatureDoesNotMatch"),
        "{message}"
    );
    assert_absent(&result.everything(), wrong, "the secret access key");
}

/// Every kind of secret the bindings handle, pushed through every output there is.
#[test]
fn no_secret_value_reaches_any_output() {
    let state = Arc::new(Mutex::new(VaultState::new()));
    let vault = start_vault(state.clone());
    let slack = Receiver::start(|_, _| Reply::new(200, "ok"));
    let pagerduty = Receiver::start(|request, _| {
        Reply::json(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": request.json()["dedup_key"]}),
        )
    });
    let moto = start_moto();
    let closed = loopback::free_port();
    let canaries = Canaries {
        env: "canary-env-value-0a9b8c7d6e".into(),
        slack_path: "canary-slack-path-77aa19".into(),
        routing_key: "canary-pd-routing-key-4e5f6a7b".into(),
        dead_path: "canary-dead-hook-path-9911".into(),
    };
    let config = format!(
        r#"
        [vault]
        address = "{vault}"
        [aws]
        endpoint = "{moto}"
        [alert]
        retries = 1
        retry_delay = 0.05
        [alert.routes]
        team = ["slack"]
        oncall = ["pagerduty"]
        [alert.slack]
        webhook = "env:SLACK_WEBHOOK_URL"
        [alert.pagerduty]
        routing_key = "env:PAGERDUTY_ROUTING_KEY"
        url = "{pagerduty}/v2/enqueue"
        "#,
        vault = vault.url(),
        moto = moto.url,
        pagerduty = pagerduty.url(),
    );
    let dir = project(&config, CANARY_RUNBOOK);
    let slack_url = format!(
        "{}/services/T0CANARY/B0CANARY/{}",
        slack.url(),
        canaries.slack_path
    );
    let dead_url = format!("http://127.0.0.1:{closed}/hooks/{}", canaries.dead_path);
    let mut env = moto.env();
    env.extend([
        ("VAULT_TOKEN", TOKEN.to_owned()),
        ("CANARY_ENV", canaries.env.clone()),
        ("SLACK_WEBHOOK_URL", slack_url),
        ("PAGERDUTY_ROUTING_KEY", canaries.routing_key.clone()),
        ("DEAD_HOOK", dead_url),
    ]);

    let verbose = run(dir.path(), "test.rhai", &["-vv"], &borrowed(&env));
    let mut traced_env = env.clone();
    traced_env.push(("RUST_LOG", "trace".into()));
    let traced = run(dir.path(), "test.rhai", &["-v"], &borrowed(&traced_env));

    let generated: Vec<String> = state.lock().unwrap().kv["elson/app"][1..]
        .iter()
        .map(|v| v["api_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(generated.len(), 2, "each run wrote a generated value");
    let mut secrets = canaries.all();
    secrets.extend([
        APP_KEY.to_owned(),
        TOKEN.to_owned(),
        AWS_PASSWORD.to_owned(),
        moto.secret_key.clone(),
    ]);
    secrets.extend(generated);

    let mut outputs = String::new();
    for result in [&verbose, &traced] {
        assert_eq!(
            result.code, 1,
            "the failing steps fail the run:\n{}",
            result.stderr
        );
        assert!(result.stdout.contains("program said") || result.stderr.contains("program said"));
        outputs.push_str(&result.everything());
        let transcript = result.run_dir.join("transcript.jsonl");
        for format in ["markdown", "json", "junit"] {
            outputs.push_str(&report(&transcript, format));
        }
    }
    assert!(
        traced.stderr.contains("TRACE"),
        "RUST_LOG=trace shows trace logs"
    );
    assert!(
        outputs.contains("boom ***"),
        "the error text is there, masked"
    );
    let sent: Vec<Recorded> = slack.requests();
    assert_eq!(sent.len(), 2);
    for request in &sent {
        let text = request.json()["text"]
            .as_str()
            .unwrap_or("")
            .trim_end()
            .to_owned();
        assert_eq!(text, "program said: *** *** ***");
        outputs.push_str(&request.body);
    }
    for request in pagerduty.requests() {
        let mut body = request.json();
        assert_eq!(body["routing_key"], canaries.routing_key.as_str());
        body["routing_key"] = Value::Null;
        assert_eq!(body["payload"]["custom_details"]["seen"], "***");
        outputs.push_str(&body.to_string());
    }
    for secret in &secrets {
        assert_absent(&outputs, secret, "a canary secret");
    }
}

struct Canaries {
    env: String,
    slack_path: String,
    routing_key: String,
    dead_path: String,
}

impl Canaries {
    fn all(&self) -> Vec<String> {
        vec![
            self.env.clone(),
            self.slack_path.clone(),
            self.routing_key.clone(),
            self.dead_path.clone(),
        ]
    }
}

const CANARY_RUNBOOK: &str = r#"
let env_secret = secret("CANARY_ENV");
let vault_value = secret("vault:secret/elson/app#api_key");
let aws_value = secret("aws:prod/elson/app#password");
step("write a generated value", || vault::write("secret/elson/app", #{api_key: secrets::generate(40)}));
step("secrets come back through a program's output", || {
    let out = shell::run(["printf", "%s %s %s", env_secret, vault_value, aws_value], #{effect: "read"}).stdout;
    print(`program said: ${out}`);
    debug(out);
    alert::notify("team", `program said: ${out}`);
    out
});
step("page with details", || alert::notify("oncall", "canary page", #{details: #{seen: vault_value}}));
step("a webhook nobody answers", #{"continue": true}, || alert::webhook(secret("DEAD_HOOK"), #{x: 1}));
step("an error carrying a secret", #{"continue": true}, || {
    let out = shell::run(["printf", "%s", vault_value], #{effect: "read"}).stdout;
    throw `boom ${out}`;
});
check("token lasts", || vault::token_ttl() > 0);
"#;
