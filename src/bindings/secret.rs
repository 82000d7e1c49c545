//! Where `secret(reference)` finds values: environment variables, files, Vault KV v2, AWS
//! Secrets Manager and Kubernetes Secrets. Every value is registered for masking before it is
//! returned, so nothing that logs it afterwards can show it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::EvalAltResult;

use crate::engine::binding::Failure;
use crate::engine::context::RunContext;
use crate::secret::Secret;

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// The schemes a reference may start with, for error messages.
const SCHEMES: &str = "env, file, vault, aws, k8s";

/// A reference, parsed: which source and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference<'a> {
    /// `env:NAME`
    Env(&'a str),
    /// `file:PATH`, relative to the config's folder.
    File(&'a str),
    /// `vault:PATH#KEY` in a KV v2 engine.
    Vault { path: &'a str, key: Option<&'a str> },
    /// `aws:SECRET-ID#KEY` in Secrets Manager; the key picks a field of a JSON secret.
    Aws { id: &'a str, key: Option<&'a str> },
    /// `k8s:NAMESPACE/NAME#KEY`
    Kubernetes {
        namespace: &'a str,
        name: &'a str,
        key: Option<&'a str>,
    },
}

/// What a source holds at a place: one text, or named fields (a Vault secret's keys).
pub enum Found {
    Text(String),
    Fields(BTreeMap<String, String>),
}

/// Resolves a reference for `secret(...)`: `env:NAME`, `file:PATH`, `vault:PATH#KEY`,
/// `aws:SECRET-ID#KEY`, `k8s:NAMESPACE/NAME#KEY`, or a bare name looked up in the sources
/// runbook.toml lists under `[secrets] sources` (default: `env`, then `file`).
pub fn resolve(ctx: &RunContext, reference: &str) -> Outcome<Secret> {
    let value = match parse(reference).map_err(|f| failed(ctx, reference, f))? {
        Some(parsed) => match fetch(ctx, parsed)? {
            Ok(Some(value)) => value,
            Ok(None) => return Err(failed(ctx, reference, not_there(parsed))),
            Err(failure) => return Err(failed(ctx, reference, failure)),
        },
        None => from_sources(ctx, reference)?,
    };
    Ok(wrap(ctx, reference, value))
}

/// Registers `value` for masking and wraps it; a value too short to mask gets a warning.
pub fn wrap(ctx: &RunContext, name: &str, value: String) -> Secret {
    if !ctx.masker.add(&value) && !value.is_empty() {
        tracing::warn!(
            reference = name,
            "secret is shorter than 3 characters and cannot be masked reliably"
        );
    }
    Secret::new(name, value)
}

/// `secret ``reference``: message`, then the causes, masked.
fn failed(ctx: &RunContext, reference: &str, failure: Failure) -> Box<EvalAltResult> {
    super::settings::failed(ctx, &format!("secret `{reference}`"), failure)
}

/// Parses a reference with a scheme; `None` for a bare name.
fn parse(reference: &str) -> Result<Option<Reference<'_>>, Failure> {
    let Some((scheme, rest)) = reference.split_once(':') else {
        return Ok(None);
    };
    if scheme.contains('/') {
        return Ok(None);
    }
    let (place, key) = match rest.split_once('#') {
        Some((place, key)) if !key.is_empty() => (place, Some(key)),
        Some((place, _)) => (place, None),
        None => (rest, None),
    };
    if place.is_empty() {
        return Err(Failure::new(format!(
            "`{scheme}:` needs a place after the colon"
        )));
    }
    let parsed = match scheme {
        "env" => Reference::Env(rest),
        "file" => Reference::File(rest),
        "vault" => Reference::Vault { path: place, key },
        "aws" => Reference::Aws { id: place, key },
        "k8s" => {
            let (namespace, name) = place
                .split_once('/')
                .ok_or_else(|| Failure::new("a k8s reference reads `k8s:NAMESPACE/NAME#KEY`"))?;
            Reference::Kubernetes {
                namespace,
                name,
                key,
            }
        }
        other => {
            return Err(Failure::new(format!(
                "no secret source `{other}` (known: {SCHEMES})"
            )));
        }
    };
    Ok(Some(parsed))
}

