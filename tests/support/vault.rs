//! A loopback stand-in for Vault: no Vault server can be installed here, so this speaks the
//! parts of Vault's HTTP API the bindings use (KV v2 with check-and-set, token lookup, ACL
//! policies, auth methods, health and the Kubernetes login), from state a test can change.
//! It needs the `loopback` module at the crate root.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::loopback::{Receiver, Recorded, Reply};

pub const TOKEN: &str = "hvs.canary-vault-token-3f9c2e7a1b";
pub const APP_KEY: &str = "canary-vault-value-8d41f0c2a7e9a";

/// The backend's policy as a careful operator writes it: its own secrets, read only.
pub const BACKEND_POLICY: &str = "path \"secret/data/elson/*\" {\n  capabilities = [\"read\"]\n}\n";

/// What the loopback Vault holds: KV v2 versions by path, and who may log in.
pub struct VaultState {
    pub tokens: Vec<String>,
    pub kv: HashMap<String, Vec<Value>>,
    pub jwt: String,
    pub role: String,
    pub issued: String,
    pub logins: usize,
    /// Whether the first login's token expires after one request.
    pub first_login_expires: bool,
    /// Where `secret/moved/app` redirects to.
    pub moved_to: Option<String>,
    /// ACL policies by name, with their text.
    pub policies: BTreeMap<String, String>,
    /// What `sys/auth` lists, by mount path.
    pub auth_methods: Value,
    /// Seconds the token has left; 0 for one that never expires.
    pub ttl: u64,
    /// Data another writer stores right after the next read of a KV secret, so a write
    /// based on that read meets a newer version.
    pub concurrent_write: Option<Value>,
}

impl VaultState {
    pub fn new() -> Self {
        let mut kv = HashMap::new();
        kv.insert(
            "elson/app".to_owned(),
            vec![json!({ "api_key": APP_KEY, "user": "elson-svc" })],
        );
        let policies = [
            (
                "default",
                "path \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}\n",
            ),
            ("elson-backend", BACKEND_POLICY),
            ("root", ""),
        ];
        Self {
            tokens: vec![TOKEN.to_owned()],
            kv,
            jwt: String::new(),
            role: String::new(),
            issued: String::new(),
            logins: 0,
            first_login_expires: false,
            moved_to: None,
            policies: policies
                .into_iter()
                .map(|(name, text)| (name.to_owned(), text.to_owned()))
                .collect(),
            auth_methods: json!({
                "token/": {"type": "token", "description": "token based credentials", "accessor": "auth_token_1"},
                "kubernetes/": {"type": "kubernetes", "description": "", "accessor": "auth_kubernetes_2"},
            }),
            ttl: 3500,
            concurrent_write: None,
        }
    }
}

/// The Vault stand-in, answering from `state`.
pub fn start_vault(state: Arc<Mutex<VaultState>>) -> Receiver {
    Receiver::start(move |request, _| match state.lock() {
        Ok(mut state) => vault_answer(&mut state, request),
        Err(_) => errors(500, "the test's Vault state is poisoned"),
    })
}

/// `[vault]` pointing at the stand-in.
pub fn vault_config(vault: &Receiver) -> String {
    format!("[vault]\naddress = \"{}\"\n", vault.url())
}

fn errors(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({ "errors": [message] }))
}

fn vault_answer(state: &mut VaultState, request: &Recorded) -> Reply {
    let path = request.path.as_str();
    if path.starts_with("/v1/sys/health") {
        return Reply::json(
            200,
            json!({"initialized": true, "sealed": false, "standby": false, "version": "1.17.2"}),
        );
    }
    if path == "/v1/auth/kubernetes/login" {
        return login(state, request);
    }
    let token = request.header("x-vault-token").unwrap_or("");
    if !state.tokens.iter().any(|t| t == token) {
        return errors(403, "permission denied");
    }
    if state.first_login_expires && token == format!("{}-1", state.issued) {
        state.tokens.retain(|t| t != token);
    }
    if let Some(target) = &state.moved_to
        && path.starts_with("/v1/secret/data/moved/")
    {
        return Reply::new(307, "").header("location", &format!("{target}{path}"));
    }
    match path {
        "/v1/auth/token/lookup-self" => Reply::json(
            200,
            json!({"data": {"id": token, "ttl": state.ttl, "creation_ttl": 3600, "renewable": true,
                "policies": ["default", "elson-backend"], "display_name": "token-runbook",
                "expire_time": "2030-01-01T00:00:00Z"}}),
        ),
        "/v1/sys/policies/acl?list=true" => {
            let names: Vec<&String> = state.policies.keys().collect();
            Reply::json(200, json!({"data": {"keys": names}}))
        }
        "/v1/sys/auth" => Reply::json(200, json!({"data": state.auth_methods})),
        _ => match path.strip_prefix("/v1/sys/policies/acl/") {
            Some(name) => policy_answer(state, name),
            None => kv_answer(state, request),
        },
    }
}

fn login(state: &mut VaultState, request: &Recorded) -> Reply {
    let body = request.json();
    if body["jwt"] != state.jwt.as_str() || body["role"] != state.role.as_str() {
        return errors(403, "permission denied");
    }
    state.logins += 1;
    let issued = format!("{}-{}", state.issued, state.logins);
    state.tokens.push(issued.clone());
    Reply::json(
        200,
        json!({"auth": {"client_token": issued, "lease_duration": 3600}}),
    )
}

fn policy_answer(state: &VaultState, name: &str) -> Reply {
    match state.policies.get(name) {
        Some(text) => Reply::json(200, json!({"data": {"name": name, "policy": text}})),
        None => Reply::json(404, json!({"errors": []})),
    }
}

fn kv_answer(state: &mut VaultState, request: &Recorded) -> Reply {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    if let Some(key) = path.strip_prefix("/v1/secret/metadata/") {
        return match state.kv.get(key) {
            Some(versions) => {
                Reply::json(200, json!({"data": {"current_version": versions.len()}}))
            }
            None => Reply::json(404, json!({"errors": []})),
        };
    }
    let Some(key) = path.strip_prefix("/v1/secret/data/") else {
        return Reply::json(404, json!({"errors": []}));
    };
    if request.method == "POST" {
        return kv_write(state, key, request);
    }
    let Some(versions) = state.kv.get(key) else {
        return Reply::json(404, json!({"errors": []}));
    };
    let wanted = query
        .strip_prefix("version=")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(versions.len());
    let reply = match versions.get(wanted.wrapping_sub(1)) {
        Some(data) => Reply::json(
            200,
            json!({"data": {"data": data, "metadata": {"version": wanted, "created_time": "2026-01-01T00:00:00Z"}}}),
        ),
        None => return Reply::json(404, json!({"errors": []})),
    };
    if let Some(data) = state.concurrent_write.take() {
        state.kv.entry(key.to_owned()).or_default().push(data);
    }
    reply
}

/// A write, refused unless it carries the current version as `cas`, as Vault does for a
/// mount with `cas_required`.
fn kv_write(state: &mut VaultState, key: &str, request: &Recorded) -> Reply {
    let body = request.json();
    let current = state.kv.get(key).map_or(0, Vec::len);
    let Some(cas) = body["options"]["cas"].as_u64() else {
        return errors(400, "check-and-set parameter required for this call");
    };
    if cas as usize != current {
        return errors(
            400,
            "check-and-set parameter did not match the current version",
        );
    }
    let versions = state.kv.entry(key.to_owned()).or_default();
    versions.push(body["data"].clone());
    Reply::json(
        200,
        json!({"data": {"version": versions.len(), "created_time": "2026-01-01T00:00:00Z"}}),
    )
}
