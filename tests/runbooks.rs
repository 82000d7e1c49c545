//! The shipped runbooks end to end: `runbooks/rollback.rhai` and `runbooks/deploy.rhai` are
//! copied with `stdlib/` into a scratch workspace whose generated runbook.toml points the
//! `local` environment at servers this test starts, and run through the real binary, in a
//! dry run and for real. The test plays the Kubernetes controller by patching status.

#[allow(dead_code)]
#[path = "support/emulator.rs"]
mod emulator;
#[path = "loopback/mod.rs"]
mod loopback;
#[path = "support/redis_servers.rs"]
mod redis_servers;
#[allow(dead_code)]
mod support;

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

// ---------------------------------------------------------------------------------------
// deploy.rhai

/// The user's application is theirs, not ours: this HTTPS server is our own stand-in for it,
/// serving what the checklist's checks ask for. It also stands in for the ELK search API and
/// the Prometheus query API, which do not run here.
mod app {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::service::service_fn;
    use hyper::{Method, Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use tokio_rustls::TlsAcceptor;

    use crate::support::pki::{Kind, Pki};

    /// Logins answered in a window of `LOGIN_WINDOW` before the login route refuses with 429.
    pub const LOGIN_LIMIT: u32 = 5;
    const LOGIN_WINDOW: Duration = Duration::from_secs(2);
    pub const ORIGIN: &str = "https://app.elson.test";

    struct State {
        base: String,
        logins: Mutex<(Instant, u32)>,
        key: EncodingKey,
        jwks: String,
    }

    const HEADERS: &[(&str, &str)] = &[
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ];

    /// Starts the stand-in on `runtime`; returns its port.
    pub fn start(runtime: &tokio::runtime::Runtime, pki: &Pki) -> u16 {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let port = std.local_addr().unwrap().port();
        let served = pki.served(Kind::Valid);
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(served.chain, served.key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let private = include_str!("fixtures/jwt/rsa-private.pem");
        let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("test-1".into());
        let state = Arc::new(State {
            base: format!("https://localhost:{port}"),
            logins: Mutex::new((Instant::now(), 0)),
            key,
            jwks: serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
        });
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(&req, &state)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }

    fn reply(status: u16, extra: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(status);
        for (name, value) in HEADERS.iter().chain(extra) {
            builder = builder.header(*name, *value);
        }
        builder.body(Full::new(body.into())).unwrap()
    }

    fn json(value: serde_json::Value) -> Response<Full<Bytes>> {
        reply(
            200,
            &[("content-type", "application/json")],
            value.to_string(),
        )
    }

    fn token(state: &State, kind: &str) -> String {
        let claims = json!({"sub": "runbook-probe", "aud": "elson-api", "typ": kind,
            "exp": 4_102_444_800u64, "iat": 1_700_000_000u64});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-1".into());
        jsonwebtoken::encode(&header, &claims, &state.key).unwrap()
    }

    fn route(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        if req.method() == Method::OPTIONS {
            return preflight(&header("origin"));
        }
        match req.uri().path() {
            "/health" | "/api/v1/health" => json(json!({"status": "ok"})),
            "/api/version" => json(json!({"api_version": "v1"})),
            "/config.json" => json(json!({"api_url": state.base, "api_version": "v1"})),
            "/.well-known/jwks.json" => json(serde_json::from_str(&state.jwks).unwrap()),
            "/api/v1/auth/login" => {
                if !login_allowed(state) {
                    return reply(429, &[("retry-after", "2")], "slow down");
                }
                json(json!({"access_token": token(state, "access"),
                    "refresh_token": token(state, "refresh")}))
            }
            "/api/v1/auth/refresh" => json(json!({"access_token": token(state, "access")})),
            "/api/v1/portfolio" => reply(401, &[("www-authenticate", "Bearer")], "log in"),
            "/learn" => reply(200, &[("content-type", "text/html")], "<h1>Learn</h1>"),
            "/static/app.js" => reply(200, &[("cache-control", "public, max-age=31536000")], "1"),
            // ELK-like and Prometheus-like answers.
            "/_cluster/health" => json(json!({"status": "green"})),
            p if p.ends_with("/_count") => json(json!({"count": 42})),
            "/api/v1/query" => json(json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {"namespace": "elson"}, "value": [0, "1"]}]}})),
            _ => reply(404, &[("content-type", "text/plain")], "not found"),
        }
    }

    /// Counts a login in the current window, like a fixed-window rate limiter.
    fn login_allowed(state: &State) -> bool {
        let mut logins = state.logins.lock().unwrap_or_else(|e| e.into_inner());
        if logins.0.elapsed() > LOGIN_WINDOW {
            *logins = (Instant::now(), 0);
        }
        logins.1 += 1;
        logins.1 <= LOGIN_LIMIT
    }

    fn preflight(origin: &str) -> Response<Full<Bytes>> {
        if origin != ORIGIN {
            return reply(204, &[], "");
        }
        reply(
            204,
            &[
                ("access-control-allow-origin", origin),
                ("access-control-allow-methods", "GET, POST"),
                ("vary", "Origin"),
            ],
            "",
        )
    }
}

