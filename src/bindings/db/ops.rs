//! What an operator asks a database before a deploy: is it up and how fast, which version,
//! how many connections against the limit, how the pool is used, which migrations ran.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Array, Dynamic, Map};

use super::Outcome;
use super::error::DbError;
use super::pool::{Database, Pool, usage};
use super::query::{Runner, fetch};
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

/// Every row of an internal query, as maps.
pub async fn rows(pool: &Pool, sql: &str) -> Result<Vec<Map>, DbError> {
    let found = fetch(Runner::Pool(pool.clone()), sql.to_owned(), Vec::new()).await?;
    Ok(found
        .into_iter()
        .filter_map(|r| r.try_cast::<Map>())
        .collect())
}

/// The first row of an internal query, or an empty map.
pub async fn first(pool: &Pool, sql: &str) -> Result<Map, DbError> {
    Ok(rows(pool, sql)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// An integer field of a row; 0 when it is missing or not a number.
pub fn int(row: &Map, key: &str) -> i64 {
    row.get(key)
        .and_then(|v| {
            v.as_int()
                .ok()
                .or_else(|| v.as_float().ok().map(|f| f as i64))
                .or_else(|| v.to_string().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one read of `db` through the call path.
pub fn read<T, F>(
    ctx: &Arc<RunContext>,
    db: &Database,
    name: &'static str,
    planned: impl FnOnce() -> T,
    work: F,
) -> Outcome<T>
where
    F: std::future::Future<Output = Result<T, DbError>>,
{
    Call::new(ctx, name, Effect::Read, db.target())
        .run(planned, async move { work.await.map_err(Failure::from) })
}

async fn ping(pool: Pool) -> Result<Map, DbError> {
    let started = Instant::now();
    rows(&pool, "select 1 as ok").await?;
    let mut map = Map::new();
    map.insert("ok".into(), true.into());
    map.insert(
        "latency_ms".into(),
        (started.elapsed().as_secs_f64() * 1000.0).into(),
    );
    Ok(map)
}

async fn server_version(pool: Pool) -> Result<String, DbError> {
    let sql = match pool {
        Pool::Postgres(_) => "select current_setting('server_version') as v",
        Pool::MySql(_) => "select version() as v",
        Pool::Sqlite(_) => "select sqlite_version() as v",
    };
    let row = first(&pool, sql).await?;
    Ok(row.get("v").map(ToString::to_string).unwrap_or_default())
}

const PG_CONNECTIONS: &str = "select coalesce(state, 'unknown') as state, \
    coalesce(datname, '') as database, count(*)::int8 as n \
    from pg_stat_activity where backend_type = 'client backend' group by 1, 2";
const PG_LIMITS: &str = "select current_setting('max_connections')::int8 as max, \
    current_setting('superuser_reserved_connections')::int8 as reserved";
const MYSQL_CONNECTIONS: &str = "select lower(command) as state, coalesce(db, '') as `database`, \
    count(*) as n from information_schema.processlist group by 1, 2";
const MYSQL_LIMITS: &str = "select @@max_connections as max, 0 as reserved";

async fn connections(pool: Pool) -> Result<Map, DbError> {
    let (by, limits) = match pool {
        Pool::Postgres(_) => (PG_CONNECTIONS, PG_LIMITS),
        Pool::MySql(_) => (MYSQL_CONNECTIONS, MYSQL_LIMITS),
        Pool::Sqlite(_) => {
            return Err(DbError::Unsupported {
                what: "connections()",
                driver: "sqlite",
            });
        }
    };
    let groups = rows(&pool, by).await?;
    let limits = first(&pool, limits).await?;
    let mut by_state = Map::new();
    let mut by_database = Map::new();
    let mut total = 0;
    for group in &groups {
        let n = int(group, "n");
        total += n;
        for (map, key) in [(&mut by_state, "state"), (&mut by_database, "database")] {
            let name = group.get(key).map(ToString::to_string).unwrap_or_default();
            let before = map
                .get(name.as_str())
                .and_then(|v| v.as_int().ok())
                .unwrap_or(0);
            map.insert(name.into(), (before + n).into());
        }
    }
    let max = int(&limits, "max");
    let reserved = int(&limits, "reserved");
    let mut map = Map::new();
    map.insert("total".into(), total.into());
    map.insert("max".into(), max.into());
    map.insert("reserved".into(), reserved.into());
    map.insert("available".into(), (max - reserved - total).max(0).into());
    let usage = if max > 0 {
        total as f64 / max as f64
    } else {
        0.0
    };
    map.insert("usage".into(), usage.into());
    map.insert("by_state".into(), by_state.into());
    map.insert("by_database".into(), by_database.into());
    Ok(map)
}

/// The tables migration tools keep, in the order they are looked for.
const MIGRATION_TABLES: [&str; 3] = ["alembic_version", "_sqlx_migrations", "schema_migrations"];

async fn migration_table(pool: &Pool) -> Result<Option<&'static str>, DbError> {
    let names = MIGRATION_TABLES.map(|t| format!("'{t}'")).join(", ");
    let sql = match pool {
        Pool::Postgres(_) => format!(
            "select relname::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where relname in ({names}) and relkind in ('r', 'p', 'v') \
             and n.nspname = any(current_schemas(false))"
        ),
        Pool::MySql(_) => format!(
            "select table_name as name from information_schema.tables \
             where table_schema = database() and table_name in ({names})"
        ),
        Pool::Sqlite(_) => {
            format!("select name from sqlite_master where type = 'table' and name in ({names})")
        }
    };
    let found: Vec<String> = rows(pool, &sql)
        .await?
        .iter()
        .filter_map(|r| r.get("name").map(ToString::to_string))
        .collect();
    Ok(MIGRATION_TABLES
        .into_iter()
        .find(|t| found.iter().any(|f| f == t)))
}

fn migration_report(tool: Option<&str>, current: Dynamic, applied: Array, failed: Array) -> Map {
    let mut map = Map::new();
    map.insert(
        "tool".into(),
        tool.map_or(Dynamic::UNIT, |t| Dynamic::from(t.to_owned())),
    );
    map.insert("found".into(), tool.is_some().into());
    map.insert("current".into(), current);
    map.insert("applied".into(), applied.into());
    map.insert("failed".into(), failed.into());
    map
}

async fn migrations(pool: Pool) -> Result<Map, DbError> {
    let Some(table) = migration_table(&pool).await? else {
        let mut map = migration_report(None, Dynamic::UNIT, Array::new(), Array::new());
        map.insert(
            "note".into(),
            format!(
                "no migrations table (looked for {})",
                MIGRATION_TABLES.join(", ")
            )
            .into(),
        );
        return Ok(map);
    };
    match table {
        "alembic_version" => alembic(&pool).await,
        "_sqlx_migrations" => sqlx_migrations(&pool).await,
        _ => schema_migrations(&pool).await,
    }
}

/// Alembic keeps only its current heads; more than one means unmerged branches.
async fn alembic(pool: &Pool) -> Result<Map, DbError> {
    let mut heads: Vec<String> = rows(pool, "select version_num from alembic_version")
        .await?
        .iter()
        .filter_map(|r| r.get("version_num").map(ToString::to_string))
        .collect();
    heads.sort();
    let current = match heads.len() {
        0 => Dynamic::UNIT,
        _ => Dynamic::from(heads.join(",")),
    };
    let applied: Array = heads.into_iter().map(Dynamic::from).collect();
    let mut map = migration_report(Some("alembic"), current, applied.clone(), Array::new());
    map.insert("heads".into(), applied.into());
    Ok(map)
}

async fn sqlx_migrations(pool: &Pool) -> Result<Map, DbError> {
    let found = rows(
        pool,
        "select version, description, installed_on, success from _sqlx_migrations order by version",
    )
    .await?;
    let mut applied = Array::new();
    let mut failed = Array::new();
    let mut current = Dynamic::UNIT;
    for mut row in found {
        let version = row
            .get("version")
            .map(ToString::to_string)
            .unwrap_or_default();
        row.insert("version".into(), version.clone().into());
        let ok = row.get("success").is_none_or(|s| {
            s.as_bool().ok().or_else(|| s.as_int().ok().map(|n| n != 0)) != Some(false)
        });
        if ok {
            current = version.into();
        } else {
            failed.push(row.get("version").cloned().unwrap_or_default());
        }
        applied.push(row.into());
    }
    Ok(migration_report(Some("sqlx"), current, applied, failed))
}

/// `schema_migrations` as Rails, dbmate and golang-migrate keep it: a `version` column, and
/// with golang-migrate a `dirty` flag.
async fn schema_migrations(pool: &Pool) -> Result<Map, DbError> {
    let found = rows(pool, "select * from schema_migrations").await?;
    let mut versions: Vec<String> = found
        .iter()
        .filter_map(|r| r.get("version").map(ToString::to_string))
        .collect();
    let numeric = versions.iter().all(|v| v.parse::<i128>().is_ok());
    if numeric {
        versions.sort_by_key(|v| v.parse::<i128>().unwrap_or_default());
    } else {
        versions.sort();
    }
    let dirty: Array = found
        .iter()
        .filter(|r| r.get("dirty").is_some_and(|d| d.as_bool() == Ok(true)))
        .filter_map(|r| r.get("version").map(|v| Dynamic::from(v.to_string())))
        .collect();
    let current = versions
        .last()
        .cloned()
        .map_or(Dynamic::UNIT, Dynamic::from);
    let applied = versions.into_iter().map(Dynamic::from).collect();
    Ok(migration_report(
        Some("schema_migrations"),
        current,
        applied,
        dirty,
    ))
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.method(
        "ping",
        Some(Effect::Read),
        &["db: &mut Database", "Map"],
        &[
            "Runs a trivial query and returns `#{ok, latency_ms}`.",
            "",
            "```rhai",
            "check(\"Database answers quickly\", || db.ping().latency_ms < 50.0);",
            "```",
        ],
        move |db: &mut Database| {
            let pool = db.pool.clone();
            read(&c, db, "db::ping", Map::new, ping(pool))
        },
    );
    let c = ctx.clone();
    family.method(
        "server_version",
        Some(Effect::Read),
        &["db: &mut Database", "String"],
        &[
            "The server's version text (`15.4`, `10.11.6-MariaDB`, `3.45.1` for SQLite).",
            "",
            "```rhai",
            "log(`PostgreSQL ${db.server_version()}`);",
            "```",
        ],
        move |db: &mut Database| {
            let pool = db.pool.clone();
            read(
                &c,
                db,
                "db::server_version",
                String::new,
                server_version(pool),
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "connections",
        Some(Effect::Read),
        &["db: &mut Database", "Map"],
        &[
            "Connections to the server against its limit: `#{total, max, reserved, available, usage, by_state, by_database}` (`usage` is total / max). PostgreSQL and MySQL only.",
            "",
            "```rhai",
            "let c = db.connections();",
            "check(\"Connections below 80%\", || c.usage < 0.8);",
            "```",
        ],
        move |db: &mut Database| {
            let pool = db.pool.clone();
            read(&c, db, "db::connections", Map::new, connections(pool))
        },
    );
    family.method(
        "pool",
        None,
        &["db: &mut Database", "Map"],
        &[
            "This run's pool for the database: `#{size, idle, in_use, max_connections, min_connections, acquire_timeout, idle_timeout}`.",
            "",
            "```rhai",
            "log(`pool holds ${db.pool().size} connections`);",
            "```",
        ],
        |db: &mut Database| usage(db),
    );
    let c = ctx.clone();
    family.method(
        "migrations",
        Some(Effect::Read),
        &["db: &mut Database", "Map"],
        &[
            "Which migrations ran, from Alembic's `alembic_version`, sqlx's `_sqlx_migrations` or a `schema_migrations` table: `#{tool, found, current, applied, failed}` (`heads` too for Alembic). `current` is text, to compare with the expected head.",
            "",
            "```rhai",
            "check(\"Migrations at head\", || db.migrations().current == param(\"head\"));",
            "```",
        ],
        move |db: &mut Database| {
            let pool = db.pool.clone();
            read(&c, db, "db::migrations", Map::new, migrations(pool))
        },
    );
}
