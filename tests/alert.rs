//! Alerting end to end through the binary: routes from runbook.toml to Slack, PagerDuty and
//! webhook receivers on loopback that check each service's payload format, and to a real
//! SMTP server (aiosmtpd from the test venv) that stores what it receives; dry runs, retries
//! with a stable dedup key, permanent failures, `alert::test` and the refusals of unsafe
//! settings.

mod loopback;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopback::{Background, Receiver, Recorded, Reply, project, run, venv_bin};
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";
const SMTP_USER: &str = "runbook";
const SMTP_PASSWORD: &str = "smtp-password-for-the-relay";

/// A Slack incoming webhook: JSON with a `text` string, answered `ok` like Slack does.
fn slack_receiver() -> Receiver {
    Receiver::start(|request, _| {
        let body = request.json();
        let json = request.header("content-type") == Some("application/json");
        match body["text"].as_str() {
            Some(text) if json && !text.is_empty() => Reply::new(200, "ok"),
            _ => Reply::new(400, "invalid_payload"),
        }
    })
}

/// PagerDuty's Events API v2 checks: 202 with the dedup key for a valid event, 400 with the
/// reasons otherwise.
fn pagerduty_answer(request: &Recorded) -> Reply {
    let event = request.json();
    let mut errors = Vec::new();
    if event["routing_key"] != ROUTING_KEY {
        errors.push("routing_key is invalid");
    }
    let action = event["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("event_action is invalid");
    }
    let key = event["dedup_key"].as_str().unwrap_or("");
    if key.is_empty() || key.len() > 255 {
        errors.push("dedup_key is invalid");
    }
    if action == "trigger" {
        let payload = &event["payload"];
        if payload["summary"]
            .as_str()
            .is_none_or(|s| s.is_empty() || s.len() > 1024)
        {
            errors.push("payload.summary is missing or too long");
        }
        if payload["source"].as_str().is_none_or(str::is_empty) {
            errors.push("payload.source is missing");
        }
        let severity = payload["severity"].as_str().unwrap_or("");
        if !["critical", "error", "warning", "info"].contains(&severity) {
            errors.push("payload.severity is invalid");
        }
    }
    if !errors.is_empty() {
        return Reply::json(
            400,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        );
    }
    Reply::json(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": key}),
    )
}

fn pagerduty_receiver() -> Receiver {
    Receiver::start(|request, _| pagerduty_answer(request))
}

/// aiosmtpd storing each message as JSON in a folder; optionally with STARTTLS and AUTH
/// required.
struct Smtp {
    port: u16,
    dir: tempfile::TempDir,
    _server: Background,
}

const SMTP_SERVER: &str = r#"
import json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, out, user, password, cert, key = sys.argv[1:7]
count = 0
class Store:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        name = os.path.join(out, "%06d.json" % count)
        record = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
                  "data": envelope.content.decode("utf-8", "replace"),
                  "tls": session.ssl is not None, "authenticated": bool(session.authenticated)}
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 Message accepted"
def check(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False)
tls = None
if cert:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
options = dict(hostname="127.0.0.1", port=int(port), tls_context=tls, require_starttls=bool(cert))
if user:
    options.update(authenticator=check, auth_required=True, auth_require_tls=bool(cert))
controller = Controller(Store(), **options)
controller.start()
sys.stdin.read()
"#;

impl Smtp {
    fn start(auth: bool, tls: Option<(&std::path::Path, &std::path::Path)>) -> Self {
        let port = loopback::free_port();
        let dir = tempfile::tempdir().unwrap();
        let (user, password) = if auth {
            (SMTP_USER, SMTP_PASSWORD)
        } else {
            ("", "")
        };
        let (cert, key) = tls.map_or((String::new(), String::new()), |(c, k)| {
            (c.display().to_string(), k.display().to_string())
        });
        let mut child = Command::new(venv_bin("python"))
            .args(["-c", SMTP_SERVER, &port.to_string()])
            .arg(dir.path())
            .args([user, password, &cert, &key])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loopback::wait_for_port(port, &mut child, "aiosmtpd");
        Self {
            port,
            dir,
            _server: Background(child),
        }
    }

    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

struct Receivers {
    slack: Receiver,
    pagerduty: Receiver,
    hook: Receiver,
    smtp: Smtp,
}

impl Receivers {
    fn start() -> Self {
        Self {
            slack: slack_receiver(),
            pagerduty: pagerduty_receiver(),
            hook: Receiver::start(|_, _| Reply::new(204, "")),
            smtp: Smtp::start(true, None),
        }
    }

