//! `vault::`: HashiCorp Vault through its HTTP API: KV v2 secrets (read, and write with
//! check-and-set), the token's own TTL, ACL policies and enabled auth methods. The token
//! comes from `[vault] token` or `VAULT_TOKEN`, or from Kubernetes auth.

mod client;

use std::sync::Arc;

use percent_encoding::utf8_percent_encode;
use reqwest::Method;
use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use self::client::{SEGMENT, Vault};
use super::secret::Found;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::engine::convert::{from_json, to_json};
use crate::secret::Secret;
use crate::transcript::event::Effect;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

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
    let body = Call::new(ctx, "vault::health", Effect::Read, "sys/health")
        .args(json!({ "address": vault.address.as_str() }))
        .run(|| Value::Null, async move { vault.health().await })?;
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
