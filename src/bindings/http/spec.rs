//! A request as a script describes it (`#{method, url, headers, ...}`), checked and turned into
//! what the client sends, with a masked description for the transcript.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, Url};
use rhai::{Dynamic, Map};
use serde_json::{Value, json};

use crate::bindings::options::{self, Header, Sensitive};
use crate::engine::context::RunContext;
use crate::secret::Secret;
use crate::transcript::event::Effect;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: u32 = 10;

const KNOWN: &str = "method, url, headers, bearer, query, body, json, timeout, connect_timeout, \
                     follow_redirects, max_redirects, retries, effect, ca";

/// What to send.
#[derive(Clone)]
pub enum Body {
    Empty,
    Bytes(Vec<u8>, Option<&'static str>),
}

/// One request, ready to send.
#[derive(Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<Header>,
    pub query: Vec<(String, Sensitive)>,
    pub body: Body,
    pub body_shown: Value,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub retries: u32,
    pub effect: Effect,
    pub ca: Option<PathBuf>,
}

impl RequestSpec {
    /// `scheme://host:port/path`: what messages name, without credentials or query.
    pub fn target(&self) -> String {
        shown_url(&self.url)
    }

    /// `host:port`, for connection errors.
    pub fn address(&self) -> String {
        address(&self.url)
    }

    /// The request as the transcript records it: secrets masked, bodies by size.
    pub fn describe(&self) -> Value {
        let query: serde_json::Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.shown())))
            .collect();
        let mut map = json!({
            "method": self.method.as_str(),
            "url": self.target(),
            "timeout": self.timeout.as_secs_f64(),
        });
        if let Value::Object(object) = &mut map {
            if !self.headers.is_empty() {
                object.insert("headers".into(), options::shown_headers(&self.headers));
            }
            if !query.is_empty() {
                object.insert("query".into(), Value::Object(query));
            }
            if !self.body_shown.is_null() {
                object.insert("body".into(), self.body_shown.clone());
            }
            if !self.follow_redirects {
                object.insert("follow_redirects".into(), false.into());
            }
            if self.retries > 0 {
                object.insert("retries".into(), self.retries.into());
            }
            if let Some(ca) = &self.ca {
                object.insert("ca".into(), ca.display().to_string().into());
            }
        }
        map
    }
}

pub fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

pub fn address(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Builds a request from `method`, `url` and the options map (which may also hold them).
pub fn parse(
    ctx: &RunContext,
    method: Option<&str>,
    url: Option<&str>,
    options: &Map,
) -> Result<RequestSpec, String> {
    let method_text = match (method, options.get("method")) {
        (Some(m), _) => m.to_owned(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "GET".to_owned(),
    };
    let method = Method::from_bytes(method_text.to_uppercase().as_bytes())
        .map_err(|_| format!("`{method_text}` is not an HTTP method"))?;
    let url_text = match (url, options.get("url")) {
        (Some(u), _) => u.to_owned(),
        (None, Some(u)) => u.to_string(),
        (None, None) => return Err("no `url` given".to_owned()),
    };
    let url = parse_url(ctx, &url_text)?;
    let effect = if method == Method::GET || method == Method::HEAD {
        Effect::Read
    } else {
        Effect::Mutate
    };
    let mut spec = RequestSpec {
        method,
        url,
        headers: Vec::new(),
        query: Vec::new(),
        body: Body::Empty,
        body_shown: Value::Null,
        timeout: DEFAULT_TIMEOUT,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        follow_redirects: true,
        max_redirects: MAX_REDIRECTS,
        retries: 0,
        effect,
        ca: None,
    };
    for (key, value) in options {
        apply(ctx, &mut spec, key, value)?;
    }
    let host = spec.url.host_str().unwrap_or_default().to_owned();
    spec.ca = options::ca_bundle(ctx, options.get("ca"), &host)?;
    if spec.retries > 0 && !idempotent(&spec.method) {
        return Err(format!(
            "`retries` is only for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE); a {} \
             could take effect twice",
            spec.method
        ));
    }
    Ok(spec)
}

fn apply(
    ctx: &RunContext,
    spec: &mut RequestSpec,
    key: &str,
    value: &Dynamic,
) -> Result<(), String> {
    match key {
        "method" | "url" | "ca" => {}
        "headers" => spec.headers.extend(options::headers(ctx, value)?),
        "bearer" => spec.headers.push(options::bearer(ctx, value)),
        "query" => spec.query = query(value)?,
        "body" => body(spec, value),
        "json" => {
            let json = exposed_json(value);
            spec.body_shown = json!({ "json": crate::engine::convert::to_json(value) });
            let bytes = serde_json::to_vec(&json).map_err(|err| format!("`json`: {err}"))?;
            spec.body = Body::Bytes(bytes, Some("application/json"));
        }
        "timeout" => spec.timeout = options::seconds(key, value)?,
        "connect_timeout" => spec.connect_timeout = options::seconds(key, value)?,
        "follow_redirects" => spec.follow_redirects = options::boolean(key, value)?,
        "max_redirects" => spec.max_redirects = options::count(key, value)?,
        "retries" => spec.retries = options::count(key, value)?,
        "effect" => {
            let text = value.to_string();
            spec.effect = Effect::parse(&text)
                .ok_or_else(|| format!("unknown effect `{text}` (read, mutate or notify)"))?;
        }
        other => return Err(options::unknown(other, KNOWN)),
    }
    Ok(())
}

/// Parses a URL; a password in it is registered for masking before anything can show it.
fn parse_url(ctx: &RunContext, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|err| {
        let shown = ctx.masker.mask(text);
        format!("`{shown}` is not a URL: {err}")
    })?;
    if let Some(password) = url.password() {
        ctx.masker.add(password);
        if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
            ctx.masker.add(&decoded);
        }
    }
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "`{other}:` URLs are not HTTP (use http:// or https://)"
        )),
    }
}

