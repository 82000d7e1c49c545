//! What a database URL names: the driver, the server, the credentials, how it is shown in
//! output (never with its password) and whether its transport is acceptable.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::SqliteConnectOptions;

use super::error::DbError;

/// The database servers the bindings speak to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    MySql,
    Sqlite,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::MySql => "mysql",
            Driver::Sqlite => "sqlite",
        }
    }
}

/// Connection options for one driver, parsed from the URL.
#[derive(Clone)]
pub enum Options {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
    Sqlite {
        options: SqliteConnectOptions,
        in_memory: bool,
    },
}

/// A parsed database URL. The password is kept for the dump tools, which get it through
/// their environment; nothing here prints it.
#[derive(Clone)]
pub struct Endpoint {
    pub driver: Driver,
    pub options: Options,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: Option<String>,
    /// The SQLite file, when the database is one.
    pub file: Option<PathBuf>,
    /// What output shows for this database: the URL without password or query.
    pub target: String,
    /// The TLS setting for the dump tools, as their own option value.
    pub tls: Tls,
}

/// Transport security as the URL asked for it, or as the bindings chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disabled,
    Preferred,
    Required,
    Verified,
}

impl Endpoint {
    /// Parses `url`; relative SQLite paths are taken from `base` (the runbook's folder).
    pub fn parse(url: &str, base: &Path) -> Result<Self, DbError> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => postgres(url),
            "mysql" | "mariadb" => mysql(url),
            "sqlite" => sqlite(url, base),
            _ => Err(DbError::UnsupportedScheme { scheme }),
        }
    }

    /// The same server with another database, for scratch copies.
    pub fn with_database(&self, database: &str) -> Self {
        let mut copy = self.clone();
        copy.options = match &self.options {
            Options::Postgres(options) => Options::Postgres(options.clone().database(database)),
            Options::MySql(options) => Options::MySql(options.clone().database(database)),
            Options::Sqlite { options, in_memory } => Options::Sqlite {
                options: options.clone(),
                in_memory: *in_memory,
            },
        };
        copy.database = Some(database.to_owned());
        copy.target = target(self.driver, &self.user, &self.host, self.port, database);
        copy
    }

    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.host)
    }
}

/// The password part of a URL, percent-decoded, for the masker.
pub fn password_of(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let raw = parsed.password()?.to_owned();
    let decoded = percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned();
    Some((raw, decoded))
}

/// The value of a query parameter, if the URL has it.
fn query_param(url: &str, names: &[&str]) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(key, _)| names.contains(&key.as_ref()))
        .map(|(_, value)| value.to_ascii_lowercase())
}

fn target(driver: Driver, user: &str, host: &str, port: u16, database: &str) -> String {
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("{}://{at}{host}:{port}/{database}", driver.as_str())
}

fn postgres(url: &str) -> Result<Endpoint, DbError> {
    let mut options = PgConnectOptions::from_str(url).map_err(|source| DbError::InvalidUrl {
        driver: "postgres",
        source,
    })?;
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    let asked = query_param(url, &["sslmode", "ssl-mode"]);
    let tls = match asked.as_deref() {
        None if !is_loopback(&host) => {
            // A server elsewhere gets TLS with a verified certificate unless the URL says
            // otherwise: the driver's own default (`prefer`) falls back to plaintext silently.
            options = options.ssl_mode(PgSslMode::VerifyFull);
            Tls::Verified
        }
        None => Tls::Preferred,
        Some("disable") => Tls::Disabled,
        Some("allow" | "prefer") if !is_loopback(&host) => {
            return Err(DbError::PlaintextRefused {
                host,
                asked: format!("sslmode={}", asked.unwrap_or_default()),
                explicit: "sslmode=disable",
                secure: "sslmode=verify-full (or require)",
            });
        }
        Some("allow" | "prefer") => Tls::Preferred,
        Some("require") => Tls::Required,
        Some(_) => Tls::Verified,
    };
    let user = options.get_username().to_owned();
    let port = options.get_port();
    let database = options.get_database().map(str::to_owned);
    Ok(Endpoint {
        driver: Driver::Postgres,
        target: target(
            Driver::Postgres,
            &user,
            &host,
            port,
            database.as_deref().unwrap_or(&user),
        ),
        password: password_of(url).map(|(_, decoded)| decoded),
        options: Options::Postgres(options),
        host,
        port,
        user,
        database,
        file: None,
        tls,
    })
}

