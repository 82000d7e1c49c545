//! Any kind the API server serves, by name: get, list, server-side apply, patch, delete, and
//! Secrets made from secret values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use super::client::Connection;
use super::discovery::Resource;
use super::objects::{shown, to_script, to_wire};
use super::options::{Options, Outcome, usage};
use super::{K8s, namespace_or_default};
use crate::engine::binding::{Failure, Family};
use crate::engine::convert::to_json;
use crate::secret::Secret;
use crate::transcript::event::Effect;

/// The field manager of every write, as the API server records it.
pub const FIELD_MANAGER: &str = "runbook";

pub fn register(family: &mut Family, k8s: &K8s) {
    register_reads(family, k8s);
    register_writes(family, k8s);
    register_secret(family, k8s);
}

fn register_reads(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "get",
        Some(Effect::Read),
        &["kind: &str", "namespace: &str", "name: &str", "Dynamic"],
        &[
            "One object as a map, or `()` when it does not exist. `kind` is a kind, plural or short name (`deployment`, `deploy`) or `group/version/Kind`; `namespace` is ignored for cluster-wide kinds and `\"\"` means the context's default. A Secret's `data` values come as secrets.",
            "",
            "```rhai",
            "let deployment = k8s::get(\"deployment\", \"elson\", \"elson-backend\");",
            "if deployment == () { fail(\"elson-backend is missing\"); }",
            "```",
        ],
        move |kind: &str, namespace: &str, name: &str| get(&k, kind, namespace, name),
    );
    let k = k8s.clone();
    family.function(
        "list",
        Some(Effect::Read),
        &["kind: &str", "namespace: &str", "Array"],
        &[
            "Every object of a kind in a namespace (`\"*\"`: all namespaces), as maps.",
            "",
            "```rhai",
            "let quotas = k8s::list(\"resourcequota\", \"elson\");",
            "```",
        ],
        move |kind: &str, namespace: &str| list(&k, kind, namespace, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "list",
        Some(Effect::Read),
        &["kind: &str", "namespace: &str", "options: Map", "Array"],
        &[
            "`k8s::list` with options: `labels` (a selector as text, `app=x,tier!=db`, or a map), `fields` (a field selector, `status.phase=Running`), `limit` (at most this many).",
            "",
            "```rhai",
            "let running = k8s::list(\"pods\", \"elson\", #{labels: #{app: \"elson-backend\"}, fields: \"status.phase=Running\"});",
            "```",
        ],
        move |kind: &str, namespace: &str, options: Map| list(&k, kind, namespace, &options),
    );
}

fn register_writes(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "apply",
        Some(Effect::Mutate),
        &["object: Map", "Map"],
        &[
            "Creates or updates an object by server-side apply (field manager `runbook`) and returns it as stored. The map needs `apiVersion`, `kind` and `metadata.name` (and `metadata.namespace` for namespaced kinds). A dry run asks the server to validate it without storing it and returns the object as it would be.",
            "",
            "```rhai",
            "k8s::apply(#{apiVersion: \"v1\", kind: \"ConfigMap\", metadata: #{name: \"release\", namespace: \"elson\"}, data: #{version: \"1.4.2\"}});",
            "```",
        ],
        move |object: Map| apply(&k, object, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "apply",
        Some(Effect::Mutate),
        &["object: Map", "options: Map", "Map"],
        &[
            "`k8s::apply` with options: `force: true` takes over fields another manager owns instead of failing with a conflict.",
            "",
            "```rhai",
            "k8s::apply(object, #{force: true});",
            "```",
        ],
        move |object: Map, options: Map| apply(&k, object, &options),
    );
    let k = k8s.clone();
    family.function(
        "patch",
        Some(Effect::Mutate),
        &[
            "kind: &str",
            "namespace: &str",
            "name: &str",
            "patch: Dynamic",
            "Map",
        ],
        &[
            "Patches an object with a JSON merge patch (a map) and returns it as stored.",
            "",
            "```rhai",
            "k8s::patch(\"deployment\", \"elson\", \"elson-backend\", #{spec: #{replicas: 4}});",
            "```",
        ],
        move |kind: &str, namespace: &str, name: &str, patch_value: Dynamic| {
            patch(&k, [kind, namespace, name], patch_value, &Map::new())
        },
    );
    let k = k8s.clone();
    family.function(
        "patch",
        Some(Effect::Mutate),
        &["kind: &str", "namespace: &str", "name: &str", "patch: Dynamic", "options: Map", "Map"],
        &[
            "`k8s::patch` with `type`: `merge` (the default), `strategic` (lists such as containers merge by name) or `json` (an array of RFC 6902 operations).",
            "",
            "```rhai",
            "k8s::patch(\"deployment\", \"elson\", \"elson-backend\", [#{op: \"replace\", path: \"/spec/replicas\", value: 4}], #{type: \"json\"});",
            "```",
        ],
        move |kind: &str, namespace: &str, name: &str, patch_value: Dynamic, options: Map| {
            patch(&k, [kind, namespace, name], patch_value, &options)
        },
    );
    let k = k8s.clone();
    family.function(
        "delete",
        Some(Effect::Mutate),
        &["kind: &str", "namespace: &str", "name: &str", "bool"],
        &[
            "Deletes an object; returns `false` when it did not exist.",
            "",
            "```rhai",
            "k8s::delete(\"pod\", \"elson\", \"elson-backend-6d8f7c9b5d-4xkqz\");",
            "```",
        ],
        move |kind: &str, namespace: &str, name: &str| delete(&k, kind, namespace, name),
    );
}

