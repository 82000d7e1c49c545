//! `vault::`: HashiCorp Vault through its HTTP API: KV v2 secrets (read, and write with
//! check-and-set), the token's own TTL, ACL policies and enabled auth methods. The token
//! comes from `[vault] token` or `VAULT_TOKEN`, or from Kubernetes auth.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use rhai::{Array, Dynamic, Map};
use serde::Deserialize;
use serde_json::{Value, json};

use super::secret::Found;
use super::secure_http;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::engine::convert::{from_json, to_json};
use crate::secret::Secret;
use crate::transcript::event::Effect;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// Characters escaped inside one path segment of a Vault API URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'/')
    .add(b'<')
    .add(b'>');

/// `[vault]` in runbook.toml, with `[environments.NAME.vault]` laid over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The server, e.g. `https://vault.internal:8200`; else `VAULT_ADDR`.
    address: Option<String>,
    /// A secret reference for the token (`env:VAULT_TOKEN`, `file:...`); else `VAULT_TOKEN`.
    token: Option<String>,
    /// A PEM file of extra CA certificates; else `VAULT_CACERT`.
    ca_cert: Option<PathBuf>,
    /// A KV v2 mount whose name holds a slash (`kv/apps`); otherwise a path's first segment
    /// is its mount.
    mount: Option<String>,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace`.
    namespace: Option<String>,
    /// Seconds per request.
    timeout: Option<f64>,
    kubernetes: Option<KubernetesAuth>,
}

/// `[vault.kubernetes]`: log in with the pod's service-account token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesAuth {
    role: String,
    #[serde(default = "default_kubernetes_mount")]
    mount: String,
    #[serde(default = "default_token_file")]
    token_file: PathBuf,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_token_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

#[derive(Clone)]
enum Auth {
    Token(Secret),
    Kubernetes(KubernetesAuth),
}

/// One Vault server, as the settings describe it.
#[derive(Clone)]
struct Vault {
    address: Url,
    auth: Auth,
    mount: Option<String>,
    namespace: Option<String>,
    client: reqwest::Client,
    masker: crate::transcript::Masker,
}

/// Tokens obtained by Kubernetes login, by server, auth mount and role, so a run logs in once.
fn login_cache() -> &'static Mutex<HashMap<String, Secret>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Secret>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The token an earlier login got for `key`; `fresh` forgets it instead.
fn cached_login(key: &str, fresh: bool) -> Option<Secret> {
    let mut cache = login_cache()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if fresh {
        cache.remove(key);
        return None;
    }
    cache.get(key).cloned()
}

/// A KV v2 secret as Vault returned it. Its values are registered for masking only as they
/// become `Secret`s: masking every field of every secret read (a user name such as the
/// namespace's) would blank out much of the transcript for nothing.
struct KvSecret {
    data: BTreeMap<String, String>,
    metadata: Value,
}

impl Vault {
    /// Reads the settings and the token reference; nothing is sent yet.
    fn open(ctx: &RunContext) -> Outcome<Self> {
        let fail = |failure| super::settings::failed(ctx, "vault", failure);
        let settings: Settings = super::settings::read(ctx, "vault").map_err(fail)?;
        let address = settings
            .address
            .clone()
            .or_else(|| std::env::var("VAULT_ADDR").ok())
            .ok_or_else(|| {
                fail(Failure::new(
                    "no server: set [vault] address in runbook.toml or VAULT_ADDR",
                ))
            })?;
        let address = secure_http::endpoint(&address, "the Vault address").map_err(fail)?;
        let ca_cert = settings
            .ca_cert
            .clone()
            .or_else(|| std::env::var_os("VAULT_CACERT").map(PathBuf::from));
        let timeout = settings
            .timeout
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(secure_http::DEFAULT_TIMEOUT);
        let ca_cert = ca_cert.map(|path| super::settings::path(ctx, path));
        let client = secure_http::client(ca_cert.as_deref(), timeout).map_err(fail)?;
        Ok(Self {
            address,
            auth: auth(ctx, &settings)?,
            mount: settings.mount.map(|m| m.trim_matches('/').to_owned()),
            namespace: settings.namespace,
            client,
            masker: ctx.masker.clone(),
        })
    }

    fn url(&self, api: &str) -> Result<Url, Failure> {
        self.address
            .join(&format!("v1/{api}"))
            .map_err(|err| Failure::new(format!("cannot build the URL for {api} ({err})")))
    }

    /// Sends one request with the token; `None` when Vault answers 404. A Kubernetes login
    /// token that Vault no longer accepts is dropped and the login done again, once.
    async fn send(
        &self,
        method: Method,
        api: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, Failure> {
        let (token, cached) = self.token(false).await?;
        match self
            .send_with(&token, method.clone(), api, body.clone())
            .await
        {
            Err(Refused::Forbidden(_)) if cached => {
                let (fresh, _) = self.token(true).await?;
                self.send_with(&fresh, method, api, body)
                    .await
                    .map_err(Refused::into_failure)
            }
            other => other.map_err(Refused::into_failure),
        }
    }

    async fn send_with(
        &self,
        token: &Secret,
        method: Method,
        api: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, Refused> {
        let mut request = self
            .client
            .request(method, self.url(api).map_err(Refused::Other)?)
            .header("X-Vault-Token", token.expose())
            .header("X-Vault-Request", "true");
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| Refused::Other(secure_http::send_failed("Vault", err)))?;
        answer(response).await
    }

    /// The token to send: the configured one, or one from Kubernetes login, and whether it
    /// came from an earlier login (and so may have expired since).
    async fn token(&self, fresh: bool) -> Result<(Secret, bool), Failure> {
        let kubernetes = match &self.auth {
            Auth::Token(token) => return Ok((token.clone(), false)),
            Auth::Kubernetes(kubernetes) => kubernetes,
        };
        let key = format!("{}|{}|{}", self.address, kubernetes.mount, kubernetes.role);
        if let Some(token) = cached_login(&key, fresh) {
            return Ok((token, true));
        }
        let token = self.kubernetes_login(kubernetes).await?;
        login_cache()
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(key, token.clone());
        Ok((token, false))
    }

    /// Exchanges the service-account token for a Vault token at `auth/MOUNT/login`.
    async fn kubernetes_login(&self, auth: &KubernetesAuth) -> Result<Secret, Failure> {
        let jwt = tokio::fs::read_to_string(&auth.token_file)
            .await
            .map_err(|err| {
                Failure::from_error(
                    format!(
                        "cannot read the service-account token {}",
                        auth.token_file.display()
                    ),
                    &err,
                )
            })?;
        let jwt = jwt.trim();
        self.masker.add(jwt);
        let api = format!("auth/{}/login", auth.mount.trim_matches('/'));
        let mut request = self
            .client
            .post(self.url(&api)?)
            .header("X-Vault-Request", "true")
            .json(&json!({ "role": auth.role, "jwt": jwt }));
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request
            .send()
            .await
            .map_err(|err| secure_http::send_failed("Vault", err))?;
        let body = answer(response)
            .await
            .map_err(|refused| {
                let failure = refused.into_failure();
                Failure::new(format!(
                    "Kubernetes login as role `{}` failed: {}",
                    auth.role, failure.message
                ))
            })?
            .ok_or_else(|| Failure::new(format!("no Kubernetes auth method at {api}")))?;
        let token = body["auth"]["client_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::new("Kubernetes login answered without a client token"))?;
        self.masker.add(token);
        Ok(Secret::new(format!("vault:{api}"), token))
    }

    /// `secret/elson/app` as (`secret`, `elson/app`), honouring a configured mount.
    fn split<'p>(&self, path: &'p str) -> Result<(String, &'p str), Failure> {
        let path = path.trim_matches('/');
        if let Some(mount) = &self.mount
            && let Some(rest) = path
                .strip_prefix(mount.as_str())
                .and_then(|r| r.strip_prefix('/'))
        {
            return Ok((mount.clone(), rest));
        }
        match path.split_once('/') {
            Some((mount, rest)) if !rest.is_empty() => Ok((mount.to_owned(), rest)),
            _ => Err(Failure::new(format!(
                "`{path}` is not a KV path: it reads MOUNT/PATH, e.g. secret/elson/app"
            ))),
        }
    }

    fn kv_api(&self, kind: &str, path: &str) -> Result<String, Failure> {
        let (mount, rest) = self.split(path)?;
        let rest: Vec<String> = rest
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        Ok(format!("{mount}/{kind}/{}", rest.join("/")))
    }

    async fn kv_read(&self, path: &str, version: Option<i64>) -> Result<Option<KvSecret>, Failure> {
        let mut api = self.kv_api("data", path)?;
        if let Some(version) = version {
            api.push_str(&format!("?version={version}"));
        }
        let Some(body) = self.send(Method::GET, &api, None).await? else {
            return Ok(None);
        };
        let Some(fields) = body["data"]["data"].as_object() else {
            return Ok(None);
        };
        let data = fields
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        Ok(Some(KvSecret {
            data,
            metadata: body["data"]["metadata"].clone(),
        }))
    }

    /// The secret's current version, 0 when it does not exist yet.
    async fn kv_version(&self, path: &str) -> Result<i64, Failure> {
        let api = self.kv_api("metadata", path)?;
        let body = self.send(Method::GET, &api, None).await?;
        Ok(body
            .and_then(|b| b["data"]["current_version"].as_i64())
            .unwrap_or(0))
    }

    async fn kv_write(&self, path: &str, data: Value, cas: Option<i64>) -> Result<Value, Failure> {
        let cas = match cas {
            Some(cas) => cas,
            None => self.kv_version(path).await?,
        };
        let api = self.kv_api("data", path)?;
        let body = json!({ "data": data, "options": { "cas": cas } });
        match self.send(Method::POST, &api, Some(body)).await {
            Ok(Some(body)) => Ok(body["data"].clone()),
            Ok(None) => Err(Failure::new(format!("no KV v2 engine at {path}"))),
            Err(failure) if failure.message.contains("check-and-set") => Err(Failure::new(format!(
                "check-and-set failed: {path} is no longer at version {cas} (someone else wrote it); read it again and retry"
            ))
            .with_cause(failure.message)),
            Err(failure) => Err(failure),
        }
    }
}

/// Why Vault did not give an answer; `Forbidden` lets a stale login token be replaced.
enum Refused {
    Forbidden(Failure),
    Other(Failure),
}

impl Refused {
    fn into_failure(self) -> Failure {
        match self {
            Refused::Forbidden(failure) | Refused::Other(failure) => failure,
        }
    }
}

/// Vault's JSON answer; `None` for 404; its `errors` list for any other failure.
async fn answer(response: reqwest::Response) -> Result<Option<Value>, Refused> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| Refused::Other(secure_http::send_failed("Vault", err)))?;
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        return serde_json::from_str(&text).map(Some).map_err(|err| {
            Refused::Other(Failure::from_error("Vault answered with no JSON", &err))
        });
    }
    let errors = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body["errors"].as_array().cloned())
        .map(|errors| {
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| secure_http::excerpt(&text));
    let failure = Failure::new(format!("Vault answered {status}: {errors}"));
    if status == StatusCode::FORBIDDEN {
        return Err(Refused::Forbidden(failure));
    }
    Err(Refused::Other(failure))
}

/// How to authenticate: Kubernetes login when `[vault.kubernetes]` is set, else a token.
fn auth(ctx: &RunContext, settings: &Settings) -> Outcome<Auth> {
    if let Some(kubernetes) = &settings.kubernetes {
        let mut kubernetes = kubernetes.clone();
        kubernetes.token_file = super::settings::path(ctx, kubernetes.token_file);
        return Ok(Auth::Kubernetes(kubernetes));
    }
    let reference = settings.token.as_deref().unwrap_or("env:VAULT_TOKEN");
    if reference.starts_with("vault:") {
        return Err(super::settings::failed(
            ctx,
            "vault",
            Failure::new("[vault] token cannot itself come from Vault"),
        ));
    }
    let token = super::secret::resolve(ctx, reference).map_err(|err| {
        let message = format!(
            "vault: no token ({err}); set VAULT_TOKEN, [vault] token, or [vault.kubernetes] role"
        );
        Box::<rhai::EvalAltResult>::from(ctx.masker.mask(&message))
    })?;
    Ok(Auth::Token(token))
}

/// What `secret("vault:PATH#KEY")` finds at PATH: its fields, `None` when there is no secret.
pub fn lookup(ctx: &RunContext, path: &str) -> Outcome<Option<Found>> {
    if ctx.is_plan() {
        return Ok(None);
    }
    let vault = Vault::open(ctx)?;
    let path = path.to_owned();
    Call::new(ctx, "vault::read", Effect::Read, path.clone())
        .args(json!({ "address": vault.address.as_str() }))
        .run(|| None, async move {
            let secret = vault.kv_read(&path, None).await?;
            Ok(secret.map(|s| Found::Fields(s.data)))
        })
}

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("vault");
    kv_functions(&mut family, ctx);
    token_functions(&mut family, ctx);
    sys_functions(&mut family, ctx);
    family
}

fn kv_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "read",
        Some(Effect::Read),
        &["path: &str", "Map"],
        &[
            "Reads a KV v2 secret: `#{path, version, created_time, data}`, where every value in `data` is a `Secret`. The path starts with the engine's mount (`secret/elson/app`). Fails when there is no secret at the path.",
            "",
            "```rhai",
            "let app = vault::read(\"secret/elson/app\");",
            "check(\"SECRET_KEY is long enough\", || app.data.SECRET_KEY.len() >= 32);",
            "```",
        ],
        move |path: &str| read(&c, path, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "read",
        Some(Effect::Read),
        &["path: &str", "options: Map", "Map"],
        &[
            "`vault::read` with options: `version` (an older version of the secret).",
            "",
            "```rhai",
            "let before = vault::read(\"secret/elson/app\", #{version: 3});",
            "```",
        ],
        move |path: &str, options: Map| read(&c, path, &options),
    );
    let c = ctx.clone();
    family.function(
        "write",
        Some(Effect::Mutate),
        &["path: &str", "data: Map", "Map"],
        &[
            "Writes a new version of a KV v2 secret with check-and-set: the current version is read first and sent as `cas`, so a concurrent writer makes this fail instead of being overwritten. Values may be secrets or plain values; none are shown. Returns `#{version, created_time}`.",
            "",
            "```rhai",
            "let key = secrets::generate(48);",
            "vault::write(\"secret/elson/app\", #{SECRET_KEY: key});",
            "```",
        ],
        move |path: &str, data: Map| write(&c, path, data, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "write",
        Some(Effect::Mutate),
        &["path: &str", "data: Map", "options: Map", "Map"],
        &[
            "`vault::write` with options: `cas` (the version the write expects to replace, e.g. the one `vault::read` returned; 0 means the secret must not exist yet).",
            "",
            "```rhai",
            "let current = vault::read(\"secret/elson/app\");",
            "vault::write(\"secret/elson/app\", #{API_KEY: secrets::generate(40)}, #{cas: current.version});",
            "```",
        ],
        move |path: &str, data: Map, options: Map| write(&c, path, data, &options),
    );
}

