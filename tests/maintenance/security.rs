//! The weekly security scans and the monthly check of the secret management guidelines.

use super::*;

// ---------------------------------------------------------------------------------------
// Run security scans weekly

const HEADERS: &str = "Check security headers on all responses";
const CERTIFICATES: &str = "Verify SSL certificates are valid and not about to expire";
const HTTPS: &str = "Verify all HTTP requests use HTTPS";
const AUTHENTICATION: &str = "Verify proper authentication for all protected endpoints";
const IMAGE_TAGS: &str = "No container image is tagged latest or untagged";
const SENSITIVE: &str = "Check for sensitive information in code";
const SCAN_REVIEW: &str = "Review the scan results and the open security advisories";

fn pki() -> &'static support::pki::Pki {
    static PKI: std::sync::OnceLock<support::pki::Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(support::pki::Pki::new)
}

/// The scanned site: its pages, plain-HTTP address, TLS endpoint and protected endpoint.
fn scan_settings(page: &str, plain: &str, tls: &str, protected: &str, repo: &Path) -> String {
    format!(
        "ca = \"ca.pem\"\nbase_url = \"{page}\"\nsecurity_urls = [\"{page}\"]\n\
         https_redirect_urls = [\"{plain}\"]\ntls_hosts = [\"{tls}\"]\nmin_certificate_days = 30\n\
         protected_urls = [\"{protected}\"]\nrepo_dir = \"{}\"",
        repo.display()
    )
}

#[test]
fn security_scans_pass_on_a_hardened_site_and_name_every_weakness() {
    use support::pki::Kind;
    use support::servers;

    let emulator = Emulator::start();
    let good = servers::https_app(pki(), Kind::Valid);
    let redirector = servers::redirector(good.port);
    let ws = workspace();
    ws.write("ca.pem", &pki().root_pem);
    let clean = ws.path().join("clean");
    git_repo(&clean, APP_FILES);
    let settings = scan_settings(
        &good.url("/good"),
        &format!("http://localhost:{redirector}/good"),
        &format!("localhost:{}", good.port),
        &good.url("/protected"),
        &clean,
    );
    configure(&ws, &settings, "");
    let env = [kube_env(&emulator)];
    let all = [
        HEADERS,
        CERTIFICATES,
        HTTPS,
        AUTHENTICATION,
        IMAGE_TAGS,
        SENSITIVE,
    ];
    let mut expected = all_passed(&all);
    expected.push((SCAN_REVIEW, "pending"));
    for args in [&["--dry-run"][..], &[]] {
        run(&ws, "security-scans", args, &env).expect(3, &expected);
    }

    // Weak headers, no redirect, a certificate about to expire, an endpoint that takes any
    // token, a worker on :latest and a key in the history.
    let expiring = servers::https_app(pki(), Kind::Expiring);
    let plain = servers::http_app();
    let leaky = ws.path().join("leaky");
    git_repo(
        &leaky,
        &[(
            "backend/app/aws.py",
            &format!("AWS_ACCESS_KEY_ID = \"{COMMITTED_KEY}\"\n"),
        )],
    );
    let worker = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "elson-worker", "namespace": "elson", "labels": {"app": "elson-worker"}},
        "spec": {"containers": [{"name": "worker", "image": "registry.example.com/elson/worker:latest"}]},
        "status": {"phase": "Running"}});
    emulator.load(&json!([worker]));
    let settings = scan_settings(
        &expiring.url("/weak"),
        &plain.url("/good"),
        &format!("localhost:{}", expiring.port),
        &expiring.url("/careless"),
        &leaky,
    );
    configure(&ws, &settings, "");
    let broken = run(&ws, "security-scans", &[], &env);
    let mut failed: Vec<(&str, &str)> = all.iter().map(|title| (*title, "failed")).collect();
    failed.push((SCAN_REVIEW, "pending"));
    broken.expect(1, &failed);
    assert!(broken.found(HEADERS, "Server header reveals a version: nginx/1.18.0"));
    let certificates = broken.findings(CERTIFICATES);
    assert!(
        certificates[0].contains(" expires in ") && certificates[0].ends_with(", under 30"),
        "{certificates:?}"
    );
    assert!(broken.found(
        HTTPS,
        "answered 200 over plain HTTP instead of redirecting to HTTPS"
    ));
    assert!(broken.found(
        AUTHENTICATION,
        "answered 200 to a request with a malformed token"
    ));
    assert_eq!(
        broken.findings(IMAGE_TAGS),
        [
            "Pod elson/elson-worker container worker image registry.example.com/elson/worker:latest is tagged latest"
        ]
    );
    let sensitive = broken.findings(SENSITIVE);
    assert!(
        sensitive.contains(&"backend/app/aws.py: 1 lines match AKIA[0-9A-Z]{16}".to_owned()),
        "{sensitive:?}"
    );
    assert!(
        sensitive
            .iter()
            .any(|f| f.starts_with("1 commits add or remove lines matching AKIA")),
        "{sensitive:?}"
    );
    broken.assert_hidden(COMMITTED_KEY, "the committed key");
}

// ---------------------------------------------------------------------------------------
// Secret Management Guidelines

const NO_COMMITS: &str = "Never commit actual secret values to source control";
const SECRET_KEYS: &str = "The backend-secrets Secret holds every key the backend reads";
const SECRET_LENGTHS: &str = "Use a secure method to generate and store secrets";
const VAULT_SEALED: &str = "Vault is initialised and unsealed";
const POLICY_EXISTS: &str = "Create a restricted policy for the backend service";
const POLICY_LIMITED: &str = "Limit access to only required secrets";
const TOKEN_ROTATION: &str = "Implement periodic token rotation";
const KUBERNETES_AUTH: &str = "Configure Vault to use Kubernetes service account tokens";
const AGENT_SIDECAR: &str = "Set up automatic credential injection via the Vault agent sidecar";