fn register_secret(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "create_secret",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "values: Map", "Map"],
        &[
            "Creates a Secret (type `Opaque`) from a map of keys to secrets or text, or sets those keys of an existing one (server-side apply, field manager `runbook`). Values are never shown anywhere; returns `#{namespace, name, type, keys}`.",
            "",
            "```rhai",
            "k8s::create_secret(\"elson\", \"backend-secrets\", #{SECRET_KEY: secret(\"SECRET_KEY\"), DATABASE_URL: secret(\"DATABASE_URL\")});",
            "```",
        ],
        move |namespace: &str, name: &str, values: Map| {
            create_secret(&k, namespace, name, values, &Map::new())
        },
    );
    let k = k8s.clone();
    family.function(
        "create_secret",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "values: Map", "options: Map", "Map"],
        &[
            "`k8s::create_secret` with `type`, e.g. `kubernetes.io/dockerconfigjson`.",
            "",
            "```rhai",
            "k8s::create_secret(\"elson\", \"registry\", #{\".dockerconfigjson\": secret(\"REGISTRY_AUTH\")}, #{type: \"kubernetes.io/dockerconfigjson\"});",
            "```",
        ],
        move |namespace: &str, name: &str, values: Map, options: Map| {
            create_secret(&k, namespace, name, values, &options)
        },
    );
}

/// A dynamic API for a resource in a namespace (`""`: the context's default; `"*"`: all).
pub fn api(connection: &Connection, resource: &Resource, namespace: &str) -> Api<DynamicObject> {
    let client = connection.client.clone();
    let api_resource = resource.api_resource();
    if !resource.namespaced || namespace == "*" {
        return Api::all_with(client, &api_resource);
    }
    let namespace = namespace_or_default(connection, namespace);
    Api::namespaced_with(client, &namespace, &api_resource)
}

/// `namespace/name`, or `name` alone where no namespace was given.
pub fn path(namespace: &str, name: &str) -> String {
    match namespace {
        "" => name.to_owned(),
        _ => format!("{namespace}/{name}"),
    }
}

fn target(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {}", path(namespace, name))
}

fn value_of(object: &impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_value(object).map_err(|err| Failure::from_error("unreadable object", &err))
}

fn get(k8s: &K8s, kind: &str, namespace: &str, name: &str) -> Outcome<Dynamic> {
    let args = json!({ "kind": kind, "namespace": namespace, "name": name });
    k8s.read(
        "k8s::get",
        target(kind, namespace, name),
        args,
        || Dynamic::UNIT,
        async {
            let (connection, resource) = k8s.cluster.resource(kind).await?;
            let found = api(connection, &resource, namespace).get_opt(name).await;
            let action = format!("get {} {}", resource.kind, path(namespace, name));
            match found.map_err(|e| connection.fail(action, e))? {
                Some(object) => Ok(to_script(&k8s.ctx, value_of(&object)?, &resource)),
                None => Ok(Dynamic::UNIT),
            }
        },
    )
}

fn list(k8s: &K8s, kind: &str, namespace: &str, options: &Map) -> Outcome<Array> {
    let options = Options::new("k8s::list", options, &["labels", "fields", "limit"])?;
    let params = ListParams {
        label_selector: options.selector("labels")?,
        field_selector: options.string("fields")?,
        limit: options
            .int("limit")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        ..ListParams::default()
    };
    let args = json!({
        "kind": kind, "namespace": namespace,
        "labels": params.label_selector, "fields": params.field_selector, "limit": params.limit,
    });
    let target = format!(
        "{kind} in {}",
        if namespace.is_empty() {
            "(default)"
        } else {
            namespace
        }
    );
    k8s.read("k8s::list", target, args, Array::new, async {
        let (connection, resource) = k8s.cluster.resource(kind).await?;
        let listed = api(connection, &resource, namespace).list(&params).await;
        let action = format!("list {} in {namespace}", resource.plural);
        let listed = listed.map_err(|e| connection.fail(action, e))?;
        listed
            .items
            .iter()
            .map(|item| Ok(to_script(&k8s.ctx, value_of(item)?, &resource)))
            .collect()
    })
}