fn token_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "token_ttl",
        Some(Effect::Read),
        &["i64"],
        &[
            "Seconds the current token has left (`auth/token/lookup-self`); 0 for a token that never expires.",
            "",
            "```rhai",
            "check(\"Vault token lasts the run\", || vault::token_ttl() > 3600);",
            "```",
        ],
        move || -> Outcome<i64> {
            let info = token_info(&c)?;
            Ok(info.get("ttl").and_then(|t| t.as_int().ok()).unwrap_or(0))
        },
    );
    let c = ctx.clone();
    family.function(
        "token_info",
        Some(Effect::Read),
        &["Map"],
        &[
            "The current token's `#{display_name, policies, ttl, renewable, expire_time, creation_ttl}` from `auth/token/lookup-self`; the token itself is never returned.",
            "",
            "```rhai",
            "check(\"Token has the app policy\", || vault::token_info().policies.contains(\"elson-backend\"));",
            "```",
        ],
        move || token_info(&c),
    );
}

fn sys_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "policies",
        Some(Effect::Read),
        &["Array"],
        &[
            "The names of the ACL policies (`sys/policies/acl`).",
            "",
            "```rhai",
            "check(\"Backend policy exists\", || vault::policies().contains(\"elson-backend\"));",
            "```",
        ],
        move || -> Outcome<Array> {
            let body = get(&c, "vault::policies", "sys/policies/acl?list=true")?;
            Ok(body["data"]["keys"]
                .as_array()
                .map(|keys| keys.iter().map(from_json).collect())
                .unwrap_or_default())
        },
    );
    let c = ctx.clone();
    family.function(
        "policy",
        Some(Effect::Read),
        &["name: &str", "String"],
        &[
            "The text (HCL) of one ACL policy.",
            "",
            "```rhai",
            "check(\"Backend may only read its secrets\", || !vault::policy(\"elson-backend\").contains(\"\\\"update\\\"\"));",
            "```",
        ],
        move |name: &str| -> Outcome<String> {
            let api = format!("sys/policies/acl/{}", utf8_percent_encode(name, SEGMENT));
            let body = get(&c, "vault::policy", &api)?;
            Ok(body["data"]["policy"].as_str().unwrap_or_default().to_owned())
        },
    );
    let c = ctx.clone();
    family.function(
        "auth_methods",
        Some(Effect::Read),
        &["Map"],
        &[
            "The enabled auth methods (`sys/auth`) by mount path: `#{\"kubernetes/\": #{type, description, accessor}}`.",
            "",
            "```rhai",
            "check(\"Kubernetes auth is enabled\", || vault::auth_methods().values().some(|m| m.type == \"kubernetes\"));",
            "```",
        ],
        move || auth_methods(&c),
    );
    let c = ctx.clone();
    family.function(
        "health",
        Some(Effect::Read),
        &["Map"],
        &[
            "The server's `#{initialized, sealed, standby, version}` (`sys/health`), which needs no token.",
            "",
            "```rhai",
            "check(\"Vault is unsealed\", || !vault::health().sealed);",
            "```",
        ],
        move || health(&c),
    );
}

