//! Where `secret(reference)` finds values: environment variables and files. Every value is
//! registered for masking before it is returned.

use std::path::PathBuf;

use crate::engine::binding::Failure;
use crate::engine::context::RunContext;
use crate::secret::Secret;

/// Resolves a reference: `env:NAME`, `file:PATH`, or a bare name looked up in the sources
/// runbook.toml lists under `[secrets] sources` (default: `env`, then `file`).
pub fn resolve(ctx: &RunContext, reference: &str) -> Result<Secret, Failure> {
    let value = match reference.split_once(':') {
        Some(("env", name)) => from_env(name)?,
        Some(("file", path)) => from_file(&file_path(ctx, path))?,
        Some(("k8s", rest)) => super::k8s::secret_value(ctx, rest)?,
        Some((scheme, _)) if !scheme.contains('/') => {
            return Err(Failure::new(format!(
                "no secret source `{scheme}` (known: env, file)"
            )));
        }
        _ => from_sources(ctx, reference)?,
    };
    if !ctx.masker.add(&value) {
        tracing::warn!(
            reference,
            "secret is shorter than 3 characters and cannot be masked reliably"
        );
    }
    Ok(Secret::new(reference, value))
}

fn from_sources(ctx: &RunContext, name: &str) -> Result<String, Failure> {
    let configured = &ctx.config.secrets.sources;
    let sources: Vec<&str> = if configured.is_empty() {
        vec!["env", "file"]
    } else {
        configured.iter().map(String::as_str).collect()
    };
    let mut looked = Vec::new();
    for source in sources {
        match source {
            "env" => {
                if let Ok(value) = std::env::var(name) {
                    return Ok(value);
                }
                looked.push(format!("env var {name}"));
            }
            "file" => {
                let Some(dir) = secrets_dir(ctx) else {
                    continue;
                };
                let path = dir.join(name);
                if path.is_file() {
                    return from_file(&path);
                }
                looked.push(format!("file {}", path.display()));
            }
            other => looked.push(format!("source `{other}` (not available)")),
        }
    }
    Err(Failure::new(format!(
        "not found (looked in: {})",
        looked.join(", ")
    )))
}

fn from_env(name: &str) -> Result<String, Failure> {
    std::env::var(name).map_err(|_| Failure::new(format!("env var {name} is not set")))
}

fn from_file(path: &std::path::Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Failure::from_error(format!("cannot read {}", path.display()), &err))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
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