/// A uniquely named PostgreSQL database at the checklist's migration head, dropped on drop.
struct Database {
    name: String,
}

fn psql(database: &str, sql: &str) {
    let status = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
        ])
        .args(["-d", database, "-c", sql])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .status()
        .unwrap();
    assert!(status.success(), "psql {sql}");
}

impl Database {
    fn create() -> Self {
        let name = format!("runbooks_e2e_{}", std::process::id());
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(
            &name,
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);\
             INSERT INTO alembic_version VALUES ('3c9e1f2a7b4d')",
        );
        Self { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A git repository like the application's: the env validator, one backend test, a
/// frontend whose `npm test` is `true`, and a deploy script that records its arguments.
fn fake_repo(dir: &Path) {
    let files = [
        (
            "backend/app/scripts/validate_env.py",
            "print('environment ok')\n",
        ),
        (
            "backend/tests/test_smoke.py",
            "def test_smoke():\n    assert 1 + 1 == 2\n",
        ),
        (
            "frontend/package.json",
            "{\"name\": \"frontend\", \"version\": \"1.0.0\", \"scripts\": {\"test\": \"true\"}}\n",
        ),
        (
            "scripts/deploy-production.sh",
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/../deployed-with\"\necho deployed \"$@\"\n",
        ),
    ];
    for (path, text) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    let script = dir.join("scripts/deploy-production.sh");
    let mut mode = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&script, mode).unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "app",
        ],
    ] {
        let status = Command::new("git")
            .current_dir(dir)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

struct Local {
    _runtime: tokio::runtime::Runtime,
    emulator: Emulator,
    slack: Receiver,
    pagerduty: Receiver,
    database: Database,
    // A cache of the test's own: the shared server's hit counters move with every other
    // test that uses it, which would make the hit-ratio check's verdict depend on timing.
    cache: redis_servers::Server,
    app: u16,
    redirector: u16,
    websocket: u16,
    root: tempfile::TempDir,
}

impl Local {
    fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = support::pki::Pki::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = app::start(&runtime, &pki);
        let redirector = support::servers::redirector(app);
        let websocket = support::servers::websocket(Some((&pki, support::pki::Kind::Valid)), None);
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("ca.pem"), &pki.root_pem).unwrap();
        fake_repo(&root.path().join("repo"));
        let backups = root.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        std::fs::write(backups.join("nightly.dump"), "PGDMP nightly").unwrap();
        Self {
            _runtime: runtime,
            emulator: Emulator::start(),
            slack: slack(),
            pagerduty: Receiver::start(|_, _| {
                Reply::json(202, json!({"status": "success", "dedup_key": "k1"}))
            }),
            database: Database::create(),
            cache: redis_servers::Server::start(root.path(), "cache", "", false),
            app,
            redirector,
            websocket,
            root,
        }
    }

    fn config(&self) -> String {
        let root = self.root.path().display();
        let base = format!("https://localhost:{}", self.app);
        format!(
            r#"
default_environment = "local"

[secrets]
env = ["DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY",
       "SCHWAB_API_KEY", "SCHWAB_SECRET", "MARKET_DATA_API_KEY", "STRIPE_SECRET_KEY",
       "TEST_USER_PASSWORD"]
sources = ["env"]

[environments.local]
ca = "{root}/ca.pem"
namespace = "elson"
deployment = "elson-backend"
selector = "app=elson-backend"
base_url = "{base}"
frontend_url = "{base}"
websocket_url = "wss://localhost:{ws}/ws/market-data"
http_urls = ["http://localhost:{redirector}"]
tls_hosts = ["localhost:{app}"]
allowed_origins = ["{origin}"]
protected_urls = ["{base}/api/v1/portfolio"]
logging_url = "{base}"
prometheus_url = "{base}"
database_url = "DATABASE_URL"
redis_url = "REDIS_URL"
redis_sentinels = ["redis://127.0.0.1:6379"]
migrations_head = "3c9e1f2a7b4d"
backup_dir = "{root}/backups"
repo_dir = "{root}/repo"
deploy_script = "./scripts/deploy-production.sh"
expected_replicas = 0
max_db_latency_ms = 1000
websocket_connections = 5
min_cache_hit_ratio = 0.0

[alert]
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
            ws = self.websocket,
            redirector = self.redirector,
            app = self.app,
            origin = app::ORIGIN,
            pagerduty = self.pagerduty.url(),
        )
    }

    fn workspace(&self) -> Workspace {
        let venv = repo().join(".venv/bin");
        let path = format!(
            "{}:{}",
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut workspace = Workspace::new(&self.config(), &self.emulator.kubeconfig)
            .with_env("PATH", &path)
            .with_env("SLACK_WEBHOOK_URL", &slack_url(&self.slack))
            .with_env("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0123456789abcdefABCDEF")
            .with_env("DATABASE_URL", &self.database.url())
            .with_env("REDIS_URL", &self.cache.url());
        for (name, value) in [
            ("SECRET_KEY", "k3y-0123456789-abcdefghij-ABCDEFGHIJ-xyz"),
            ("SCHWAB_API_KEY", "schwab-key-0123456789"),
            ("SCHWAB_SECRET", "schwab-secret-0123456789"),
            ("MARKET_DATA_API_KEY", "market-data-0123456789"),
            ("STRIPE_SECRET_KEY", "sk_test_0123456789abcdefghijklmn"),
            ("TEST_USER_PASSWORD", "probe-password-0123"),
        ] {
            workspace = workspace.with_env(name, value);
        }
        workspace
    }
}