fn read(ctx: &RunContext, path: &str, options: &Map) -> Outcome<Map> {
    let mut version = None;
    for (key, value) in options {
        match key.as_str() {
            "version" => {
                version = Some(
                    value
                        .as_int()
                        .map_err(|_| "vault::read: `version` takes an integer")?,
                )
            }
            other => {
                return Err(
                    format!("vault::read: unknown option `{other}` (known: version)").into(),
                );
            }
        }
    }
    if ctx.is_plan() {
        return Ok(planned_read(path));
    }
    let vault = Vault::open(ctx)?;
    let owned = path.to_owned();
    let secret = Call::new(ctx, "vault::read", Effect::Read, path)
        .args(json!({ "address": vault.address.as_str(), "version": version }))
        .run(|| None, async move {
            let found = vault.kv_read(&owned, version).await?;
            found
                .map(Some)
                .ok_or_else(|| Failure::new("no secret at this path"))
        })?;
    let Some(secret) = secret else {
        return Ok(planned_read(path));
    };
    let mut map = Map::new();
    map.insert("path".into(), path.into());
    let data: Map = secret
        .data
        .into_iter()
        .map(|(key, value)| {
            let name = format!("vault:{path}#{key}");
            (
                key.into(),
                Dynamic::from(super::secret::wrap(ctx, &name, value)),
            )
        })
        .collect();
    map.insert("data".into(), data.into());
    map.insert("version".into(), from_json(&secret.metadata["version"]));
    map.insert(
        "created_time".into(),
        from_json(&secret.metadata["created_time"]),
    );
    Ok(map)
}