/// Reads one place; `Ok(None)` when the source answers but holds nothing there. The outer
/// error is the engine's own (interrupts, the transcript); the inner one the source's.
fn fetch(ctx: &RunContext, reference: Reference<'_>) -> Outcome<Result<Option<String>, Failure>> {
    let (found, key, place) = match reference {
        Reference::Env(name) => return Ok(Ok(std::env::var(name).ok())),
        Reference::File(path) => return Ok(from_file(&file_path(ctx, path))),
        Reference::Vault { path, key } => (
            super::vault::lookup(ctx, path)?,
            key,
            format!("the Vault secret {path}"),
        ),
        Reference::Aws { id, key } => (
            super::aws::lookup(ctx, id)?,
            key,
            format!("the AWS secret {id}"),
        ),
        Reference::Kubernetes {
            namespace,
            name,
            key,
        } => (
            kubernetes(ctx, namespace, name)?,
            key,
            format!("Secret {namespace}/{name}"),
        ),
    };
    Ok(match found {
        Some(found) => pick(found, key, &place),
        None => Ok(None),
    })
}

/// The Kubernetes Secret `namespace/name` with its data decoded, `None` when there is none.
/// This is the one function the Kubernetes bindings fill in; errors name the Secret.
fn kubernetes(ctx: &RunContext, namespace: &str, name: &str) -> Outcome<Option<Found>> {
    super::k8s::secret_fields(ctx, namespace, name)
}

