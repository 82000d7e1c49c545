//! Kubernetes objects as script maps and back. A Secret's values reach scripts only as
//! `Secret` values (registered for masking) and the transcript only ever shows them masked.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use super::discovery::Resource;
use crate::engine::context::RunContext;
use crate::engine::convert::from_json;
use crate::secret::{MASK, Secret};

/// Where kubectl keeps the last applied object, which for a Secret holds its values.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object from the server as a script map, with `apiVersion` and `kind` filled in (list
/// items come without them).
pub fn to_script(ctx: &RunContext, mut object: Value, resource: &Resource) -> Dynamic {
    if let Some(map) = object.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(resource.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(resource.kind.clone()));
    }
    if !resource.is_secret() {
        return from_json(&object);
    }
    secret_to_script(ctx, object)
}

fn secret_to_script(ctx: &RunContext, mut object: Value) -> Dynamic {
    let data = object.as_object_mut().and_then(|map| map.remove("data"));
    hide_last_applied(&mut object);
    let reference = reference_of(&object);
    let mut script = from_json(&object);
    let Some(Value::Object(data)) = data else {
        return script;
    };
    let values: Map = data
        .iter()
        .map(|(key, encoded)| {
            let text = decode(encoded.as_str().unwrap_or_default());
            ctx.masker.add(&text);
            let secret = Secret::new(format!("{reference}#{key}"), text);
            (key.as_str().into(), Dynamic::from(secret))
        })
        .collect();
    if let Some(mut map) = script.write_lock::<Map>() {
        map.insert("data".into(), values.into());
    }
    script
}

/// `k8s:namespace/name`, the reference a Secret's values are named by.
fn reference_of(object: &Value) -> String {
    let field = |name: &str| {
        object
            .pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    format!("k8s:{}/{}", field("namespace"), field("name"))
}

fn hide_last_applied(object: &mut Value) {
    let annotations = object.pointer_mut("/metadata/annotations");
    if let Some(annotation) = annotations.and_then(|a| a.get_mut(LAST_APPLIED)) {
        *annotation = Value::String(MASK.to_owned());
    }
}

/// A Secret data value as text; binary values become text with replacement characters.
pub fn decode(encoded: &str) -> String {
    match STANDARD.decode(encoded.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// A script map as the object to send. Secret values are exposed here, at the moment they
/// go to the client; under a Secret's `data` they are base64-encoded as the API expects.
pub fn to_wire(value: &Dynamic) -> Value {
    let is_secret_object = value
        .read_lock::<Map>()
        .is_some_and(|map| map.get("kind").is_some_and(|k| k.to_string() == "Secret"));
    wire(
        value,
        if is_secret_object {
            Place::SecretObject
        } else {
            Place::Other
        },
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Place {
    Other,
    /// The Secret object itself.
    SecretObject,
    /// Its `data` map.
    SecretData,
    /// One value in that map.
    SecretValue,
}

fn wire(value: &Dynamic, place: Place) -> Value {
    if let Some(secret) = value.clone().try_cast::<Secret>() {
        return match place {
            Place::SecretValue => Value::String(STANDARD.encode(secret.expose())),
            _ => Value::String(secret.expose().to_owned()),
        };
    }
    if let Some(map) = value.read_lock::<Map>() {
        let entries = map.iter().map(|(key, item)| {
            let inner = match (place, key.as_str()) {
                (Place::SecretObject, "data") => Place::SecretData,
                (Place::SecretData, _) => Place::SecretValue,
                _ => Place::Other,
            };
            (key.to_string(), wire(item, inner))
        });
        return Value::Object(entries.collect());
    }
    if let Some(array) = value.read_lock::<Array>() {
        return Value::Array(array.iter().map(|item| wire(item, Place::Other)).collect());
    }
    crate::engine::convert::to_json(value)
}

/// An object as the transcript shows it: a Secret's values are masked whatever their form.
pub fn shown(mut object: Value) -> Value {
    let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
    if is_secret {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(values)) = object.get_mut(field) {
                values
                    .values_mut()
                    .for_each(|v| *v = Value::String(MASK.to_owned()));
            }
        }
        hide_last_applied(&mut object);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_out_exposed_and_encoded_only_under_a_secrets_data() {
        let mut data = Map::new();
        data.insert("KEY".into(), Dynamic::from(Secret::new("s", "hunter22")));
        let mut object = Map::new();
        object.insert("kind".into(), "Secret".into());
        object.insert("data".into(), data.into());
        let wire = to_wire(&object.into());
        assert_eq!(wire["data"]["KEY"], STANDARD.encode("hunter22"));

        let mut env = Map::new();
        env.insert("value".into(), Dynamic::from(Secret::new("s", "hunter22")));
        let mut object = Map::new();
        object.insert("kind".into(), "ConfigMap".into());
        object.insert("data".into(), env.into());
        assert_eq!(to_wire(&object.into())["data"]["value"], "hunter22");
    }

    #[test]
    fn the_transcript_never_sees_a_secrets_values() {
        let object = serde_json::json!({
            "kind": "Secret",
            "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"K\":\"aHVudGVyMjI=\"}}"}},
            "data": {"K": "aHVudGVyMjI="},
            "stringData": {"L": "plain"}
        });
        let text = shown(object).to_string();
        assert!(
            !text.contains("aHVudGVyMjI=") && !text.contains("plain"),
            "{text}"
        );
    }
}
