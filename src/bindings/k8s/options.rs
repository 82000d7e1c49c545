//! Checking the options maps and arguments scripts pass to `k8s::` functions, with errors that
//! name the function and the unknown or mistyped key.

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Map};

pub type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// A usage error: `k8s::name: message`.
pub fn usage(binding: &str, message: impl std::fmt::Display) -> Box<EvalAltResult> {
    format!("{binding}: {message}").into()
}

/// An options map whose keys were checked against the ones a function knows.
pub struct Options<'a> {
    binding: &'static str,
    map: &'a Map,
}

impl<'a> Options<'a> {
    pub fn new(binding: &'static str, map: &'a Map, known: &[&str]) -> Outcome<Self> {
        if let Some(key) = map.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(usage(
                binding,
                format!("unknown option `{key}` (known: {})", known.join(", ")),
            ));
        }
        Ok(Self { binding, map })
    }

    pub fn string(&self, key: &str) -> Outcome<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) if value.is_string() => Ok(Some(value.to_string())),
            Some(_) => Err(self.wrong(key, "text")),
        }
    }

    pub fn int(&self, key: &str) -> Outcome<Option<i64>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_int()
                .map(Some)
                .map_err(|_| self.wrong(key, "a whole number")),
        }
    }

    pub fn bool(&self, key: &str) -> Outcome<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_bool()
                .map(Some)
                .map_err(|_| self.wrong(key, "true or false")),
        }
    }

    /// Seconds as a number, or a duration such as `"90s"`, `"10m"`, `"1h"`.
    pub fn duration(&self, key: &str) -> Outcome<Option<Duration>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => duration(value)
                .map(Some)
                .ok_or_else(|| self.wrong(key, "seconds or a duration like \"10m\"")),
        }
    }

    /// A label selector given as text (`app=x,tier!=db`) or as a map of equalities.
    pub fn selector(&self, key: &str) -> Outcome<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => selector(value)
                .map(Some)
                .map_err(|m| usage(self.binding, m)),
        }
    }

    fn wrong(&self, key: &str, what: &str) -> Box<EvalAltResult> {
        usage(self.binding, format!("`{key}` takes {what}"))
    }
}

/// A label selector from text or a map of `label: value`.
pub fn selector(value: &Dynamic) -> Result<String, String> {
    if value.is_string() {
        return Ok(value.to_string());
    }
    let Some(map) = value.read_lock::<Map>() else {
        return Err("a selector is text (`app=elson-backend`) or a map of labels".into());
    };
    let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    Ok(pairs.join(","))
}

fn duration(value: &Dynamic) -> Option<Duration> {
    if let Ok(seconds) = value.as_int() {
        return u64::try_from(seconds).ok().map(Duration::from_secs);
    }
    if let Ok(seconds) = value.as_float() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let text = value.clone().into_string().ok()?;
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(Duration::from_secs(number * factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_or_text_with_a_unit() {
        assert_eq!(
            duration(&Dynamic::from(90_i64)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(duration(&"10m".into()), Some(Duration::from_secs(600)));
        assert_eq!(duration(&"2h".into()), Some(Duration::from_secs(7200)));
        assert_eq!(duration(&"soon".into()), None);
        assert_eq!(duration(&Dynamic::from(-1_i64)), None);
    }

    #[test]
    fn unknown_options_are_named_with_the_known_ones() {
        let mut map = Map::new();
        map.insert("tial".into(), Dynamic::from(5_i64));
        let error = Options::new("k8s::logs", &map, &["tail", "since"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("k8s::logs: unknown option `tial` (known: tail, since)"));
    }

    #[test]
    fn a_map_selector_becomes_sorted_equalities() {
        let mut map = Map::new();
        map.insert("tier".into(), "web".into());
        map.insert("app".into(), "elson".into());
        assert_eq!(selector(&map.into()).unwrap(), "app=elson,tier=web");
    }
}
