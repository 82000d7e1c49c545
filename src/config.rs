//! `runbook.toml`: named environments with their settings, and where secrets live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const FILE_NAME: &str = "runbook.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no environment named `{name}` in {path} (known: {known})")]
    UnknownEnvironment {
        name: String,
        path: String,
        known: String,
    },
}

/// The whole file. Unknown top-level tables are not refused here: they land in `extra` for
/// the binding families that own them (serde cannot combine `deny_unknown_fields` with
/// `flatten`; with both, every table a family reads was rejected).
#[derive(Debug, Default, Deserialize)]
pub struct Config {
    /// The environment used when `--env` is not given.
    pub default_environment: Option<String>,
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Free-form tables for binding families (alert routes, vault, ...), read by their owners.
    #[serde(flatten)]
    pub extra: BTreeMap<String, toml::Value>,
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct EnvironmentConfig {
    /// Mutations here need the environment's name typed as confirmation.
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Everything else: namespace, base URL, database URL env var, ... for the runbooks.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Environment variables whose values are secrets: masked everywhere from the start.
    #[serde(default)]
    pub env: Vec<String>,
    /// Parameter names whose values are secrets.
    #[serde(default)]
    pub params: Vec<String>,
    /// Where `secret(name)` looks for a bare name, in order.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Folder that `file:` references are resolved against (default: the config's folder).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// The environment a run uses.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub protected: bool,
    pub settings: BTreeMap<String, toml::Value>,
}

impl Config {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Finds `runbook.toml` beside the runbook or in a folder above it; none is fine.
    pub fn discover(runbook: &Path) -> Result<Self, ConfigError> {
        match find_upwards(runbook, FILE_NAME) {
            Some(path) => Self::load(&path),
            None => Ok(Self::default()),
        }
    }

    /// The selected environment: `--env`, else `default_environment`, else `default`.
    pub fn environment(&self, name: Option<&str>) -> Result<Environment, ConfigError> {
        let name = name
            .or(self.default_environment.as_deref())
            .unwrap_or("default");
        match self.environments.get(name) {
            Some(env) => Ok(Environment {
                name: name.to_owned(),
                protected: env.protected,
                settings: env.settings.clone(),
            }),
            None if name == "default" && self.environments.is_empty() => Ok(Environment {
                name: name.to_owned(),
                protected: false,
                settings: BTreeMap::new(),
            }),
            None => Err(ConfigError::UnknownEnvironment {
                name: name.to_owned(),
                path: self
                    .path
                    .as_ref()
                    .map_or("runbook.toml".into(), |p| p.display().to_string()),
                known: self
                    .environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The folder the config file is in, which relative paths in it are resolved against.
    pub fn dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }
}

/// The first `name` in `start`'s folder or one of its ancestors.
pub fn find_upwards(start: &Path, name: &str) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    let mut dir = if start.is_dir() {
        Some(start.as_path())
    } else {
        start.parent()
    };
    while let Some(current) = dir {
        let candidate = current.join(name);
        if candidate.exists() {
            return Some(candidate);
        }
        dir = current.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_carry_free_form_settings() {
        let config: Config = toml::from_str(
            r#"
            default_environment = "staging"
            [environments.staging]
            namespace = "elson-staging"
            [environments.prod]
            protected = true
            namespace = "elson"
            [secrets]
            env = ["SLACK_WEBHOOK_URL"]
            [alert.routes]
            team = ["slack"]
            "#,
        )
        .unwrap();
        assert!(config.extra["alert"]["routes"]["team"].is_array());
        let staging = config.environment(None).unwrap();
        assert_eq!(staging.name, "staging");
        assert!(!staging.protected);
        assert_eq!(
            staging.settings["namespace"].as_str(),
            Some("elson-staging")
        );
        assert!(config.environment(Some("prod")).unwrap().protected);
        let err = config.environment(Some("qa")).unwrap_err().to_string();
        assert!(
            err.contains("no environment named `qa`") && err.contains("prod, staging"),
            "{err}"
        );
    }
}
