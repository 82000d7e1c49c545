//! Option values shared by the network families: durations, text that may be a secret, header
//! maps, and the CA bundle a target is verified against.

use std::path::PathBuf;
use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::engine::context::RunContext;
use crate::secret::{MASK, Secret};

/// A value handed to a client library, with what outputs show in its place.
#[derive(Clone)]
pub struct Sensitive {
    pub value: String,
    pub secret: bool,
}

impl Sensitive {
    /// What the transcript and messages may show.
    pub fn shown(&self) -> String {
        if self.secret {
            MASK.to_owned()
        } else {
            self.value.clone()
        }
    }
}

/// A header to send. Secret values are shown masked.
#[derive(Clone)]
pub struct Header {
    pub name: String,
    pub value: Sensitive,
}

/// Header names whose values are credentials even when a script passes them as plain text.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// The text of a value, noting whether it was a secret.
pub fn text_or_secret(value: &Dynamic) -> Sensitive {
    match value.clone().try_cast::<Secret>() {
        Some(secret) => Sensitive {
            value: secret.expose().to_owned(),
            secret: true,
        },
        None => Sensitive {
            value: value.to_string(),
            secret: false,
        },
    }
}

/// A credential: a secret, or plain text that is registered for masking from now on, since a
/// token is no less sensitive for having been typed into a script.
pub fn credential(ctx: &RunContext, value: &Dynamic) -> Sensitive {
    let mut text = text_or_secret(value);
    ctx.masker.add(&text.value);
    text.secret = true;
    text
}

/// Seconds as a duration: `5`, `2.5`.
pub fn seconds(key: &str, value: &Dynamic) -> Result<Duration, String> {
    let secs = value
        .as_float()
        .or_else(|_| value.as_int().map(|i| i as f64))
        .map_err(|_| format!("`{key}` takes a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{key}` must be a positive number of seconds"))
}

/// Milliseconds as a duration: `hold_ms: 500`.
pub fn millis(key: &str, value: &Dynamic) -> Result<Duration, String> {
    let ms = value
        .as_int()
        .map_err(|_| format!("`{key}` takes a whole number of milliseconds"))?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| format!("`{key}` cannot be negative"))
}

/// A whole number that cannot be negative.
pub fn count(key: &str, value: &Dynamic) -> Result<u32, String> {
    let n = value
        .as_int()
        .map_err(|_| format!("`{key}` takes a whole number"))?;
    u32::try_from(n).map_err(|_| format!("`{key}` must be between 0 and {}", u32::MAX))
}

pub fn boolean(key: &str, value: &Dynamic) -> Result<bool, String> {
    value
        .as_bool()
        .map_err(|_| format!("`{key}` takes true or false"))
}

/// A map of header names to values (text or secrets).
pub fn headers(ctx: &RunContext, value: &Dynamic) -> Result<Vec<Header>, String> {
    let map = value
        .clone()
        .try_cast::<Map>()
        .ok_or("`headers` takes a map of names to values")?;
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let lower = name.to_lowercase();
        let value = if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
            credential(ctx, &value)
        } else {
            text_or_secret(&value)
        };
        headers.push(Header {
            name: name.to_string(),
            value,
        });
    }
    Ok(headers)
}

/// `bearer: token` as an Authorization header.
pub fn bearer(ctx: &RunContext, value: &Dynamic) -> Header {
    let token = credential(ctx, value);
    let value = format!("Bearer {}", token.value);
    ctx.masker.add(&value);
    Header {
        name: "Authorization".to_owned(),
        value: Sensitive {
            value,
            secret: true,
        },
    }
}

/// Header names and shown values, for the transcript.
pub fn shown_headers(headers: &[Header]) -> serde_json::Value {
    headers
        .iter()
        .map(|h| (h.name.clone(), serde_json::Value::String(h.value.shown())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The CA bundle for `host`: the `ca` option (relative to the runbook's folder), else the
/// environment's `ca` setting in runbook.toml (relative to that file): either one path for
/// every host, or a table of host names to paths with `"*"` for the rest.
pub fn ca_bundle(
    ctx: &RunContext,
    option: Option<&Dynamic>,
    host: &str,
) -> Result<Option<PathBuf>, String> {
    if let Some(value) = option {
        let path = value
            .clone()
            .into_string()
            .map_err(|_| "`ca` takes the path of a PEM file".to_owned())?;
        return Ok(Some(ctx.runbook_dir.join(path)));
    }
    let base = ctx
        .config
        .dir()
        .map_or_else(|| ctx.runbook_dir.clone(), |d| d.to_owned());
    let setting = match ctx.environment.settings.get("ca") {
        None => return Ok(None),
        Some(toml::Value::String(path)) => Some(path.as_str()),
        Some(toml::Value::Table(table)) => table
            .get(host)
            .or_else(|| table.get("*"))
            .and_then(toml::Value::as_str),
        Some(_) => {
            return Err(format!(
                "the `ca` setting of environment `{}` must be a path or a table of host = path",
                ctx.environment.name
            ));
        }
    };
    Ok(setting.map(|path| base.join(path)))
}

/// Refuses keys a family does not know, naming the ones it does.
pub fn unknown(key: &str, known: &str) -> String {
    format!("unknown option `{key}` (known: {known})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_refuse_zero_negative_and_text() {
        assert_eq!(
            seconds("timeout", &Dynamic::from(2.5_f64)),
            Ok(Duration::from_millis(2500))
        );
        assert!(seconds("timeout", &Dynamic::from(0_i64)).is_err());
        assert!(seconds("timeout", &Dynamic::from(-1_i64)).is_err());
        assert!(seconds("timeout", &Dynamic::from("soon")).is_err());
        assert!(millis("hold_ms", &Dynamic::from(-5_i64)).is_err());
    }

    #[test]
    fn secrets_are_shown_masked() {
        let secret = text_or_secret(&Dynamic::from(Secret::new("env:T", "tok-123456")));
        assert_eq!(secret.value, "tok-123456");
        assert_eq!(secret.shown(), "***");
        assert_eq!(text_or_secret(&Dynamic::from("plain")).shown(), "plain");
    }
}
