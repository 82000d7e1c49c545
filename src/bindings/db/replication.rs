//! Replication state, the slowest statements the server has seen, and query plans with their
//! cost and time.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Array, Dynamic, Map};
use tokio::sync::Mutex;

use super::error::DbError;
use super::ops::{first, int, read, rows};
use super::pool::{Database, Pool};
use super::query::{Runner, begin, fetch, finish};
use super::value::Param;
use super::{Outcome, refuse};
use crate::engine::binding::Family;
use crate::engine::context::RunContext;
use crate::engine::convert::from_json;
use crate::transcript::event::Effect;

const PG_REPLICAS: &str = "select coalesce(application_name, '') as name, \
    coalesce(client_addr::text, '') as address, coalesce(state, '') as state, \
    coalesce(sync_state, '') as sync_state, \
    coalesce(extract(epoch from replay_lag)::float8, 0) as lag_seconds, \
    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8, 0) as lag_bytes \
    from pg_stat_replication order by 1";
/// A replica that has replayed all it received is not behind, however long ago the primary
/// last wrote: only then is the time since the last replayed transaction its lag.
const PG_REPLICA_LAG: &str = "select case when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
    then 0 else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::float8, 0) \
    end as lag_seconds";
const PG_RECEIVER: &str = "select status, coalesce(sender_host, '') as sender_host, \
    coalesce(sender_port, 0)::int8 as sender_port from pg_stat_wal_receiver";

fn report(role: &str) -> Map {
    let mut map = Map::new();
    map.insert("role".into(), role.into());
    map.insert("replicas".into(), Array::new().into());
    map
}

async fn postgres_replication(pool: &Pool) -> Result<Map, DbError> {
    let recovery = first(pool, "select pg_is_in_recovery() as replica").await?;
    let replica = recovery.get("replica").and_then(|v| v.as_bool().ok()) == Some(true);
    if !replica {
        let mut map = report("primary");
        let replicas: Array = rows(pool, PG_REPLICAS)
            .await?
            .into_iter()
            .map(Dynamic::from)
            .collect();
        map.insert("replicas".into(), replicas.into());
        return Ok(map);
    }
    let mut map = report("replica");
    let lag = first(pool, PG_REPLICA_LAG).await?;
    map.insert(
        "lag_seconds".into(),
        lag.get("lag_seconds").cloned().unwrap_or_default(),
    );
    let receiver = first(pool, PG_RECEIVER).await?;
    let status = receiver
        .get("status")
        .map_or("stopped".to_owned(), ToString::to_string);
    map.insert("state".into(), status.into());
    let host = receiver
        .get("sender_host")
        .map(ToString::to_string)
        .unwrap_or_default();
    map.insert(
        "primary".into(),
        format!("{host}:{}", int(&receiver, "sender_port")).into(),
    );
    Ok(map)
}

/// Rows of a statement MySQL cannot prepare (SHOW ...), through the text protocol.
async fn show(pool: &Pool, sql: &str) -> Result<Vec<Map>, DbError> {
    let Pool::MySql(p) = pool else {
        return rows(pool, sql).await;
    };
    let found = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(p)
        .await
        .map_err(super::query::failed)?;
    Ok(super::value::rows(&found)?
        .into_iter()
        .filter_map(|r| r.try_cast::<Map>())
        .collect())
}

