//! The Vault client: settings from `[vault]`, the token (configured, or from Kubernetes
//! login), and the HTTP requests of the KV v2 and sys endpoints the bindings use.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bindings::secure_http;
use crate::engine::binding::Failure;
use crate::engine::context::RunContext;
use crate::secret::Secret;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// Characters escaped inside one path segment of a Vault API URL.
pub(super) const SEGMENT: &AsciiSet = &CONTROLS
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
pub(super) struct Vault {
    pub(super) address: Url,
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
pub(super) struct KvSecret {
    pub(super) data: BTreeMap<String, String>,
    pub(super) metadata: Value,
}

impl Vault {
    /// Reads the settings and the token reference; nothing is sent yet.
    pub(super) fn open(ctx: &RunContext) -> Outcome<Self> {
        let fail = |failure| crate::bindings::settings::failed(ctx, "vault", failure);
        let settings: Settings = crate::bindings::settings::read(ctx, "vault").map_err(fail)?;
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
        let ca_cert = ca_cert.map(|path| crate::bindings::settings::path(ctx, path));
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
    pub(super) async fn send(
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

    pub(super) async fn kv_read(
        &self,
        path: &str,
        version: Option<i64>,
    ) -> Result<Option<KvSecret>, Failure> {
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

    pub(super) async fn kv_write(
        &self,
        path: &str,
        data: Value,
        cas: Option<i64>,
    ) -> Result<Value, Failure> {
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

    /// `sys/health`, which needs no token. It is asked to answer 200 in every state, so the
    /// body says what the state is.
    pub(super) async fn health(&self) -> Result<Value, Failure> {
        let url =
            self.url("sys/health?standbyok=true&sealedcode=200&uninitcode=200&perfstandbyok=true")?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| secure_http::send_failed("Vault", err))?;
        answer(response)
            .await
            .map_err(Refused::into_failure)?
            .ok_or_else(|| Failure::new("Vault answered 404 Not Found"))
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
        kubernetes.token_file = crate::bindings::settings::path(ctx, kubernetes.token_file);
        return Ok(Auth::Kubernetes(kubernetes));
    }
    let reference = settings.token.as_deref().unwrap_or("env:VAULT_TOKEN");
    if reference.starts_with("vault:") {
        return Err(crate::bindings::settings::failed(
            ctx,
            "vault",
            Failure::new("[vault] token cannot itself come from Vault"),
        ));
    }
    let token = crate::bindings::secret::resolve(ctx, reference).map_err(|err| {
        let message = format!(
            "vault: no token ({err}); set VAULT_TOKEN, [vault] token, or [vault.kubernetes] role"
        );
        Box::<rhai::EvalAltResult>::from(ctx.masker.mask(&message))
    })?;
    Ok(Auth::Token(token))
}
