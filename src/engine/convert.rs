//! Conversions between script values and JSON, for the transcript and for bindings.

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use crate::secret::{MASK, Secret};

/// A script value as JSON. Secrets become the mask; other host objects their type name.
pub fn to_json(value: &Dynamic) -> Value {
    if value.is_unit() {
        return Value::Null;
    }
    if let Some(b) = value.clone().try_cast::<bool>() {
        return Value::Bool(b);
    }
    if let Ok(i) = value.as_int() {
        return Value::from(i);
    }
    if let Ok(f) = value.as_float() {
        return serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    if value.is_string() || value.is_char() {
        return Value::String(value.to_string());
    }
    if value.is_array() {
        let array = value
            .read_lock::<Array>()
            .map(|a| a.iter().map(to_json).collect());
        return Value::Array(array.unwrap_or_default());
    }
    if value.is_map() {
        let map = value.read_lock::<Map>().map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect::<serde_json::Map<_, _>>()
        });
        return Value::Object(map.unwrap_or_default());
    }
    if value.is::<Secret>() {
        return Value::String(MASK.to_owned());
    }
    if value.is_blob() {
        let len = value.read_lock::<rhai::Blob>().map_or(0, |b| b.len());
        return Value::String(format!("<{len} bytes>"));
    }
    Value::String(format!("<{}>", value.type_name()))
}

/// JSON as a script value: objects become maps, numbers integers where they fit.
pub fn from_json(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(items) => items.iter().map(from_json).collect::<Array>().into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_json(v)))
            .collect::<Map>()
            .into(),
    }
}

/// A TOML value as a script value.
pub fn from_toml(value: &toml::Value) -> Dynamic {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.iter().map(from_toml).collect::<Array>().into(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_toml(v)))
            .collect::<Map>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_plain_values_and_masks_secrets() {
        let json = serde_json::json!({"n": 3, "f": 1.5, "ok": true, "list": ["a", null]});
        assert_eq!(to_json(&from_json(&json)), json);
        let secret = Dynamic::from(Secret::new("env:X", "value-that-leaks"));
        assert_eq!(to_json(&secret), Value::String("***".into()));
    }
}