/// Every checklist item of the Pre-Deployment, Deployment Execution and Post-Deployment
/// sections, as `runbook plan runbooks/deploy.rhai` lists them.
const DEPLOY_PLAN: &[&str] = &[
    "Generate a secure random SECRET_KEY (at least 32 characters)",
    "Configure production DATABASE_URL with proper credentials",
    "Set up Redis Sentinel or Cluster for high availability",
    "Configure broker API credentials (SCHWAB_API_KEY, SCHWAB_SECRET)",
    "Set up all required market data API keys",
    "Configure ALLOWED_ORIGINS with production domains",
    "Enable and configure centralized logging (ELK stack)",
    "Set up secrets management with Vault or AWS Secrets Manager",
    "Configure alerting via email, Slack, and/or PagerDuty",
    "Set up Stripe API keys for payment processing",
    "Configure frontend environment with production API URLs",
    "Run backend/app/scripts/validate_env.py to verify environment setup",
    "Run all backend tests with pytest",
    "Run all frontend tests with npm test",
    "Verify API compatibility between frontend and backend",
    "Check for sensitive information in code and environment files",
    "Ensure debug mode is disabled in production builds",
    "Verify all third-party API keys are valid and have appropriate rate limits",
    "Verify SSL certificates are valid and not about to expire",
    "Verify database migrations run without errors",
    "Confirm database connections and pooling are properly configured",
    "Ensure database backups are properly set up",
    "Verify database replication is working correctly",
    "Set up database monitoring and alerts",
    "Run query performance analysis on critical endpoints",
    "Configure Kubernetes namespace and resource quotas",
    "Set up proper CPU and memory limits for all containers",
    "Configure Horizontal Pod Autoscalers",
    "Set up Pod Disruption Budgets",
    "Configure ingress rules and TLS",
    "Verify all ConfigMaps and Secrets are correctly defined",
    "Test load balancing configuration",
    "Verify network policies are properly applied",
    "Configure monitoring and alerting for all infrastructure components",
    "Create backup of current production database (if applicable)",
    "Run the deployment script: ./scripts/deploy-production.sh",
    "Monitor deployment progress and check for errors",
    "Verify all pods are running correctly",
    "Test database migrations completed successfully",
    "Verify all services are accessible",
    "Verify user login and registration",
    "Test two-factor authentication",
    "Verify WebSocket connections for real-time market data",
    "Test trade execution and order status updates",
    "Verify portfolio display and calculations",
    "Test guardian approval workflow for minor accounts",
    "Verify subscription management and payment processing",
    "Test recurring investment scheduling",
    "Verify all educational content is accessible",
    "Check application response times",
    "Verify database query performance",
    "Test WebSocket connection capacity",
    "Monitor memory usage and resource consumption",
    "Check Redis caching efficiency",
    "Verify CDN integration for static assets",
    "Verify all HTTP requests use HTTPS",
    "Check security headers on all responses",
    "Test JWT token validation and refresh",
    "Verify proper authentication for all protected endpoints",
    "Check CORS configuration",
    "Test rate limiting",
    "Verify logs are being correctly sent to centralized logging",
    "Check that metrics are being collected in Prometheus",
    "Verify alerting configuration is working correctly",
    "Test incident response procedure",
];