/// The first of `statements` the server accepts (newer servers renamed them).
async fn show_any(pool: &Pool, statements: &[&str]) -> Result<Vec<Map>, DbError> {
    let mut last = None;
    for statement in statements {
        match show(pool, statement).await {
            Ok(found) => return Ok(found),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or(DbError::NoRow))
}

fn field(row: &Map, names: &[&str]) -> Dynamic {
    names
        .iter()
        .find_map(|n| row.get(*n).cloned())
        .unwrap_or_default()
}

async fn mysql_replication(pool: &Pool) -> Result<Map, DbError> {
    let status = show_any(pool, &["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"]).await?;
    if let Some(row) = status.first() {
        let running = |names: &[&str]| field(row, names).to_string() == "Yes";
        let io = running(&["Replica_IO_Running", "Slave_IO_Running"]);
        let sql = running(&["Replica_SQL_Running", "Slave_SQL_Running"]);
        let mut map = report("replica");
        let state = if io && sql { "streaming" } else { "stopped" };
        map.insert("state".into(), state.into());
        map.insert("io_running".into(), io.into());
        map.insert("sql_running".into(), sql.into());
        let lag = field(row, &["Seconds_Behind_Source", "Seconds_Behind_Master"]);
        let lag = lag
            .as_int()
            .map_or(Dynamic::UNIT, |s| Dynamic::from(s as f64));
        map.insert("lag_seconds".into(), lag);
        let host = field(row, &["Source_Host", "Master_Host"]);
        let port = field(row, &["Source_Port", "Master_Port"]);
        map.insert("primary".into(), format!("{host}:{port}").into());
        let error = field(row, &["Last_Error"]).to_string();
        map.insert("last_error".into(), error.into());
        return Ok(map);
    }
    let hosts = show_any(pool, &["SHOW REPLICAS", "SHOW SLAVE HOSTS"]).await?;
    let mut map = report("primary");
    let replicas: Array = hosts
        .iter()
        .map(|h| {
            let mut replica = Map::new();
            replica.insert(
                "name".into(),
                field(h, &["Server_id", "Server_Id"]).to_string().into(),
            );
            let address = format!("{}:{}", field(h, &["Host"]), field(h, &["Port"]));
            replica.insert("address".into(), address.into());
            replica.insert("state".into(), "connected".into());
            replica.into()
        })
        .collect();
    map.insert("replicas".into(), replicas.into());
    Ok(map)
}

async fn replication(pool: Pool) -> Result<Map, DbError> {
    match pool {
        Pool::Postgres(_) => postgres_replication(&pool).await,
        Pool::MySql(_) => mysql_replication(&pool).await,
        Pool::Sqlite(_) => Err(DbError::Unsupported {
            what: "replication()",
            driver: "sqlite",
        }),
    }
}

const PG_SLOWEST: &str = "select queryid::text as id, query, calls, \
    mean_exec_time::float8 as mean_ms, max_exec_time::float8 as max_ms, \
    total_exec_time::float8 as total_ms, rows from pg_stat_statements \
    order by mean_exec_time desc limit ";
const MYSQL_SLOWEST: &str = "select digest as id, digest_text as query, count_star as calls, \
    avg_timer_wait / 1e9 as mean_ms, max_timer_wait / 1e9 as max_ms, \
    sum_timer_wait / 1e9 as total_ms, sum_rows_sent as `rows` \
    from performance_schema.events_statements_summary_by_digest \
    where digest_text is not null order by avg_timer_wait desc limit ";

async fn slow_queries(pool: Pool, limit: i64) -> Result<Array, DbError> {
    let sql = match pool {
        Pool::Postgres(_) => {
            let installed = first(
                &pool,
                "select count(*)::int8 as n from pg_extension where extname = 'pg_stat_statements'",
            )
            .await?;
            if int(&installed, "n") == 0 {
                return Err(DbError::NotInstalled(
                    "pg_stat_statements is not installed in this database; hint: add it to `shared_preload_libraries` in postgresql.conf, restart the server, then run `create extension pg_stat_statements`".into(),
                ));
            }
            format!("{PG_SLOWEST}{limit}")
        }
        Pool::MySql(_) => {
            let enabled = first(&pool, "select @@performance_schema as on_").await?;
            if int(&enabled, "on_") == 0 {
                return Err(DbError::NotInstalled(
                    "performance_schema is off; hint: set `performance_schema = ON` in the server's configuration and restart it".into(),
                ));
            }
            format!("{MYSQL_SLOWEST}{limit}")
        }
        Pool::Sqlite(_) => {
            return Err(DbError::Unsupported {
                what: "slow_queries()",
                driver: "sqlite",
            });
        }
    };
    Ok(rows(&pool, &sql)
        .await?
        .into_iter()
        .map(Dynamic::from)
        .collect())
}

/// What `explain` was asked for.
struct Explain {
    sql: String,
    params: Vec<Param>,
    analyze: bool,
    runs: usize,
}

fn explain_options(sql: &str, options: &Map) -> Result<Explain, DbError> {
    let mut explain = Explain {
        sql: sql.to_owned(),
        params: Vec::new(),
        analyze: false,
        runs: 1,
    };
    for (key, value) in options {
        match key.as_str() {
            "params" => {
                let list = value
                    .clone()
                    .try_cast::<Array>()
                    .ok_or(DbError::BadOption {
                        key: "params".into(),
                        expects: "takes an array",
                    })?;
                explain.params = Param::all(&list)?;
            }
            "analyze" => {
                explain.analyze = value.as_bool().map_err(|_| DbError::BadOption {
                    key: "analyze".into(),
                    expects: "takes true or false",
                })?;
            }
            "runs" => {
                let runs = value.as_int().ok().filter(|n| (1..=100).contains(n));
                explain.runs = runs.ok_or(DbError::BadOption {
                    key: "runs".into(),
                    expects: "takes a whole number from 1 to 100",
                })? as usize;
            }
            other => {
                return Err(DbError::UnknownOption {
                    key: other.to_owned(),
                    known: "params, analyze, runs",
                });
            }
        }
    }
    Ok(explain)
}

fn json_column(row: &Map) -> serde_json::Value {
    let Some(value) = row.values().next() else {
        return serde_json::Value::Null;
    };
    let json = crate::engine::convert::to_json(value);
    match json {
        serde_json::Value::String(text) => serde_json::from_str(&text).unwrap_or_default(),
        other => other,
    }
}

/// The plan, its estimated cost (when the server gives one) and estimated rows.
async fn plan(pool: &Pool, explain: &Explain) -> Result<Map, DbError> {
    let runner = Runner::Pool(pool.clone());
    let prefix = match pool {
        Pool::Postgres(_) => "EXPLAIN (FORMAT JSON) ",
        Pool::MySql(_) => "EXPLAIN FORMAT=JSON ",
        Pool::Sqlite(_) => "EXPLAIN QUERY PLAN ",
    };
    let sql = format!("{prefix}{}", explain.sql);
    let found = fetch(runner, sql, explain.params.clone()).await?;
    let found: Vec<Map> = found
        .into_iter()
        .filter_map(|r| r.try_cast::<Map>())
        .collect();
    let mut map = Map::new();
    let (plan, cost, rows) = match pool {
        Pool::Postgres(_) => {
            let json = found.first().map(json_column).unwrap_or_default();
            let top = json[0]["Plan"].clone();
            (json, top["Total Cost"].as_f64(), top["Plan Rows"].as_f64())
        }
        Pool::MySql(_) => {
            let json = found.first().map(json_column).unwrap_or_default();
            let block = &json["query_block"];
            let cost = block["cost_info"]["query_cost"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .or_else(|| block["cost"].as_f64());
            // MariaDB gives no cost before 11.0, but every plan names its tables' row estimates.
            let table = match block["nested_loop"][0]["table"].is_object() {
                true => &block["nested_loop"][0]["table"],
                false => &block["table"],
            };
            let rows = table["rows"]
                .as_f64()
                .or_else(|| table["rows_examined_per_scan"].as_f64());
            (json, cost, rows)
        }
        Pool::Sqlite(_) => {
            let steps = found
                .iter()
                .map(|r| r.get("detail").map(ToString::to_string));
            (serde_json::json!(steps.collect::<Vec<_>>()), None, None)
        }
    };
    map.insert("plan".into(), from_json(&plan));
    map.insert("cost".into(), cost.map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("rows".into(), rows.map_or(Dynamic::UNIT, Dynamic::from));
    Ok(map)
}

/// Runs the query `runs` times in a transaction that is rolled back; returns each time in ms.
async fn timings(pool: &Pool, explain: &Explain) -> Result<Vec<f64>, DbError> {
    let tx = Arc::new(Mutex::new(Some(begin(pool).await?)));
    let mut times = Vec::with_capacity(explain.runs);
    for _ in 0..explain.runs {
        let started = Instant::now();
        // On an error the transaction is dropped, which rolls it back.
        fetch(
            Runner::Tx(tx.clone()),
            explain.sql.clone(),
            explain.params.clone(),
        )
        .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    if let Some(open) = tx.lock().await.take() {
        finish(open, false).await?;
    }
    Ok(times)
}

async fn explain(pool: Pool, explain: Explain) -> Result<Map, DbError> {
    let mut map = plan(&pool, &explain).await?;
    if explain.analyze {
        let mut times = timings(&pool, &explain).await?;
        let all: Array = times.iter().map(|t| Dynamic::from(*t)).collect();
        times.sort_by(f64::total_cmp);
        map.insert("time_ms".into(), times[times.len() / 2].into());
        map.insert("times_ms".into(), all.into());
    }
    Ok(map)
}

fn explain_call(ctx: &Arc<RunContext>, db: &Database, sql: &str, options: &Map) -> Outcome<Map> {
    let parsed = explain_options(sql, options)
        .map_err(|err| refuse(ctx, "db::explain", db.target(), err))?;
    let pool = db.pool.clone();
    read(ctx, db, "db::explain", Map::new, explain(pool, parsed))
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.method(
        "replication",
        Some(Effect::Read),
        &["db: &mut Database", "Map"],
        &[
            "Replication as this server sees it. On a primary: `#{role: \"primary\", replicas: [#{name, address, state, sync_state, lag_seconds, lag_bytes}]}` (MySQL lists connected replicas without lag). On a replica: `#{role: \"replica\", state, lag_seconds, primary}` (`state` is `streaming` when it receives and applies changes).",
            "",
            "```rhai",
            "let r = db.replication();",
            "check(\"Replicas streaming\", || r.replicas.all(|x| x.state == \"streaming\"));",
            "```",
        ],
        move |db: &mut Database| {
            let pool = db.pool.clone();
            read(&c, db, "db::replication", Map::new, replication(pool))
        },
    );
    let c = ctx.clone();
    family.method(
        "slow_queries",
        Some(Effect::Read),
        &["db: &mut Database", "limit: i64", "Array"],
        &[
            "The statements with the highest mean time, from pg_stat_statements (PostgreSQL) or performance_schema (MySQL): `[#{id, query, calls, mean_ms, max_ms, total_ms, rows}]`. Fails with a hint when the server does not collect them.",
            "",
            "```rhai",
            "for q in db.slow_queries(5) { log(`${q.mean_ms} ms: ${q.query}`); }",
            "```",
        ],
        move |db: &mut Database, limit: i64| {
            let pool = db.pool.clone();
            read(&c, db, "db::slow_queries", Array::new, slow_queries(pool, limit.clamp(1, 1000)))
        },
    );
    let c = ctx.clone();
    family.method(
        "explain",
        Some(Effect::Read),
        &["db: &mut Database", "sql: &str", "Map"],
        &[
            "The query's plan without running it: `#{plan, cost, rows}` (`cost` and `rows` are the planner's estimates, `()` where the server gives none).",
            "",
            "```rhai",
            "let p = db.explain(\"select * from orders where user_id = 42\");",
            "```",
        ],
        move |db: &mut Database, sql: &str| explain_call(&c, db, sql, &Map::new()),
    );
    let c = ctx.clone();
    family.method(
        "explain",
        Some(Effect::Read),
        &["db: &mut Database", "sql: &str", "options: Map", "Map"],
        &[
            "`explain` with options: `params` (an array), `analyze: true` to also run the query (inside a transaction that is rolled back) and report `time_ms` (the median of `runs` runs, default 1) and `times_ms`.",
            "",
            "```rhai",
            "let p = db.explain(\"select * from orders where user_id = $1\", #{params: [42], analyze: true, runs: 3});",
            "check(\"Orders query under 50 ms\", || p.time_ms < 50.0);",
            "```",
        ],
        move |db: &mut Database, sql: &str, options: Map| explain_call(&c, db, sql, &options),
    );
}