/// What a plan sees for a read: no data, version 0.
fn planned_read(path: &str) -> Map {
    let mut map = Map::new();
    map.insert("path".into(), path.into());
    map.insert("data".into(), Map::new().into());
    map.insert("version".into(), Dynamic::from(0_i64));
    map.insert("planned".into(), true.into());
    map
}

fn write(ctx: &RunContext, path: &str, data: Map, options: &Map) -> Outcome<Map> {
    let mut cas = None;
    for (key, value) in options {
        match key.as_str() {
            "cas" => {
                cas = Some(
                    value
                        .as_int()
                        .map_err(|_| "vault::write: `cas` takes a version number")?,
                )
            }
            other => {
                return Err(format!("vault::write: unknown option `{other}` (known: cas)").into());
            }
        }
    }
    if data.is_empty() {
        return Err("vault::write: `data` is empty: a KV version needs at least one key".into());
    }
    let keys: Vec<String> = data.keys().map(|k| k.to_string()).collect();
    let body = plain_json(ctx, &data);
    if ctx.is_plan() {
        let mut map = Map::new();
        map.insert("version".into(), Dynamic::from(0_i64));
        map.insert("planned".into(), true.into());
        return Ok(map);
    }
    let vault = Vault::open(ctx)?;
    let owned = path.to_owned();
    let written = Call::new(ctx, "vault::write", Effect::Mutate, path)
        .args(json!({ "address": vault.address.as_str(), "keys": keys, "cas": cas }))
        .run(|| json!({ "version": 0, "planned": true }), async move {
            vault.kv_write(&owned, body, cas).await
        })?;
    let mut map = Map::new();
    map.insert("version".into(), from_json(&written["version"]));
    map.insert("created_time".into(), from_json(&written["created_time"]));
    if written["planned"] == Value::Bool(true) {
        map.insert("planned".into(), true.into());
    }
    Ok(map)
}

