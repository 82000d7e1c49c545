//! Running SQL: `query`, `query_one`, `scalar`, `execute` (rehearsed in a rolled-back
//! transaction on a dry run) and `transaction`, on a database or inside a transaction.

use std::sync::Arc;

use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};
use serde_json::json;
use tokio::sync::Mutex;

use super::endpoint::{Driver, Endpoint};
use super::error::DbError;
use super::pool::{Database, Pool, on_pool};
use super::value::{Param, prepared, rows};
use super::{Outcome, refuse};
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::{Mode, RunContext};
use crate::engine::convert::to_json;
use crate::transcript::event::Effect;

/// An open transaction of one of the drivers.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

macro_rules! on_tx {
    ($tx:expr, $t:ident => $body:expr) => {
        match $tx {
            Tx::Postgres($t) => $body,
            Tx::MySql($t) => $body,
            Tx::Sqlite($t) => $body,
        }
    };
}

/// The `tx` a transaction's closure receives. It ends when the closure returns.
#[derive(Clone)]
pub struct Transaction {
    open: Arc<Mutex<Option<Tx>>>,
    endpoint: Arc<Endpoint>,
}

/// Where SQL runs: the pool, or an open transaction.
#[derive(Clone)]
pub enum Runner {
    Pool(Pool),
    Tx(Arc<Mutex<Option<Tx>>>),
}

/// What both a database and a transaction can run SQL on.
pub trait Session: Clone + Send + Sync + 'static {
    fn runner(&self) -> Runner;
    fn endpoint(&self) -> &Endpoint;
}

