//! Redis replies as script values: INFO text as a map of numbers and text, the flat
//! field lists of SENTINEL and ROLE as maps.

use rhai::{Array, Dynamic, Map};

/// Any reply as a script value: text stays text (bytes that are not UTF-8 become a blob),
/// numbers stay numbers, nil is `()`.
pub fn to_dynamic(value: &::redis::Value) -> Dynamic {
    use ::redis::Value;
    match value {
        Value::Nil => Dynamic::UNIT,
        Value::Int(i) => (*i).into(),
        Value::BulkString(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned().into(),
            Err(_) => Dynamic::from_blob(bytes.clone()),
        },
        Value::Array(items) | Value::Set(items) => {
            items.iter().map(to_dynamic).collect::<Array>().into()
        }
        Value::SimpleString(text) => text.clone().into(),
        Value::Okay => "OK".into(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| (text_of(k).into(), to_dynamic(v)))
            .collect::<Map>()
            .into(),
        Value::Attribute { data, .. } => to_dynamic(data),
        Value::Double(f) => (*f).into(),
        Value::Boolean(b) => (*b).into(),
        Value::VerbatimString { text, .. } => text.clone().into(),
        Value::BigNumber(n) => String::from_utf8_lossy(n).into_owned().into(),
        Value::Push { data, .. } => data.iter().map(to_dynamic).collect::<Array>().into(),
        Value::ServerError(err) => err.to_string().into(),
        other => format!("{other:?}").into(),
    }
}

/// A reply as plain text.
pub fn text_of(value: &::redis::Value) -> String {
    let dynamic = to_dynamic(value);
    if dynamic.is_unit() {
        String::new()
    } else {
        dynamic.to_string()
    }
}

/// One INFO value: an integer, a float, a nested map (`keys=1,expires=0`) or text.
pub fn info_value(text: &str) -> Dynamic {
    if let Ok(i) = text.parse::<i64>() {
        return i.into();
    }
    let numeric = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'));
    if numeric && let Ok(f) = text.parse::<f64>() {
        return f.into();
    }
    if text.contains('=') && !text.contains(' ') {
        return text
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.into(), info_value(v)))
            .collect::<Map>()
            .into();
    }
    text.to_owned().into()
}

/// The text of INFO as one flat map of its fields.
pub fn parse_info(text: &str) -> Map {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.into(), info_value(value)))
        .collect()
}

/// A field list (`[name, value, name, value, ...]` or a RESP3 map) as a map; names get `_`
/// for `-`, numbers become numbers and `flags` a list.
pub fn fields(value: &::redis::Value) -> Map {
    use ::redis::Value;
    let pairs: Vec<(String, String)> = match value {
        Value::Array(items) => items
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| (text_of(&pair[0]), text_of(&pair[1])))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| (text_of(k), text_of(v)))
            .collect(),
        _ => Vec::new(),
    };
    let mut map = Map::new();
    for (key, text) in pairs {
        let value = if key == "flags" {
            text.split(',')
                .map(|f| Dynamic::from(f.to_owned()))
                .collect::<Array>()
                .into()
        } else {
            match text.parse::<i64>() {
                Ok(i) => i.into(),
                Err(_) => text.into(),
            }
        };
        map.insert(key.replace('-', "_").into(), value);
    }
    map
}

/// A list of field lists as maps.
pub fn field_lists(value: &::redis::Value) -> Array {
    match value {
        ::redis::Value::Array(items) => items.iter().map(|i| fields(i).into()).collect(),
        _ => Array::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::Value;

    #[test]
    fn info_text_becomes_numbers_maps_and_text() {
        let info = parse_info(
            "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n# Memory\r\nmem_fragmentation_ratio:1.25\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n",
        );
        assert_eq!(info["redis_version"].to_string(), "7.0.15");
        assert_eq!(info["uptime_in_seconds"].as_int(), Ok(42));
        assert_eq!(info["mem_fragmentation_ratio"].as_float(), Ok(1.25));
        let db0 = info["db0"].clone().cast::<Map>();
        assert_eq!(db0["keys"].as_int(), Ok(3));
    }

    #[test]
    fn sentinel_field_lists_become_maps() {
        let reply = Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(b"mymaster".to_vec()),
            Value::BulkString(b"flags".to_vec()),
            Value::BulkString(b"master,disconnected".to_vec()),
            Value::BulkString(b"num-slaves".to_vec()),
            Value::BulkString(b"1".to_vec()),
        ]);
        let map = fields(&reply);
        assert_eq!(map["name"].to_string(), "mymaster");
        assert_eq!(map["num_slaves"].as_int(), Ok(1));
        assert_eq!(map["flags"].clone().cast::<Array>().len(), 2);
    }
}