fn mysql(url: &str) -> Result<Endpoint, DbError> {
    let normalized = match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    };
    let mut options =
        MySqlConnectOptions::from_str(&normalized).map_err(|source| DbError::InvalidUrl {
            driver: "mysql",
            source,
        })?;
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    let asked = query_param(&normalized, &["ssl-mode", "sslmode"]);
    let tls = match asked.as_deref() {
        None if !is_loopback(&host) => {
            options = options.ssl_mode(MySqlSslMode::VerifyIdentity);
            Tls::Verified
        }
        None => Tls::Preferred,
        Some("disabled" | "disable") => Tls::Disabled,
        Some("preferred" | "prefer") if !is_loopback(&host) => {
            return Err(DbError::PlaintextRefused {
                host,
                asked: format!("ssl-mode={}", asked.unwrap_or_default()),
                explicit: "ssl-mode=disabled",
                secure: "ssl-mode=verify_identity (or required)",
            });
        }
        Some("preferred" | "prefer") => Tls::Preferred,
        Some("required" | "require") => Tls::Required,
        Some(_) => Tls::Verified,
    };
    let user = options.get_username().to_owned();
    let port = options.get_port();
    let database = options.get_database().map(str::to_owned);
    Ok(Endpoint {
        driver: Driver::MySql,
        target: target(
            Driver::MySql,
            &user,
            &host,
            port,
            database.as_deref().unwrap_or(""),
        ),
        password: password_of(&normalized).map(|(_, decoded)| decoded),
        options: Options::MySql(options),
        host,
        port,
        user,
        database,
        file: None,
        tls,
    })
}

fn sqlite(url: &str, base: &Path) -> Result<Endpoint, DbError> {
    let rest = url["sqlite:".len()..].trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || path.is_empty() || query.contains("mode=memory");
    let mut options =
        SqliteConnectOptions::from_str(url).map_err(|source| DbError::InvalidUrl {
            driver: "sqlite",
            source,
        })?;
    let mut file = None;
    if !in_memory {
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let mut full = PathBuf::from(decoded.as_ref());
        if full.is_relative() {
            full = base.join(full);
        }
        options = options.filename(&full);
        file = Some(full);
    }
    let shown = match &file {
        Some(file) => format!("sqlite://{}", file.display()),
        None => "sqlite::memory:".to_owned(),
    };
    Ok(Endpoint {
        driver: Driver::Sqlite,
        options: Options::Sqlite { options, in_memory },
        host: String::new(),
        port: 0,
        user: String::new(),
        password: None,
        database: None,
        file,
        target: shown,
        tls: Tls::Disabled,
    })
}

/// Whether `host` is this machine: a loopback address, `localhost` or a Unix socket.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.is_empty()
        || bare.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Endpoint, DbError> {
        Endpoint::parse(url, Path::new("/runbooks"))
    }

    #[test]
    fn the_target_never_shows_the_password() {
        let endpoint = parse("postgres://app:s3cret-pw@127.0.0.1:5432/elson").unwrap();
        assert_eq!(endpoint.target, "postgres://app@127.0.0.1:5432/elson");
        assert_eq!(endpoint.password.as_deref(), Some("s3cret-pw"));
        let endpoint = parse("mariadb://root:p%40ss@localhost:3306/test").unwrap();
        assert_eq!(endpoint.target, "mysql://root@localhost:3306/test");
        assert_eq!(endpoint.password.as_deref(), Some("p@ss"));
    }

    #[test]
    fn plaintext_to_a_remote_server_needs_an_explicit_request() {
        let err = parse("postgres://app:pw@db.example.com/elson?sslmode=prefer")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sslmode=disable"), "{err}");
        let remote = parse("postgres://app:pw@db.example.com/elson").unwrap();
        assert_eq!(remote.tls, Tls::Verified);
        let disabled = parse("postgres://app:pw@db.example.com/elson?sslmode=disable").unwrap();
        assert_eq!(disabled.tls, Tls::Disabled);
        let local = parse("postgres://app:pw@127.0.0.1/elson").unwrap();
        assert_eq!(local.tls, Tls::Preferred);
        assert!(parse("mysql://root@10.1.2.3/x?ssl-mode=preferred").is_err());
    }

    #[test]
    fn sqlite_paths_are_relative_to_the_runbook() {
        let file = parse("sqlite://data/app.db").unwrap();
        assert_eq!(file.file, Some(PathBuf::from("/runbooks/data/app.db")));
        let memory = parse("sqlite::memory:").unwrap();
        assert!(memory.file.is_none());
        assert_eq!(memory.target, "sqlite::memory:");
        assert!(matches!(
            parse("oracle://x"),
            Err(DbError::UnsupportedScheme { .. })
        ));
    }
}