    fn config(&self) -> String {
        format!(
            r#"
            [alert]
            retry_delay = 0.05
            [alert.routes]
            team = ["slack", "email", "ops-hook"]
            oncall = ["pagerduty"]
            all = ["slack", "pagerduty", "email"]
            [alert.slack]
            webhook = "env:SLACK_WEBHOOK_URL"
            username = "runbook"
            [alert.pagerduty]
            routing_key = "env:PAGERDUTY_ROUTING_KEY"
            url = "{pagerduty}/v2/enqueue"
            source = "elson-backend"
            [alert.email]
            host = "127.0.0.1"
            port = {smtp}
            from = "runbook@example.com"
            to = ["ops@example.com", "oncall@example.com"]
            username = "{SMTP_USER}"
            password = "env:SMTP_PASSWORD"
            [alert.ops-hook]
            type = "webhook"
            url = "env:OPS_HOOK_URL"
            "#,
            pagerduty = self.pagerduty.url(),
            smtp = self.smtp.port,
        )
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "SLACK_WEBHOOK_URL",
                format!(
                    "{}/services/T0001/B0001/slackwebhooktoken",
                    self.slack.url()
                ),
            ),
            ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY.to_owned()),
            ("SMTP_PASSWORD", SMTP_PASSWORD.to_owned()),
            (
                "OPS_HOOK_URL",
                format!("{}/hooks/deploys-0123456789", self.hook.url()),
            ),
        ]
    }
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
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
fn routes_deliver_to_slack_pagerduty_email_and_a_webhook() {
    let receivers = Receivers::start();
    let dir = project(
        &receivers.config(),
        r#"
        let team = step("tell the team", || alert::notify("team", "Deploy of v1.4.2 finished", #{title: "Deploy finished", severity: "info"}));
        check("every team channel", || team.ok && team.channels.len() == 3 && team.channels.all(|c| c.ok && c.attempts == 1));
        let page = step("page on-call", || alert::notify("oncall", "Error rate above 1%", #{severity: "critical", details: #{rate: 0.013}}));
        check("paged", || page.ok && page.channels[0].dedup_key == page.dedup_key);
        "#,
    );
    let env = receivers.env();
    let result = run(dir.path(), "test.rhai", &[], &borrowed(&env));
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);

    let slack = receivers.slack.requests();
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].path, "/services/T0001/B0001/slackwebhooktoken");
    assert_eq!(
        slack[0].json(),
        json!({"text": "[info] *Deploy finished*\nDeploy of v1.4.2 finished", "username": "runbook"})
    );

    let pages = receivers.pagerduty.requests();
    assert_eq!(pages.len(), 1);
    let event = pages[0].json();
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["payload"]["summary"], "Error rate above 1%");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "elson-backend");
    assert_eq!(event["payload"]["custom_details"]["rate"], 0.013);

    let hook = receivers.hook.requests();
    assert_eq!(hook.len(), 1);
    let body = hook[0].json();
    assert_eq!(body["route"], "team");
    assert_eq!(body["message"], "Deploy of v1.4.2 finished");
    assert_eq!(
        hook[0].header("idempotency-key"),
        body["dedup_key"].as_str()
    );

    let mail = receivers.smtp.messages();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["authenticated"], true);
    assert_eq!(
        mail[0]["to"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    let data = mail[0]["data"].as_str().unwrap();
    assert!(data.contains("Subject: [info] Deploy finished"), "{data}");
    assert!(data.contains("Deploy of v1.4.2 finished"), "{data}");
    let key = body["dedup_key"].as_str().unwrap();
    assert!(
        data.contains(&format!("X-Runbook-Dedup-Key: {key}")),
        "{data}"
    );

    let ends = result.binding_ends("alert::notify");
    assert_eq!(ends.len(), 4);
    assert!(ends.iter().all(|e| e["outcome"] == "ok"), "{ends:?}");
    for secret in [
        ROUTING_KEY,
        SMTP_PASSWORD,
        "slackwebhooktoken",
        "deploys-0123456789",
    ] {
        assert!(!result.everything().contains(secret), "{secret} leaked");
    }
}

#[test]
fn pagerduty_trigger_acknowledge_and_resolve_share_the_dedup_key() {
    let receivers = Receivers::start();
    let dir = project(
        &receivers.config(),
        r#"
        let key = secret("PAGERDUTY_ROUTING_KEY");
        let page = step("trigger", || alert::pagerduty(key, #{summary: "Rollback started", severity: "critical", source: "elson-backend", component: "api"}));
        step("acknowledge", || alert::pagerduty(key, #{action: "acknowledge", dedup_key: page.dedup_key}));
        step("resolve", || alert::pagerduty(key, #{action: "resolve", dedup_key: page.dedup_key}));
        check("a bad severity is refused before sending", || {
            try { alert::pagerduty(key, #{summary: "x", severity: "fatal"}); false } catch (e) { e.contains("unknown severity `fatal`") }
        });
        check("resolving needs the incident's key", || {
            try { alert::pagerduty(key, #{action: "resolve"}); false } catch (e) { e.contains("needs the `dedup_key`") }
        });
        "#,
    );
    let env = receivers.env();
    let result = run(dir.path(), "test.rhai", &[], &borrowed(&env));
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    let events: Vec<Value> = receivers
        .pagerduty
        .requests()
        .iter()
        .map(Recorded::json)
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
    let key = &events[0]["dedup_key"];
    assert!(key.as_str().unwrap().starts_with("runbook-"));
    assert!(events.iter().all(|e| &e["dedup_key"] == key));
    assert_eq!(events[0]["payload"]["component"], "api");
    assert!(
        events[1].get("payload").is_none(),
        "acknowledge carries no payload"
    );
}

#[test]
fn a_dry_run_records_the_alerts_and_sends_nothing() {
    let receivers = Receivers::start();
    let dir = project(
        &receivers.config(),
        r#"
        let team = step("tell the team", || alert::notify("team", "Deploy finished"));
        check("planned", || team.ok && team.channels.all(|c| c.planned && c.ok));
        step("page", || alert::notify("oncall", "Error rate above 1%"));
        step("direct", || alert::slack(secret("SLACK_WEBHOOK_URL"), "hello"));
        step("mail", || alert::email(#{to: "ops@example.com", subject: "Backup verified", body: "ok"}));
        "#,
    );
    let env = receivers.env();
    let result = run(dir.path(), "test.rhai", &["--dry-run"], &borrowed(&env));
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    assert!(receivers.slack.requests().is_empty());
    assert!(receivers.pagerduty.requests().is_empty());
    assert!(receivers.hook.requests().is_empty());
    assert!(receivers.smtp.messages().is_empty());
    let notified = result.binding_ends("alert::notify");
    assert_eq!(notified.len(), 4);
    assert!(notified.iter().all(|e| e["outcome"] == "would_run"));
    assert_eq!(
        result.binding_ends("alert::slack")[0]["outcome"],
        "would_run"
    );
    assert_eq!(
        result.binding_ends("alert::email")[0]["outcome"],
        "would_run"
    );
    let started: Vec<Value> = result
        .events()
        .into_iter()
        .filter(|e| e["type"] == "binding_start" && e["name"] == "alert::notify")
        .collect();
    assert_eq!(started[3]["args"]["message"], "Error rate above 1%");
    assert_eq!(started[3]["effect"], "notify");
}

#[test]
fn transient_failures_are_retried_with_the_same_dedup_key() {
    let flaky = Arc::new(AtomicUsize::new(0));
    let calls = flaky.clone();
    let pagerduty = Receiver::start(move |request, _| {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            return Reply::new(503, "upstream unavailable");
        }
        pagerduty_answer(request)
    });
    let hook = Receiver::start(|_, index| match index {
        0 => Reply::new(429, "slow down").header("retry-after", "0"),
        _ => Reply::new(200, "{}"),
    });
    let config = format!(
        r#"
        [alert]
        retry_delay = 0.05
        [alert.routes]
        oncall = ["pagerduty", "hook"]
        [alert.pagerduty]
        routing_key = "env:PAGERDUTY_ROUTING_KEY"
        url = "{}/v2/enqueue"
        [alert.hook]
        type = "webhook"
        url = "env:HOOK_URL"
        "#,
        pagerduty.url()
    );
    let dir = project(
        &config,
        r#"
        let sent = step("page", || alert::notify("oncall", "Disk almost full", #{severity: "warning"}));
        check("attempts", || sent.channels[0].attempts == 3 && sent.channels[1].attempts == 2);
        "#,
    );
    let hook_url = format!("{}/hooks/x", hook.url());
    let env = [
        ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY),
        ("HOOK_URL", hook_url.as_str()),
    ];
    let result = run(dir.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);

    let pages = pagerduty.requests();
    assert_eq!(pages.len(), 3, "503 twice, then accepted");
    let keys: Vec<Value> = pages
        .iter()
        .map(|r| r.json()["dedup_key"].clone())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0] && k.is_string()),
        "{keys:?}"
    );
    let hooks = hook.requests();
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[0].header("idempotency-key"),
        hooks[1].header("idempotency-key")
    );

    let warnings: Vec<String> = result
        .events()
        .into_iter()
        .filter(|e| e["type"] == "log" && e["level"] == "warn")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "alert::notify: attempt 1 of 4 failed (PagerDuty answered 503 Service Unavailable: upstream unavailable)"
        ),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains(keys[0].as_str().unwrap()));
    assert!(
        warnings[2].contains("429 Too Many Requests"),
        "{}",
        warnings[2]
    );
    let ends = result.binding_ends("alert::notify");
    assert!(ends.iter().all(|e| e["outcome"] == "ok"), "{ends:?}");
}

#[test]
fn permanent_failures_are_not_retried_and_every_channel_is_still_tried() {
    let pagerduty = pagerduty_receiver();
    let slack = Receiver::start(|_, _| Reply::new(404, "no_service"));
    let down = Receiver::start(|_, _| Reply::new(503, "down"));
    let config = format!(
        r#"
        [alert]
        retries = 1
        retry_delay = 0.05
        [alert.routes]
        everyone = ["pagerduty", "slack", "hook"]
        [alert.pagerduty]
        routing_key = "env:WRONG_ROUTING_KEY"
        url = "{}/v2/enqueue"
        [alert.slack]
        webhook = "env:SLACK_WEBHOOK_URL"
        [alert.hook]
        type = "webhook"
        url = "env:HOOK_URL"
        "#,
        pagerduty.url()
    );
    let dir = project(
        &config,
        "step(\"tell everyone\", || alert::notify(\"everyone\", \"Maintenance\"));",
    );
    let slack_url = format!("{}/services/T/B/removedhooktoken", slack.url());
    let hook_url = format!("{}/hooks/statuspage-0123456789", down.url());
    let env = [
        ("WRONG_ROUTING_KEY", "wrong-routing-key-000000000000000"),
        ("SLACK_WEBHOOK_URL", slack_url.as_str()),
        ("HOOK_URL", hook_url.as_str()),
    ];
    let result = run(dir.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 1);
    assert_eq!(pagerduty.requests().len(), 1);
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(
        down.requests().len(),
        2,
        "a transient failure is tried retries + 1 times"
    );
    let message = step_message(&result, "tell everyone");
    for part in [
        "alert::notify on everyone: 3 of 3 channels failed",
        "pagerduty: alert::notify on everyone/pagerduty: PagerDuty answered 400 Bad Request: Event object is invalid: routing_key is invalid",
        "slack: alert::notify on everyone/slack: Slack answered 404 Not Found: no_service",
        "hook: alert::notify on everyone/hook: the webhook answered 503 Service Unavailable: down (after 2 attempts)",
    ] {
        assert!(message.contains(part), "missing `{part}` in:\n{message}");
    }
    let ends = result.binding_ends("alert::notify");
    assert!(ends.iter().all(|e| e["outcome"] == "error"), "{ends:?}");
    for secret in [
        "wrong-routing-key",
        "removedhooktoken",
        "statuspage-0123456789",
    ] {
        assert!(!result.everything().contains(secret), "{secret} leaked");
    }
}

#[test]
fn alert_test_reaches_every_channel_and_resolves_its_page() {
    let receivers = Receivers::start();
    let dir = project(
        &receivers.config(),
        "check(\"Alerting works\", || alert::test(\"all\").ok);",
    );
    let env = receivers.env();
    let result = run(
        dir.path(),
        "test.rhai",
        &["--env", "default"],
        &borrowed(&env),
    );
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    let slack = receivers.slack.requests();
    assert_eq!(slack.len(), 1);
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("Test alert for route `all`"), "{text}");
    let pages: Vec<Value> = receivers
        .pagerduty
        .requests()
        .iter()
        .map(Recorded::json)
        .collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0]["event_action"], "trigger");
    assert_eq!(pages[0]["payload"]["severity"], "info");
    assert_eq!(pages[1]["event_action"], "resolve");
    assert_eq!(pages[0]["dedup_key"], pages[1]["dedup_key"]);
    let mail = receivers.smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0]["data"]
            .as_str()
            .unwrap()
            .contains("Subject: [info] runbook alert test")
    );
    assert_eq!(result.binding_ends("alert::test").len(), 4);
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "runbook test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn email_over_starttls_to_a_relay_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let smtp = Smtp::start(true, Some((&cert, &key)));
    let config = |ca_line: &str| {
        format!(
            r#"
            [alert.email]
            host = "127.0.0.1"
            port = {}
            tls = "starttls"
            {ca_line}
            from = "runbook@example.com"
            username = "{SMTP_USER}"
            password = "env:SMTP_PASSWORD"
            "#,
            smtp.port
        )
    };
    let runbook = "step(\"mail\", || alert::email(#{to: [\"ops@example.com\"], subject: \"Restore test passed\", body: \"All tables restored.\"}));";
    let env = [("SMTP_PASSWORD", SMTP_PASSWORD)];

    let trusted = project(&config(&format!("ca_cert = \"{}\"", ca.display())), runbook);
    let result = run(trusted.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["tls"], true);
    assert_eq!(mail[0]["authenticated"], true);
    assert!(
        mail[0]["data"]
            .as_str()
            .unwrap()
            .contains("All tables restored.")
    );

    let untrusted = project(&config(""), runbook);
    let result = run(untrusted.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 1);
    let message = step_message(&result, "mail");
    assert!(
        message.contains("the SMTP server 127.0.0.1 did not take the message"),
        "{message}"
    );
    assert!(
        !message.contains("after"),
        "a TLS failure is not retried: {message}"
    );
    assert_eq!(smtp.messages().len(), 1);
    assert!(!result.everything().contains(SMTP_PASSWORD));
}

#[test]
fn unsafe_or_wrong_settings_are_refused_before_anything_is_sent() {
    let literal = "https://hooks.slack.com/services/T000/B000/literalwebhooksecret";
    let config = format!(
        r#"
        [alert.routes]
        team = ["slack"]
        mail = ["email"]
        plain = ["hook"]
        [alert.slack]
        webhook = "{literal}"
        [alert.email]
        host = "smtp.example.invalid"
        tls = "none"
        from = "runbook@example.com"
        to = ["ops@example.com"]
        [alert.hook]
        type = "webhook"
        url = "env:PLAIN_HOOK"
        "#
    );
    let dir = project(
        &config,
        r#"
        fn refused(f, expected) { try { f.call(); false } catch (e) { if !e.contains(expected) { print(e); } e.contains(expected) } }
        check("literal webhook", || refused(|| alert::notify("team", "x"), "holds the URL itself, which is a secret"));
        check("clear-text SMTP off loopback", || refused(|| alert::notify("mail", "x"), "allowed only for a relay on this machine"));
        check("plain HTTP off loopback", || refused(|| alert::notify("plain", "x"), "plain HTTP to hooks.example.invalid"));
        check("unknown route", || refused(|| alert::notify("nobody", "x"), "no route `nobody` in [alert.routes] (known: mail, plain, team)"));
        check("unknown option", || refused(|| alert::notify("team", "x", #{colour: "red"}), "unknown option `colour`"));
        "#,
    );
    let env = [(
        "PLAIN_HOOK",
        "http://hooks.example.invalid/deploys-secret-path",
    )];
    let result = run(dir.path(), "test.rhai", &[], &env);
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.transcript);
    let everything = result.everything();
    assert!(!everything.contains("literalwebhooksecret"), "{everything}");
    assert!(!everything.contains("deploys-secret-path"), "{everything}");
}

#[test]
fn plans_and_dry_runs_go_on_without_the_alert_secrets() {
    let dir = project(
        "[alert.routes]\noncall = [\"pagerduty\"]\n[alert.pagerduty]\nrouting_key = \"env:PAGERDUTY_ROUTING_KEY\"\n",
        r#"
        let sent = alert::notify("oncall", "Starting the rollback");
        step("rollback", || alert::notify("oncall", "Rollback done"));
        check("a dry run tells what a real run would not manage", || !sent.ok && sent.channels[0].error.contains("PAGERDUTY_ROUTING_KEY"));
        "#,
    );
    let plan = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .current_dir(dir.path())
        .args(["plan", "test.rhai"])
        .env_remove("PAGERDUTY_ROUTING_KEY")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(shown.contains("rollback"), "{shown}");

    let result = run(dir.path(), "test.rhai", &["--dry-run"], &[]);
    assert_eq!(result.code, 0, "{}\n{}", result.stderr, result.transcript);
    assert_eq!(
        result
            .events()
            .iter()
            .filter(|e| e["type"] == "step_end" && e["status"] == "passed")
            .count(),
        2
    );
    let warnings: Vec<String> = result
        .events()
        .into_iter()
        .filter(|e| e["type"] == "log" && e["level"] == "warn")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("dry run: oncall/pagerduty is not ready, a real run would fail: secret `env:PAGERDUTY_ROUTING_KEY`: env var PAGERDUTY_ROUTING_KEY is not set"),
        "{}",
        warnings[0]
    );

    let real = run(dir.path(), "test.rhai", &[], &[]);
    assert_eq!(real.code, 2, "the top-level alert fails the real run");
}