impl Session for Database {
    fn runner(&self) -> Runner {
        Runner::Pool(self.pool.clone())
    }
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Session for Transaction {
    fn runner(&self) -> Runner {
        Runner::Tx(self.open.clone())
    }
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

pub fn failed(source: sqlx::Error) -> DbError {
    DbError::QueryFailed {
        source: source.into(),
    }
}

/// Every row `sql` returns.
pub async fn fetch(runner: Runner, sql: String, params: Vec<Param>) -> Result<Array, DbError> {
    match runner {
        Runner::Pool(pool) => on_pool!(&pool, p => {
            let found = prepared!(sql, params).fetch_all(p).await.map_err(failed)?;
            rows(&found)
        }),
        Runner::Tx(open) => {
            let mut guard = open.lock().await;
            let tx = guard.as_mut().ok_or(DbError::TransactionEnded)?;
            on_tx!(tx, t => {
                let found = prepared!(sql, params).fetch_all(&mut **t).await.map_err(failed)?;
                rows(&found)
            })
        }
    }
}

/// Runs a statement and returns the rows it affected. Without parameters the SQL may hold
/// several statements (a migration script); with them it must be one.
pub async fn execute(runner: Runner, sql: String, params: Vec<Param>) -> Result<u64, DbError> {
    let raw = params.is_empty();
    match runner {
        Runner::Pool(pool) => on_pool!(&pool, p => {
            let done = if raw {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(p).await
            } else {
                prepared!(sql, params).execute(p).await
            };
            Ok(done.map_err(failed)?.rows_affected())
        }),
        Runner::Tx(open) => {
            let mut guard = open.lock().await;
            let tx = guard.as_mut().ok_or(DbError::TransactionEnded)?;
            on_tx!(tx, t => {
                let done = if raw {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await
                } else {
                    prepared!(sql, params).execute(&mut **t).await
                };
                Ok(done.map_err(failed)?.rows_affected())
            })
        }
    }
}

/// Opens a transaction on the pool.
pub async fn begin(pool: &Pool) -> Result<Tx, DbError> {
    Ok(match pool {
        Pool::Postgres(p) => Tx::Postgres(p.begin().await.map_err(failed)?),
        Pool::MySql(p) => Tx::MySql(p.begin().await.map_err(failed)?),
        Pool::Sqlite(p) => Tx::Sqlite(p.begin().await.map_err(failed)?),
    })
}

/// Ends a transaction: commits it, or rolls it back.
pub async fn finish(tx: Tx, commit: bool) -> Result<(), DbError> {
    let done = if commit {
        on_tx!(tx, t => t.commit().await)
    } else {
        on_tx!(tx, t => t.rollback().await)
    };
    done.map_err(failed)
}

/// Runs `sql` in a transaction that is always rolled back; returns what it would affect.
pub async fn rehearse(pool: Pool, sql: String, params: Vec<Param>) -> Result<u64, DbError> {
    let tx = Arc::new(Mutex::new(Some(begin(&pool).await?)));
    let affected = execute(Runner::Tx(tx.clone()), sql, params).await;
    if let Some(tx) = tx.lock().await.take() {
        finish(tx, false).await?;
    }
    affected
}

/// Statements that cannot be rehearsed: the server commits them on its own (MySQL's DDL) or
/// refuses them inside a transaction (VACUUM, CREATE DATABASE, ... CONCURRENTLY).
pub fn rehearsable(driver: Driver, sql: &str) -> bool {
    sql.split(';')
        .map(|statement| statement.trim().to_ascii_uppercase())
        .filter(|statement| !statement.is_empty())
        .all(|statement| {
            let first = statement.split_whitespace().next().unwrap_or_default();
            let outside = match driver {
                Driver::MySql => matches!(
                    first,
                    "CREATE"
                        | "ALTER"
                        | "DROP"
                        | "RENAME"
                        | "TRUNCATE"
                        | "GRANT"
                        | "REVOKE"
                        | "LOCK"
                        | "UNLOCK"
                        | "OPTIMIZE"
                        | "ANALYZE"
                        | "FLUSH"
                ),
                Driver::Postgres => {
                    first == "VACUUM"
                        || statement.contains("CONCURRENTLY")
                        || ["ALTER SYSTEM", "CREATE DATABASE", "DROP DATABASE"]
                            .iter()
                            .chain(&["CREATE TABLESPACE", "DROP TABLESPACE"])
                            .any(|prefix| statement.starts_with(prefix))
                }
                Driver::Sqlite => first == "VACUUM",
            };
            !outside
        })
}

fn args(sql: &str, params: &Array) -> serde_json::Value {
    let params: Vec<serde_json::Value> = params.iter().map(to_json).collect();
    json!({ "sql": sql, "params": params })
}

fn query<S: Session>(ctx: &Arc<RunContext>, s: &S, sql: &str, params: &Array) -> Outcome<Array> {
    let target = s.endpoint().target.clone();
    let bound = Param::all(params).map_err(|err| refuse(ctx, "db::query", &target, err))?;
    let runner = s.runner();
    let sql_owned = sql.to_owned();
    Call::new(ctx, "db::query", Effect::Read, target)
        .args(args(sql, params))
        .run(Array::new, async move {
            fetch(runner, sql_owned, bound).await.map_err(Failure::from)
        })
}

fn query_one<S: Session>(
    ctx: &Arc<RunContext>,
    s: &S,
    sql: &str,
    params: &Array,
) -> Outcome<Dynamic> {
    let found = query(ctx, s, sql, params)?;
    if ctx.is_plan() {
        return Ok(Dynamic::UNIT);
    }
    found
        .into_iter()
        .next()
        .ok_or_else(|| refuse(ctx, "db::query_one", &s.endpoint().target, DbError::NoRow))
}

fn scalar<S: Session>(ctx: &Arc<RunContext>, s: &S, sql: &str, params: &Array) -> Outcome<Dynamic> {
    let found = query(ctx, s, sql, params)?;
    let first = found
        .into_iter()
        .next()
        .and_then(|row| row.try_cast::<Map>())
        .and_then(|row| row.into_iter().next().map(|(_, value)| value));
    Ok(first.unwrap_or(Dynamic::UNIT))
}

fn affected(rows: Option<u64>, committed: bool) -> Map {
    let mut map = Map::new();
    map.insert(
        "rows_affected".into(),
        rows.map_or(Dynamic::UNIT, |n| Dynamic::from(n as i64)),
    );
    map.insert("committed".into(), committed.into());
    map
}

fn execute_call<S: Session>(
    ctx: &Arc<RunContext>,
    s: &S,
    sql: &str,
    params: &Array,
) -> Outcome<Map> {
    let target = s.endpoint().target.clone();
    let bound = Param::all(params).map_err(|err| refuse(ctx, "db::execute", &target, err))?;
    let runner = s.runner();
    let sql_owned = sql.to_owned();
    let call =
        Call::new(ctx, "db::execute", Effect::Mutate, target.clone()).args(args(sql, params));
    if ctx.mode != Mode::DryRun {
        let committed = matches!(runner, Runner::Pool(_));
        return call.run(|| affected(None, false), async move {
            let n = execute(runner, sql_owned, bound).await?;
            Ok(affected(Some(n), committed))
        });
    }
    call.run(|| affected(None, false), std::future::ready(Ok(Map::new())))?;
    if !rehearsable(s.endpoint().driver, sql) {
        return Ok(affected(None, false));
    }
    let mut rehearsal = args(sql, params);
    rehearsal["rehearsal"] = "in a transaction that is rolled back".into();
    Call::new(ctx, "db::execute", Effect::Read, target)
        .args(rehearsal)
        .run(|| affected(None, false), async move {
            let n = match runner {
                Runner::Pool(pool) => rehearse(pool, sql_owned, bound).await?,
                tx @ Runner::Tx(_) => execute(tx, sql_owned, bound).await?,
            };
            Ok(affected(Some(n), false))
        })
}

fn transaction(
    ctx: &Arc<RunContext>,
    call: &NativeCallContext,
    db: &Database,
    body: &FnPtr,
) -> Outcome<Dynamic> {
    let target = db.target().to_owned();
    let pool = db.pool.clone();
    let opened = Call::new(ctx, "db::transaction", Effect::Read, target.clone())
        .args(json!({ "phase": "begin" }))
        .run(|| None, async move { Ok(Some(begin(&pool).await?)) })?;
    let tx = Transaction {
        open: Arc::new(Mutex::new(opened)),
        endpoint: db.endpoint.clone(),
    };
    let result = body.call_within_context::<Dynamic>(call, (Dynamic::from(tx.clone()),));
    let commit = result.is_ok() && ctx.mode == Mode::Run;
    let (effect, phase) = match (commit, &result) {
        (true, _) => (Effect::Mutate, "commit"),
        (false, Err(_)) => (Effect::Read, "rollback after an error"),
        (false, Ok(_)) => (Effect::Read, "rollback (dry run)"),
    };
    let open = tx.open.clone();
    let ended = Call::new(ctx, "db::transaction", effect, target)
        .args(json!({ "phase": phase }))
        .run(|| (), async move {
            if let Some(tx) = open.lock().await.take() {
                finish(tx, commit).await?;
            }
            Ok(())
        });
    // The transaction must not outlive its closure, even when ending it was refused: dropping
    // it rolls it back.
    if let Ok(mut open) = tx.open.try_lock() {
        open.take();
    }
    let value = result?;
    ended?;
    Ok(value)
}

/// `query`, `query_one`, `scalar` and `execute` on a database or a transaction.
fn register_statements<S: Session>(family: &mut Family, ctx: &Arc<RunContext>, kind: &str) {
    let receiver = format!("{}: &mut {kind}", kind.to_lowercase());
    let var = if kind == "Database" { "db" } else { "tx" };
    let c = ctx.clone();
    family.method(
        "query",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "params: Array", "Array"],
        &[
            "Runs a query and returns its rows as maps: integers, floats, booleans and text as themselves, JSON as maps, timestamps, numerics and UUIDs as text, bytes as blobs, NULL as `()`. Parameters are `$1`, `$2` (PostgreSQL) or `?` (MySQL, SQLite).",
            "",
            "```rhai",
            &format!("let users = {var}.query(\"select id, email from users where active = $1\", [true]);"),
            "```",
        ],
        move |s: &mut S, sql: &str, params: Array| query(&c, s, sql, &params),
    );
    let c = ctx.clone();
    family.method(
        "query",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "Array"],
        &[
            "`query` without parameters.",
            "",
            "```rhai",
            &format!("let tables = {var}.query(\"select tablename from pg_tables\");"),
            "```",
        ],
        move |s: &mut S, sql: &str| query(&c, s, sql, &Array::new()),
    );
    let c = ctx.clone();
    family.method(
        "query_one",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "params: Array", "Map"],
        &[
            "The first row of a query; an error when there is none.",
            "",
            "```rhai",
            &format!("let user = {var}.query_one(\"select * from users where id = $1\", [42]);"),
            "```",
        ],
        move |s: &mut S, sql: &str, params: Array| query_one(&c, s, sql, &params),
    );
    let c = ctx.clone();
    family.method(
        "query_one",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "Map"],
        &[
            "`query_one` without parameters.",
            "",
            "```rhai",
            &format!("let row = {var}.query_one(\"select now() as at\");"),
            "```",
        ],
        move |s: &mut S, sql: &str| query_one(&c, s, sql, &Array::new()),
    );
    let c = ctx.clone();
    family.method(
        "scalar",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "params: Array", "Dynamic"],
        &[
            "The first column of the first row, or `()` when there is no row.",
            "",
            "```rhai",
            &format!("let n = {var}.scalar(\"select count(*) from orders where status = $1\", [\"open\"]);"),
            "```",
        ],
        move |s: &mut S, sql: &str, params: Array| scalar(&c, s, sql, &params),
    );
    let c = ctx.clone();
    family.method(
        "scalar",
        Some(Effect::Read),
        &[&receiver, "sql: &str", "Dynamic"],
        &[
            "`scalar` without parameters.",
            "",
            "```rhai",
            &format!("let n = {var}.scalar(\"select count(*) from users\");"),
            "```",
        ],
        move |s: &mut S, sql: &str| scalar(&c, s, sql, &Array::new()),
    );
    let c = ctx.clone();
    family.method(
        "execute",
        Some(Effect::Mutate),
        &[&receiver, "sql: &str", "params: Array", "Map"],
        &[
            "Runs a statement that changes data and returns `#{rows_affected, committed}`. On a dry run it runs inside a transaction that is rolled back, so the rows it would affect are reported and nothing changes (statements the server cannot roll back are only recorded).",
            "",
            "```rhai",
            &format!("let done = {var}.execute(\"update users set active = false where last_seen < $1\", [\"2024-01-01\"]);"),
            "```",
        ],
        move |s: &mut S, sql: &str, params: Array| execute_call(&c, s, sql, &params),
    );
    let c = ctx.clone();
    family.method(
        "execute",
        Some(Effect::Mutate),
        &[&receiver, "sql: &str", "Map"],
        &[
            "`execute` without parameters; the SQL may then hold several statements.",
            "",
            "```rhai",
            &format!("{var}.execute(\"delete from sessions where expires_at < now()\");"),
            "```",
        ],
        move |s: &mut S, sql: &str| execute_call(&c, s, sql, &Array::new()),
    );
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>) {
    family.module.set_custom_type::<Transaction>("Transaction");
    register_statements::<Database>(family, ctx, "Database");
    register_statements::<Transaction>(family, ctx, "Transaction");
    let c = ctx.clone();
    family.method(
        "transaction",
        Some(Effect::Mutate),
        &["db: &mut Database", "body: FnPtr", "Dynamic"],
        &[
            "Runs `body` with a transaction `tx`: committed when `body` returns, rolled back when it throws, and always rolled back on a dry run. Returns what `body` returns. Inside, use `tx` rather than `db`.",
            "",
            "```rhai",
            "db.transaction(|tx| {",
            "    tx.execute(\"update accounts set balance = balance - 10 where id = $1\", [1]);",
            "    tx.execute(\"update accounts set balance = balance + 10 where id = $1\", [2]);",
            "});",
            "```",
        ],
        move |call: NativeCallContext, db: &mut Database, body: FnPtr| {
            transaction(&c, &call, db, &body)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_the_server_commits_by_itself_are_not_rehearsed() {
        assert!(rehearsable(Driver::MySql, "update t set a = 1"));
        assert!(!rehearsable(
            Driver::MySql,
            "update t set a = 1; alter table t add b int"
        ));
        assert!(rehearsable(Driver::Postgres, "alter table t add b int"));
        assert!(!rehearsable(Driver::Postgres, "vacuum analyze t"));
        assert!(!rehearsable(
            Driver::Postgres,
            "create index concurrently i on t (a)"
        ));
        assert!(!rehearsable(Driver::Sqlite, "VACUUM"));
    }
}