/// `metadata.name`, `metadata.namespace`, `apiVersion` and `kind` of an object to write.
struct Identity {
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
}

fn identity(binding: &str, object: &Value) -> Outcome<Identity> {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let required = |pointer: &str, what: &str| {
        field(pointer).ok_or_else(|| usage(binding, format!("the object has no {what}")))
    };
    Ok(Identity {
        api_version: required("/apiVersion", "`apiVersion`")?,
        kind: required("/kind", "`kind`")?,
        name: required("/metadata/name", "`metadata.name`")?,
        namespace: field("/metadata/namespace").unwrap_or_default(),
    })
}

fn apply(k8s: &K8s, object: Map, options: &Map) -> Outcome<Map> {
    let options = Options::new("k8s::apply", options, &["force"])?;
    let force = options.bool("force")?.unwrap_or(false);
    let object: Dynamic = object.into();
    let wire = to_wire(&object);
    let id = identity("k8s::apply", &wire)?;
    let target = target(&id.kind, &id.namespace, &id.name);
    // The transcript gets the script's view, where secrets are masked, not the wire's.
    let args = json!({ "object": shown(to_json(&object)), "force": force });
    k8s.mutate("k8s::apply", target, args, Map::new, show_map, async {
        let (connection, resource) = k8s.cluster.resource_of(&id.api_version, &id.kind).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        params.dry_run = k8s.dry_run();
        let api = api(connection, &resource, &id.namespace);
        let stored = api.patch(&id.name, &params, &Patch::Apply(&wire)).await;
        let action = format!("apply {} {}", resource.kind, target_of(&id));
        let stored = stored.map_err(|e| connection.fail(action, e))?;
        script_map(k8s, &stored, &resource)
    })
}

fn target_of(id: &Identity) -> String {
    path(&id.namespace, &id.name)
}

fn show_map(map: &Map) -> Value {
    to_json(&map.clone().into())
}

fn script_map(k8s: &K8s, object: &DynamicObject, resource: &Resource) -> Result<Map, Failure> {
    let value = to_script(&k8s.ctx, value_of(object)?, resource);
    Ok(value.try_cast::<Map>().unwrap_or_default())
}

/// The three kinds of patch the API server takes.
#[derive(Clone, Copy)]
enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    /// The `type` option, checked against the shape of the patch.
    fn of(options: &Map, body: &Value) -> Outcome<Self> {
        let options = Options::new("k8s::patch", options, &["type"])?;
        let name = options.string("type")?.unwrap_or_else(|| "merge".into());
        let kind = match name.as_str() {
            "merge" => PatchType::Merge,
            "strategic" => PatchType::Strategic,
            "json" => PatchType::Json,
            other => {
                let message = format!("unknown patch type `{other}` (merge, strategic or json)");
                return Err(usage("k8s::patch", message));
            }
        };
        let (fits, shape) = match kind {
            PatchType::Json => (body.is_array(), "an array of operations"),
            _ => (body.is_object(), "a map"),
        };
        if !fits {
            return Err(usage("k8s::patch", format!("a `{name}` patch is {shape}")));
        }
        Ok(kind)
    }

    fn name(self) -> &'static str {
        match self {
            PatchType::Merge => "merge",
            PatchType::Strategic => "strategic",
            PatchType::Json => "json",
        }
    }
}

fn patch(k8s: &K8s, at: [&str; 3], patch: Dynamic, options: &Map) -> Outcome<Map> {
    let [kind, namespace, name] = at;
    let body = to_wire(&patch);
    let patch_type = PatchType::of(options, &body)?;
    let args = json!({
        "kind": kind, "namespace": namespace, "name": name,
        "type": patch_type.name(), "patch": to_json(&patch),
    });
    let target = target(kind, namespace, name);
    k8s.mutate("k8s::patch", target, args, Map::new, show_map, async {
        let (connection, resource) = k8s.cluster.resource(kind).await?;
        let action = format!("patch {} {}", resource.kind, path(namespace, name));
        let api = api(connection, &resource, namespace);
        let stored = send_patch(k8s, &api, name, patch_type, &body).await;
        let stored = stored.map_err(|e| connection.fail(action, e))?;
        script_map(k8s, &stored, &resource)
    })
}