/// The value for `key` in what a source found; a single field needs no key.
fn pick(found: Found, key: Option<&str>, place: &str) -> Result<Option<String>, Failure> {
    match (found, key) {
        (Found::Text(text), None) => Ok(Some(text)),
        (Found::Text(text), Some(key)) => {
            let fields = json_fields(&text).ok_or_else(|| {
                Failure::new(format!(
                    "{place} is not a JSON object, so it has no key `{key}`"
                ))
            })?;
            Ok(fields.get(key).cloned())
        }
        // A missing key is "not there", so a bare name can fall through to the next source.
        (Found::Fields(fields), Some(key)) => Ok(fields.get(key).cloned()),
        (Found::Fields(mut fields), None) if fields.len() == 1 => {
            Ok(fields.pop_first().map(|f| f.1))
        }
        (Found::Fields(fields), None) => Err(Failure::new(format!(
            "{place} holds {} keys ({}): name one with `#KEY`",
            fields.len(),
            fields.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A JSON object's fields as text (numbers and booleans as written); `None` for other text.
pub fn json_fields(text: &str) -> Option<BTreeMap<String, String>> {
    let serde_json::Value::Object(map) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let fields = map
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect();
    Some(fields)
}

fn not_there(reference: Reference<'_>) -> Failure {
    Failure::new(match reference {
        Reference::Env(name) => format!("env var {name} is not set"),
        Reference::File(path) => format!("file {path} does not exist"),
        Reference::Vault { path, key } => missing("the Vault secret", path, key),
        Reference::Aws { id, key } => missing("the AWS secret", id, key),
        Reference::Kubernetes {
            namespace,
            name,
            key,
        } => missing("the Kubernetes Secret", &format!("{namespace}/{name}"), key),
    })
}

fn missing(what: &str, place: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{what} {place} does not exist or has no key `{key}`"),
        None => format!("{what} {place} does not exist"),
    }
}

/// A bare name, looked up in each configured source in turn. A source that cannot be asked
/// (Vault refusing the token, say) is an error, not a reason to try the next one: falling
/// through would hand back a value from somewhere the operator did not mean.
fn from_sources(ctx: &RunContext, name: &str) -> Outcome<String> {
    let configured = &ctx.config.secrets.sources;
    let sources: Vec<&str> = if configured.is_empty() {
        vec!["env", "file"]
    } else {
        configured.iter().map(String::as_str).collect()
    };
    let mut looked = Vec::new();
    for source in sources {
        let place = match source_place(ctx, source, name).map_err(|f| failed(ctx, name, f))? {
            Some(place) => place,
            None => continue,
        };
        let reference = place.to_string();
        let parsed = parse(&reference).map_err(|f| failed(ctx, name, f))?;
        let Some(parsed) = parsed else {
            continue;
        };
        match fetch(ctx, parsed)? {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => looked.push(describe(parsed)),
            Err(failure) => return Err(failed(ctx, name, failure)),
        }
    }
    Err(failed(
        ctx,
        name,
        Failure::new(format!("not found (looked in: {})", looked.join(", "))),
    ))
}

/// Where a configured source keeps the bare name `name`, as a full reference; `None` when
/// the source does not apply (no secrets folder configured for `file`).
fn source_place(ctx: &RunContext, source: &str, name: &str) -> Result<Option<String>, Failure> {
    let (scheme, base) = source.split_once(':').unwrap_or((source, ""));
    let place = match (scheme, base) {
        ("env", "") => format!("env:{name}"),
        ("file", "") => match secrets_dir(ctx) {
            Some(dir) => format!("file:{}", dir.join(name).display()),
            None => return Ok(None),
        },
        ("vault" | "aws" | "k8s", "") => {
            return Err(Failure::new(format!(
                "[secrets] sources: `{scheme}` needs the place bare names live in, e.g. `{}`",
                match scheme {
                    "vault" => "vault:secret/app",
                    "aws" => "aws:prod/app",
                    _ => "k8s:namespace/secret-name",
                }
            )));
        }
        ("vault" | "aws" | "k8s", base) => format!("{scheme}:{base}#{name}"),
        _ => {
            return Err(Failure::new(format!(
                "[secrets] sources: unknown source `{source}` (known: {SCHEMES})"
            )));
        }
    };
    Ok(Some(place))
}

fn describe(reference: Reference<'_>) -> String {
    match reference {
        Reference::Env(name) => format!("env var {name}"),
        Reference::File(path) => format!("file {path}"),
        Reference::Vault { path, key } => format!("vault {path}#{}", key.unwrap_or("")),
        Reference::Aws { id, key } => format!("aws {id}#{}", key.unwrap_or("")),
        Reference::Kubernetes {
            namespace,
            name,
            key,
        } => format!("k8s {namespace}/{name}#{}", key.unwrap_or("")),
    }
}

/// A file that exists is read; one that does not is "not there", so sources can go on.
fn from_file(path: &Path) -> Result<Option<String>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Failure::from_error(
            format!("cannot read {}", path.display()),
            &err,
        )),
    }
}

fn secrets_dir(ctx: &RunContext) -> Option<PathBuf> {
    let base = ctx.config.dir().map(PathBuf::from);
    match (&ctx.config.secrets.dir, base) {
        (Some(dir), Some(base)) => Some(base.join(dir)),
        (Some(dir), None) => Some(dir.clone()),
        (None, _) => None,
    }
}

fn file_path(ctx: &RunContext, path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    match ctx.config.dir() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_by_scheme() {
        assert_eq!(parse("API_KEY").unwrap(), None);
        assert_eq!(
            parse("env:API_KEY").unwrap(),
            Some(Reference::Env("API_KEY"))
        );
        assert_eq!(
            parse("vault:secret/elson/app#api_key").unwrap(),
            Some(Reference::Vault {
                path: "secret/elson/app",
                key: Some("api_key")
            })
        );
        assert_eq!(
            parse("aws:prod/elson").unwrap(),
            Some(Reference::Aws {
                id: "prod/elson",
                key: None
            })
        );
        assert_eq!(
            parse("k8s:elson/backend#SECRET_KEY").unwrap(),
            Some(Reference::Kubernetes {
                namespace: "elson",
                name: "backend",
                key: Some("SECRET_KEY")
            })
        );
        assert!(parse("k8s:backend").is_err());
        let err = parse("gcp:x").unwrap_err().message;
        assert!(err.contains("no secret source `gcp`"), "{err}");
    }

    #[test]
    fn a_key_picks_one_field() {
        let fields: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]
        .into();
        assert_eq!(
            pick(Found::Fields(fields.clone()), Some("b"), "p").unwrap(),
            Some("2".into())
        );
        assert_eq!(
            pick(Found::Fields(fields.clone()), Some("c"), "p").unwrap(),
            None
        );
        let err = pick(Found::Fields(fields), None, "p").unwrap_err().message;
        assert!(err.contains("holds 2 keys (a, b)"), "{err}");
        let json = Found::Text(r#"{"user":"app","port":5432}"#.into());
        assert_eq!(pick(json, Some("port"), "p").unwrap(), Some("5432".into()));
        assert!(pick(Found::Text("plain".into()), Some("k"), "p").is_err());
    }
}
