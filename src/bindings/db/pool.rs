//! Connection pools, one per URL and settings for the whole run, and the `Database` object
//! scripts hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Dynamic, Map};
use sqlx::pool::PoolOptions;
use sqlx::{MySqlPool, PgPool, SqlitePool};

use super::endpoint::{Endpoint, Options};
use super::error::DbError;

/// A pool for one of the drivers.
#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to the driver's own pool.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::bindings::db::pool::Pool::Postgres($p) => $body,
            $crate::bindings::db::pool::Pool::MySql($p) => $body,
            $crate::bindings::db::pool::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How a pool is sized, from `db::connect`'s options.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_connections: 5,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

const OPTION_NAMES: &str = "max_connections, min_connections, acquire_timeout, idle_timeout";

impl Settings {
    pub fn parse(options: &Map) -> Result<Self, DbError> {
        let mut settings = Settings::default();
        for (key, value) in options {
            match key.as_str() {
                "max_connections" => settings.max_connections = count(key, value)?.max(1),
                "min_connections" => settings.min_connections = count(key, value)?,
                "acquire_timeout" => settings.acquire_timeout = seconds(key, value)?,
                "idle_timeout" => settings.idle_timeout = Some(seconds(key, value)?),
                other => {
                    return Err(DbError::UnknownOption {
                        key: other.to_owned(),
                        known: OPTION_NAMES,
                    });
                }
            }
        }
        Ok(settings)
    }
}

fn count(key: &str, value: &Dynamic) -> Result<u32, DbError> {
    value
        .as_int()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| DbError::BadOption {
            key: key.to_owned(),
            expects: "takes a whole number of connections",
        })
}

fn seconds(key: &str, value: &Dynamic) -> Result<Duration, DbError> {
    let secs = value
        .as_float()
        .or_else(|_| value.as_int().map(|n| n as f64))
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    secs.ok_or_else(|| DbError::BadOption {
        key: key.to_owned(),
        expects: "takes a positive number of seconds",
    })
}

/// An open database as scripts see it: a pool and what it points at.
#[derive(Clone)]
pub struct Database {
    pub pool: Pool,
    pub endpoint: Arc<Endpoint>,
    pub settings: Settings,
}

impl Database {
    pub fn target(&self) -> &str {
        &self.endpoint.target
    }
}

/// The pools opened during a run, so a runbook that connects in every check reuses them.
#[derive(Default, Clone)]
pub struct Pools {
    open: Arc<Mutex<HashMap<String, Database>>>,
}

impl Pools {
    fn key(url: &str, settings: &Settings) -> String {
        format!("{url}\u{0}{settings:?}")
    }

    pub fn get(&self, url: &str, settings: &Settings) -> Option<Database> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&Self::key(url, settings))
            .filter(|db| !on_pool!(&db.pool, p => p.is_closed()))
            .cloned()
    }

    /// Keeps `database` under the settings it was asked for (an in-memory SQLite database
    /// adjusts its own).
    pub fn put(&self, url: &str, asked: &Settings, database: Database) {
        let key = Self::key(url, asked);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(key, database);
    }
}

fn options<DB: sqlx::Database>(settings: &Settings) -> PoolOptions<DB> {
    PoolOptions::<DB>::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
}

/// Opens one connection first, so that a wrong address or password fails at once with the
/// server's own reason (a pool retries until its timeout and then reports only that), then
/// the pool beside it.
pub async fn open(endpoint: Endpoint, mut settings: Settings) -> Result<Database, DbError> {
    let limit = settings.acquire_timeout;
    let pool = match &endpoint.options {
        Options::Postgres(o) => {
            probe::<sqlx::PgConnection>(o, limit).await?;
            Pool::Postgres(warm(options(&settings), o).await?)
        }
        Options::MySql(o) => {
            probe::<sqlx::MySqlConnection>(o, limit).await?;
            Pool::MySql(warm(options(&settings), o).await?)
        }
        Options::Sqlite {
            options: o,
            in_memory,
        } => {
            if *in_memory {
                // An in-memory database lives as long as one connection to it: keep exactly
                // one open for the whole run, so every call sees the same data.
                settings.max_connections = 1;
                settings.min_connections = 1;
                settings.idle_timeout = None;
            }
            let pool_options = options(&settings).max_lifetime(None::<Duration>);
            let pool = pool_options
                .connect_with(o.clone())
                .await
                .map_err(|source| DbError::ConnectFailed {
                    source: source.into(),
                })?;
            Pool::Sqlite(pool)
        }
    };
    Ok(Database {
        pool,
        endpoint: Arc::new(endpoint),
        settings,
    })
}

/// A pool with one connection open, so the first call does not pay for connecting.
async fn warm<DB: sqlx::Database>(
    pool_options: PoolOptions<DB>,
    options: &<DB::Connection as sqlx::Connection>::Options,
) -> Result<sqlx::Pool<DB>, DbError> {
    pool_options
        .connect_with(options.clone())
        .await
        .map_err(|source| DbError::ConnectFailed {
            source: source.into(),
        })
}

async fn probe<C: sqlx::Connection>(
    options: &<C as sqlx::Connection>::Options,
    limit: Duration,
) -> Result<(), DbError> {
    let connecting = tokio::time::timeout(limit, C::connect_with(options));
    let connection = match connecting.await {
        Ok(Ok(connection)) => connection,
        Ok(Err(source)) => {
            return Err(DbError::ConnectFailed {
                source: source.into(),
            });
        }
        Err(_) => {
            return Err(DbError::ConnectFailed {
                source: super::error::SqlCause(format!(
                    "no answer within {} s",
                    limit.as_secs_f64()
                )),
            });
        }
    };
    let _ = connection.close().await;
    Ok(())
}

/// Size and use of a pool, as `pool()` reports it.
pub fn usage(database: &Database) -> Map {
    let (size, idle) = on_pool!(&database.pool, p => (p.size(), p.num_idle()));
    let settings = &database.settings;
    let mut map = Map::new();
    map.insert("size".into(), i64::from(size).into());
    map.insert("idle".into(), (idle as i64).into());
    map.insert(
        "in_use".into(),
        (i64::from(size) - idle as i64).max(0).into(),
    );
    map.insert(
        "max_connections".into(),
        i64::from(settings.max_connections).into(),
    );
    map.insert(
        "min_connections".into(),
        i64::from(settings.min_connections).into(),
    );
    map.insert(
        "acquire_timeout".into(),
        settings.acquire_timeout.as_secs_f64().into(),
    );
    map.insert(
        "idle_timeout".into(),
        settings
            .idle_timeout
            .map_or(Dynamic::UNIT, |t| t.as_secs_f64().into()),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_options_are_checked_by_name() {
        let mut options = Map::new();
        options.insert("max_connections".into(), 20_i64.into());
        options.insert("acquire_timeout".into(), 2.5_f64.into());
        let settings = Settings::parse(&options).unwrap();
        assert_eq!(settings.max_connections, 20);
        assert_eq!(settings.acquire_timeout, Duration::from_millis(2500));
        options.insert("max_conns".into(), 1_i64.into());
        let err = Settings::parse(&options).unwrap_err().to_string();
        assert!(
            err.contains("`max_conns`") && err.contains("max_connections"),
            "{err}"
        );
    }
}