/// Checks the local environment cannot satisfy, with the text of their finding.
const LOCAL_FAILURES: &[(&str, &str)] = &[
    // The local Redis is a single server, not a Sentinel.
    (
        "Set up Redis Sentinel or Cluster for high availability",
        "SENTINEL",
    ),
    // No Vault server runs for this test.
    (
        "Set up secrets management with Vault or AWS Secrets Manager",
        "no server",
    ),
    // The local PostgreSQL does not preload pg_stat_statements.
    (
        "Verify database query performance",
        "pg_stat_statements is not installed",
    ),
    // The test's fresh cache server has had too few lookups to judge a hit ratio.
    (
        "Check Redis caching efficiency",
        "cache lookups since the last reset",
    ),
];

/// Skipped locally: `expected_replicas = 0`, the local PostgreSQL has no replicas.
const LOCAL_SKIPS: &[&str] = &["Verify database replication is working correctly"];

fn manual_tasks() -> Vec<&'static str> {
    let plan = std::fs::read_to_string(repo().join("runbooks/deploy.rhai")).unwrap();
    DEPLOY_PLAN
        .iter()
        .copied()
        .filter(|title| plan.contains(&format!("manual(\"{title}\"")))
        .collect()
}

fn assert_deploy_statuses(run: &Run) {
    let manual = manual_tasks();
    assert_eq!(manual.len(), 11, "{manual:?}");
    for title in DEPLOY_PLAN {
        let status = run.status(title);
        let expected = if manual.contains(title) {
            "pending"
        } else if LOCAL_SKIPS.contains(title) {
            "skipped"
        } else if LOCAL_FAILURES.iter().any(|(t, _)| t == title) {
            "failed"
        } else {
            "passed"
        };
        assert_eq!(status, expected, "{title}: {}", run.findings(title));
    }
    for (title, finding) in LOCAL_FAILURES {
        assert!(
            run.findings(title).contains(finding),
            "{title}: {}",
            run.findings(title)
        );
    }
    assert_eq!(run.code, 1, "{}", run.screen());
}

#[test]
fn deploy_checklist_dry_run_and_real_run() {
    let local = Local::start();
    let workspace = local.workspace();
    let repo_dir = local.root.path().join("repo");
    let dump = local.root.path().join("backups/before-deploy-1.4.3.dump");

    let dry = workspace.run("deploy.rhai", &["--dry-run", "--param", "version=1.4.3"]);
    assert_deploy_statuses(&dry);
    assert!(
        !repo_dir.join("deployed-with").exists(),
        "a dry run ran the deploy script"
    );
    assert!(!dump.exists(), "a dry run took a backup");
    assert_eq!(dry.outcomes("db::backup"), ["would_run"]);
    assert!(local.slack.requests().is_empty(), "a dry run sent an alert");
    dry.assert_verifies(&workspace);

    let real = workspace.run("deploy.rhai", &["--param", "version=1.4.3"]);
    assert_deploy_statuses(&real);
    let deployed = std::fs::read_to_string(repo_dir.join("deployed-with")).unwrap_or_default();
    assert_eq!(deployed.trim(), "1.4.3");
    assert!(
        std::fs::metadata(&dump)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "no dump"
    );
    // The alerting check sent a test alert to the team's Slack.
    assert!(
        !local.slack.requests().is_empty(),
        "no test alert reached Slack"
    );
    // The failed checks run the on_failure handler, which tells the team.
    let texts: Vec<String> = local
        .slack
        .requests()
        .iter()
        .map(|r| r.json()["text"].to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Deployment of 1.4.3 to local failed")),
        "{texts:?}"
    );
    real.assert_verifies(&workspace);
    eprintln!("dry run {:?}, real run {:?}", dry.elapsed, real.elapsed);
}