/// The data as JSON with secrets exposed, for the request body only.
fn plain_json(ctx: &RunContext, data: &Map) -> Value {
    let fields = data
        .iter()
        .map(|(key, value)| {
            let value = match value.clone().try_cast::<Secret>() {
                Some(secret) => Value::String(secret.expose().to_owned()),
                None => to_json(value),
            };
            if let Value::String(text) = &value {
                ctx.masker.add(text);
            }
            (key.to_string(), value)
        })
        .collect();
    Value::Object(fields)
}

/// One authenticated GET whose answer must exist.
fn get(ctx: &RunContext, name: &'static str, api: &str) -> Outcome<Value> {
    if ctx.is_plan() {
        return Ok(Value::Null);
    }
    let vault = Vault::open(ctx)?;
    let owned = api.to_owned();
    let target = api.split('?').next().unwrap_or(api).to_owned();
    Call::new(ctx, name, Effect::Read, target)
        .args(json!({ "address": vault.address.as_str() }))
        .run(|| Value::Null, async move {
            vault
                .send(Method::GET, &owned, None)
                .await?
                .ok_or_else(|| Failure::new("Vault answered 404 Not Found"))
        })
}

fn token_info(ctx: &RunContext) -> Outcome<Map> {
    let body = get(ctx, "vault::token_info", "auth/token/lookup-self")?;
    let data = &body["data"];
    if let Some(id) = data["id"].as_str() {
        ctx.masker.add(id);
    }
    let mut map = Map::new();
    for key in [
        "display_name",
        "policies",
        "ttl",
        "renewable",
        "expire_time",
        "creation_ttl",
    ] {
        map.insert(key.into(), from_json(&data[key]));
    }
    Ok(map)
}