fn query(value: &Dynamic) -> Result<Vec<(String, Sensitive)>, String> {
    let map = value
        .clone()
        .try_cast::<Map>()
        .ok_or("`query` takes a map of names to values")?;
    Ok(map
        .iter()
        .map(|(k, v)| (k.to_string(), options::text_or_secret(v)))
        .collect())
}

/// A body: text, a secret, a blob, or a map or array sent as JSON.
pub fn body(spec: &mut RequestSpec, value: &Dynamic) {
    if value.is_map() || value.is_array() {
        spec.body_shown = json!({ "json": crate::engine::convert::to_json(value) });
        let bytes = serde_json::to_vec(&exposed_json(value)).unwrap_or_default();
        spec.body = Body::Bytes(bytes, Some("application/json"));
        return;
    }
    if value.is_unit() {
        return;
    }
    if let Some(blob) = value.clone().try_cast::<rhai::Blob>() {
        spec.body_shown = json!(format!("<{} bytes>", blob.len()));
        spec.body = Body::Bytes(blob, None);
        return;
    }
    let text = options::text_or_secret(value);
    spec.body_shown = if text.secret {
        json!(text.shown())
    } else {
        json!(format!("<{} bytes>", text.value.len()))
    };
    spec.body = Body::Bytes(text.value.into_bytes(), Some("text/plain; charset=utf-8"));
}

/// A script value as JSON with secrets' real values, for sending only; the transcript gets
/// [`crate::engine::convert::to_json`], which masks them.
pub fn exposed_json(value: &Dynamic) -> Value {
    if let Some(secret) = value.clone().try_cast::<Secret>() {
        return Value::String(secret.expose().to_owned());
    }
    if let Some(array) = value.clone().try_cast::<rhai::Array>() {
        return Value::Array(array.iter().map(exposed_json).collect());
    }
    if let Some(map) = value.clone().try_cast::<Map>() {
        return Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), exposed_json(v)))
                .collect(),
        );
    }
    crate::engine::convert::to_json(value)
}

/// Methods that may be sent twice with the effect of once (RFC 9110 section 9.2.2).
pub fn idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_drop_credentials_and_query() {
        let url = Url::parse("https://user:pw@api.example.com:8443/v1/health?token=abc").unwrap();
        assert_eq!(shown_url(&url), "https://api.example.com:8443/v1/health");
        assert_eq!(address(&url), "api.example.com:8443");
        let plain = Url::parse("http://example.com/").unwrap();
        assert_eq!(address(&plain), "example.com:80");
    }

    #[test]
    fn secrets_inside_json_bodies_are_sent_but_not_shown() {
        let mut map = Map::new();
        map.insert("user".into(), "ops".into());
        map.insert(
            "password".into(),
            Dynamic::from(Secret::new("env:PW", "pw-1234567")),
        );
        let value = Dynamic::from(map);
        assert_eq!(exposed_json(&value)["password"], "pw-1234567");
        assert_eq!(crate::engine::convert::to_json(&value)["password"], "***");
    }
}