const GUIDELINES: &[&str] = &[
    NO_COMMITS,
    SECRET_KEYS,
    SECRET_LENGTHS,
    VAULT_SEALED,
    POLICY_EXISTS,
    POLICY_LIMITED,
    TOKEN_ROTATION,
    KUBERNETES_AUTH,
    AGENT_SIDECAR,
];

fn guideline_settings(repo: &Path) -> String {
    format!(
        "repo_dir = \"{}\"\nbackend_secret = \"backend-secrets\"\n\
         backend_secret_keys = [\"DATABASE_URL\", \"SECRET_KEY\", \"REDIS_URL\"]\n\
         rotated_keys = [\"SECRET_KEY\"]\nmin_secret_length = 32\nvault_policy = \"elson-backend\"\n\
         vault_policy_paths = [\"secret/data/elson/\", \"secret/metadata/elson/\"]\n\
         vault_token_max_ttl = 86400\nvault_agent_injection = true",
        repo.display()
    )
}

#[test]
fn secret_management_checks_the_guidelines_by_keys_and_policies_never_values() {
    let emulator = Emulator::start();
    let inject = json!({"spec": {"template": {"metadata": {"annotations": {
        "vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "elson-backend"}}}}});
    emulator.merge_patch(DEPLOYMENT, &inject);
    let state = Arc::new(Mutex::new(vault::VaultState::new()));
    let vault = vault::start_vault(state.clone());
    let ws = workspace();
    let clean = ws.path().join("clean");
    git_repo(&clean, APP_FILES);
    configure(
        &ws,
        &guideline_settings(&clean),
        &vault::vault_config(&vault),
    );
    let env = [
        kube_env(&emulator),
        ("VAULT_TOKEN", vault::TOKEN.to_owned()),
    ];
    for args in [&["--dry-run"][..], &[]] {
        let outcome = run(&ws, "secret-management", args, &env);
        outcome.expect(0, &all_passed(GUIDELINES));
        outcome.assert_hidden("fake-secret-key-for-tests-only", "the fixture's SECRET_KEY");
        outcome.assert_hidden("not-a-real-password", "the fixture's database password");
        outcome.assert_hidden(vault::TOKEN, "the Vault token");
    }

    // Everything the guidelines warn about at once.
    {
        let mut state = state.lock().unwrap();
        state.policies.insert(
            "elson-backend".into(),
            "path \"*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"]\n}\n".into(),
        );
        state.auth_methods =
            json!({"token/": {"type": "token", "description": "", "accessor": "auth_token_1"}});
        state.ttl = 0;
    }
    emulator.merge_patch(
        SECRET,
        &json!({"data": {"REDIS_URL": null, "SECRET_KEY": "c2hvcnQta2V5"}}),
    );
    emulator.merge_patch(
        DEPLOYMENT,
        &json!({"spec": {"template": {"metadata": {"annotations": null}}}}),
    );
    let leaky = ws.path().join("leaky");
    git_repo(
        &leaky,
        &[(
            "deploy/secrets.env",
            &format!("AWS_ACCESS_KEY_ID={COMMITTED_KEY}\n"),
        )],
    );
    configure(
        &ws,
        &guideline_settings(&leaky),
        &vault::vault_config(&vault),
    );
    let broken = run(&ws, "secret-management", &[], &env);
    broken.expect(
        1,
        &[
            (NO_COMMITS, "failed"),
            (SECRET_KEYS, "failed"),
            (SECRET_LENGTHS, "failed"),
            (VAULT_SEALED, "passed"),
            (POLICY_EXISTS, "passed"),
            (POLICY_LIMITED, "failed"),
            (TOKEN_ROTATION, "failed"),
            (KUBERNETES_AUTH, "failed"),
            (AGENT_SIDECAR, "failed"),
        ],
    );
    assert!(broken.found(NO_COMMITS, "deploy/secrets.env: 1 lines match AKIA"));
    assert_eq!(
        broken.findings(SECRET_KEYS),
        ["Secret elson/backend-secrets has no key REDIS_URL (it has: DATABASE_URL, SECRET_KEY)"]
    );
    assert_eq!(broken.findings(SECRET_LENGTHS).len(), 1);
    assert!(broken.found(
        SECRET_LENGTHS,
        "SECRET_KEY in Secret elson/backend-secrets is 9 characters, fewer than 32"
    ));
    let policy = broken.findings(POLICY_LIMITED);
    for expected in [
        "policy elson-backend grants *, which reaches far beyond the backend's own secrets",
        "policy elson-backend grants *, outside the paths it needs (secret/data/elson/, secret/metadata/elson/)",
        "policy elson-backend gives sudo on *",
    ] {
        assert!(
            policy.contains(&expected.to_owned()),
            "{expected}: {policy:?}"
        );
    }
    assert!(broken.found(TOKEN_ROTATION, "the Vault token never expires"));
    assert_eq!(
        broken.findings(KUBERNETES_AUTH),
        ["Vault has no kubernetes auth method enabled (it has: token/)"]
    );
    assert!(broken.found(
        AGENT_SIDECAR,
        "are not annotated vault.hashicorp.com/agent-inject: \"true\""
    ));
    broken.assert_hidden("short-key", "the short SECRET_KEY");
    broken.assert_hidden(COMMITTED_KEY, "the committed key");
}