fn auth_methods(ctx: &RunContext) -> Outcome<Map> {
    let body = get(ctx, "vault::auth_methods", "sys/auth")?;
    // Vault answers with the mounts both under `data` and, in older versions, at the top.
    let mounts = body["data"].as_object().or_else(|| body.as_object());
    let mut map = Map::new();
    for (path, mount) in mounts.into_iter().flatten() {
        if !path.ends_with('/') {
            continue;
        }
        let mut entry = Map::new();
        for key in ["type", "description", "accessor"] {
            entry.insert(key.into(), from_json(&mount[key]));
        }
        map.insert(path.as_str().into(), entry.into());
    }
    Ok(map)
}

fn health(ctx: &RunContext) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(Map::new());
    }
    let vault = Vault::open(ctx)?;
    // Ask for 200 in every state so the body says what the state is.
    let url = vault
        .url("sys/health?standbyok=true&sealedcode=200&uninitcode=200&perfstandbyok=true")
        .map_err(|f| super::settings::failed(ctx, "vault", f))?;
    let body = Call::new(ctx, "vault::health", Effect::Read, "sys/health")
        .args(json!({ "address": vault.address.as_str() }))
        .run(|| Value::Null, async move {
            let response = vault
                .client
                .get(url)
                .send()
                .await
                .map_err(|err| secure_http::send_failed("Vault", err))?;
            answer(response)
                .await
                .map_err(Refused::into_failure)?
                .ok_or_else(|| Failure::new("Vault answered 404 Not Found"))
        })?;
    let mut map = Map::new();
    for key in [
        "initialized",
        "sealed",
        "standby",
        "version",
        "cluster_name",
    ] {
        map.insert(key.into(), from_json(&body[key]));
    }
    Ok(map)
}