async fn send_patch(
    k8s: &K8s,
    api: &Api<DynamicObject>,
    name: &str,
    patch_type: PatchType,
    body: &Value,
) -> Result<DynamicObject, kube::Error> {
    let params = PatchParams {
        dry_run: k8s.dry_run(),
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match patch_type {
        PatchType::Json => json_patch(k8s, api, name, body).await,
        PatchType::Strategic => api.patch(name, &params, &Patch::Strategic(body)).await,
        PatchType::Merge => api.patch(name, &params, &Patch::Merge(body)).await,
    }
}

/// A JSON patch (RFC 6902), sent as such: kube's typed form would need another crate for what
/// is only a content type.
async fn json_patch(
    k8s: &K8s,
    api: &Api<DynamicObject>,
    name: &str,
    body: &Value,
) -> Result<DynamicObject, kube::Error> {
    let mut query = format!("fieldManager={FIELD_MANAGER}");
    if k8s.dry_run() {
        query.push_str("&dryRun=All");
    }
    let uri = format!("{}/{name}?{query}", api.resource_url());
    let bytes = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
    let request = http::Request::patch(uri)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(bytes)
        .map_err(kube::Error::HttpError)?;
    let client: kube::Client = api.clone().into_client();
    client.request(request).await
}

fn delete(k8s: &K8s, kind: &str, namespace: &str, name: &str) -> Outcome<bool> {
    let args = json!({ "kind": kind, "namespace": namespace, "name": name });
    let target = target(kind, namespace, name);
    k8s.mutate("k8s::delete", target, args, || true, |d| json!(d), async {
        let (connection, resource) = k8s.cluster.resource(kind).await?;
        let params = DeleteParams {
            dry_run: k8s.dry_run(),
            ..DeleteParams::default()
        };
        let deleted = api(connection, &resource, namespace)
            .delete(name, &params)
            .await;
        let action = format!("delete {} {}", resource.kind, path(namespace, name));
        match deleted.map_err(|e| connection.fail(action, e)) {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error.into()),
        }
    })
}

fn create_secret(
    k8s: &K8s,
    namespace: &str,
    name: &str,
    values: Map,
    options: &Map,
) -> Outcome<Map> {
    let options = Options::new("k8s::create_secret", options, &["type"])?;
    let kind = options.string("type")?.unwrap_or_else(|| "Opaque".into());
    let mut data = serde_json::Map::new();
    for (key, value) in &values {
        let text = match value.clone().try_cast::<Secret>() {
            Some(secret) => secret.expose().to_owned(),
            None => value.to_string(),
        };
        k8s.ctx.masker.add(&text);
        data.insert(key.to_string(), Value::String(STANDARD.encode(text)));
    }
    let keys: Vec<String> = values.keys().map(|k| k.to_string()).collect();
    let object = json!({
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": { "name": name, "namespace": namespace }, "data": data,
    });
    let args = json!({ "namespace": namespace, "name": name, "type": kind, "keys": keys });
    let target = target("secret", namespace, name);
    k8s.mutate(
        "k8s::create_secret",
        target,
        args,
        Map::new,
        show_map,
        async {
            let connection = k8s.cluster.connect().await?;
            let mut params = PatchParams::apply(FIELD_MANAGER).force();
            params.dry_run = k8s.dry_run();
            let namespace = namespace_or_default(connection, namespace);
            let api: Api<DynamicObject> = Api::namespaced_with(
                connection.client.clone(),
                &namespace,
                &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            );
            let stored = api.patch(name, &params, &Patch::Apply(&object)).await;
            let action = format!("create Secret {namespace}/{name}");
            let stored = stored.map_err(|e| connection.fail(action, e))?;
            Ok(secret_summary(&stored, &namespace, keys))
        },
    )
}

/// What `create_secret` returns: where the Secret is and which keys it set, never values.
fn secret_summary(stored: &DynamicObject, namespace: &str, keys: Vec<String>) -> Map {
    let mut map = Map::new();
    let name = stored.metadata.name.clone().unwrap_or_default();
    let kind = stored
        .data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Opaque");
    map.insert("namespace".into(), namespace.to_owned().into());
    map.insert("name".into(), name.into());
    map.insert("type".into(), kind.to_owned().into());
    let keys: Array = keys.into_iter().map(Dynamic::from).collect();
    map.insert("keys".into(), keys.into());
    map
}
