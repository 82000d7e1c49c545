//! A binding family's own table in runbook.toml (`[vault]`, `[aws]`, `[alert]`), with the
//! selected environment's table of the same name (`[environments.prod.vault]`) laid over it.

use serde::de::DeserializeOwned;

use crate::engine::binding::Failure;
use crate::engine::context::RunContext;

/// The merged table for `name`; empty when runbook.toml has none.
pub fn table(ctx: &RunContext, name: &str) -> toml::Table {
    let mut merged = match ctx.config.extra.get(name) {
        Some(toml::Value::Table(table)) => table.clone(),
        _ => toml::Table::new(),
    };
    if let Some(toml::Value::Table(overrides)) = ctx.environment.settings.get(name) {
        merge(&mut merged, overrides);
    }
    merged
}

/// The merged table for `name`, read into the family's settings type. Unknown keys are
/// errors that name the table, so a misspelt setting is not silently ignored.
pub fn read<T: DeserializeOwned>(ctx: &RunContext, name: &str) -> Result<T, Failure> {
    toml::Value::Table(table(ctx, name))
        .try_into()
        .map_err(|err: toml::de::Error| {
            Failure::new(format!(
                "runbook.toml [{name}]: {}",
                err.message().trim_end()
            ))
        })
}

/// A relative path from runbook.toml, taken from the folder the file is in.
pub fn path(ctx: &RunContext, path: std::path::PathBuf) -> std::path::PathBuf {
    match ctx.config.dir() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// A failure found before a call could start (settings, a token reference) as a script
/// error: `subject: message`, then the causes, masked.
pub fn failed(ctx: &RunContext, subject: &str, failure: Failure) -> Box<rhai::EvalAltResult> {
    let mut text = format!("{subject}: {}", failure.message);
    for cause in failure.causes {
        if cause != failure.message {
            text.push_str("\ncaused by: ");
            text.push_str(&cause);
        }
    }
    ctx.masker.mask(&text).into()
}

/// Lays `overrides` over `base`, table by table; other values are replaced whole.
fn merge(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_tables_override_key_by_key() {
        let mut base: toml::Table =
            toml::from_str("address = \"https://a\"\n[kubernetes]\nrole = \"x\"\nmount = \"k\"")
                .unwrap();
        let over: toml::Table = toml::from_str("[kubernetes]\nrole = \"y\"").unwrap();
        merge(&mut base, &over);
        assert_eq!(base["address"].as_str(), Some("https://a"));
        assert_eq!(base["kubernetes"]["role"].as_str(), Some("y"));
        assert_eq!(base["kubernetes"]["mount"].as_str(), Some("k"));
    }
}
