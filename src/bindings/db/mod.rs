//! `db::`: PostgreSQL, MySQL/MariaDB and SQLite through sqlx. `db::connect` gives a
//! `Database` whose methods query, change data, and report on migrations, connections,
//! replication and slow queries; `db::backup` and friends use the servers' own dump tools.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map};
use serde_json::json;

use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::engine::convert::to_json;
use crate::secret::Secret;
use crate::transcript::event::Effect;

pub mod backup;
pub mod endpoint;
pub mod error;
pub mod ops;
pub mod pool;
pub mod query;
pub mod replication;
pub mod value;

use endpoint::{Endpoint, Options};
use error::DbError;
use pool::{Database, Pool, Pools, Settings};

pub(crate) type Outcome<T> = Result<T, Box<EvalAltResult>>;

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("db");
    family.module.set_custom_type::<Database>("Database");
    let pools = Pools::default();
    let (c, p) = (ctx.clone(), pools.clone());
    family.function(
        "connect",
        Some(Effect::Read),
        &["url: Dynamic", "Database"],
        &[
            "Connects to a database: `postgres://user@host:5432/db`, `mysql://` or `mariadb://`, `sqlite://path.db` (relative to the runbook) or `sqlite::memory:`. The URL may be a Secret; its password is masked everywhere. Pools are shared per URL for the whole run. A server that is not on this machine gets TLS with a verified certificate unless the URL says `sslmode=` (PostgreSQL) or `ssl-mode=` (MySQL); plaintext to it needs `sslmode=disable` explicitly.",
            "",
            "```rhai",
            "let db = db::connect(secret(\"DATABASE_URL\"));",
            "```",
        ],
        move |url: Dynamic| connect(&c, &p, &url, &Map::new()),
    );
    let (c, p) = (ctx.clone(), pools.clone());
    family.function(
        "connect",
        Some(Effect::Read),
        &["url: Dynamic", "options: Map", "Database"],
        &[
            "`connect` with pool settings: `max_connections` (default 5), `min_connections`, `acquire_timeout` and `idle_timeout` (seconds).",
            "",
            "```rhai",
            "let db = db::connect(secret(\"DATABASE_URL\"), #{max_connections: 2, acquire_timeout: 5});",
            "```",
        ],
        move |url: Dynamic, options: Map| {
            connect(&c, &p, &url, &options)
        },
    );
    family.method(
        "target",
        None,
        &["db: &mut Database", "String"],
        &[
            "The database as output shows it: the URL without password or query.",
            "",
            "```rhai",
            "log(`checking ${db.target()}`);",
            "```",
        ],
        |db: &mut Database| db.target().to_owned(),
    );
    query::register(&mut family, ctx);
    ops::register(&mut family, ctx);
    replication::register(&mut family, ctx);
    backup::register(&mut family, ctx, &pools);
    family
}

/// A failure found before a call could start, in the form the call path gives errors.
pub(crate) fn refuse(
    ctx: &RunContext,
    name: &str,
    target: &str,
    error: DbError,
) -> Box<EvalAltResult> {
    let failure = Failure::from(error);
    let mut text = format!("{name} on {target}: {}", failure.message);
    for cause in &failure.causes {
        if *cause != failure.message {
            text.push_str("\ncaused by: ");
            text.push_str(cause);
        }
    }
    ctx.masker.mask(&text).into()
}

/// The URL's text, from a string or a Secret; its password is registered for masking first.
pub(crate) fn url_text(ctx: &RunContext, name: &str, url: &Dynamic) -> Outcome<String> {
    let text = match url.clone().try_cast::<Secret>() {
        Some(secret) => secret.expose().to_owned(),
        None if url.is_string() => url.to_string(),
        None => {
            return Err(format!(
                "{name}: the URL must be text or a Secret, not {}",
                url.type_name()
            )
            .into());
        }
    };
    if let Some((raw, decoded)) = endpoint::password_of(&text) {
        ctx.masker.add(&raw);
        ctx.masker.add(&decoded);
    }
    Ok(text)
}

/// The URL without credentials or query, for errors raised before it could be parsed.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "(unreadable URL)".to_owned(),
    }
}

/// Parses a URL for `name`, with errors in the call path's form.
pub(crate) fn parse_url(
    ctx: &RunContext,
    name: &str,
    url: &Dynamic,
) -> Outcome<(String, Endpoint)> {
    let text = url_text(ctx, name, url)?;
    let endpoint = Endpoint::parse(&text, &ctx.runbook_dir)
        .map_err(|err| refuse(ctx, name, &redacted(&text), err))?;
    Ok((text, endpoint))
}

fn connect(
    ctx: &Arc<RunContext>,
    pools: &Pools,
    url: &Dynamic,
    options: &Map,
) -> Outcome<Database> {
    let (text, endpoint) = parse_url(ctx, "db::connect", url)?;
    let settings = Settings::parse(options)
        .map_err(|err| refuse(ctx, "db::connect", &endpoint.target, err))?;
    open(ctx, pools, &text, endpoint, settings, options)
}

/// The pool for `url`, opened through the call path the first time.
pub(crate) fn open(
    ctx: &Arc<RunContext>,
    pools: &Pools,
    url: &str,
    endpoint: Endpoint,
    settings: Settings,
    options: &Map,
) -> Outcome<Database> {
    if let Some(database) = pools.get(url, &settings) {
        return Ok(database);
    }
    let planned_endpoint = endpoint.clone();
    let planned_settings = settings.clone();
    let asked = settings.clone();
    let runtime = ctx.runtime.clone();
    let database = Call::new(ctx, "db::connect", Effect::Read, endpoint.target.clone())
        .args(json!({ "options": to_json(&Dynamic::from(options.clone())) }))
        .run(
            move || lazy(&runtime, planned_endpoint, planned_settings),
            async move { pool::open(endpoint, settings).await.map_err(Failure::from) },
        )?;
    if !ctx.is_plan() {
        pools.put(url, &asked, database.clone());
    }
    Ok(database)
}

/// A database that has not connected, for plans: nothing is sent until it is used, and in a
/// plan it never is. sqlx spawns the pool's tasks at once, so this enters the runtime.
fn lazy(runtime: &tokio::runtime::Handle, endpoint: Endpoint, settings: Settings) -> Database {
    let _inside = runtime.enter();
    let pool = match &endpoint.options {
        Options::Postgres(o) => {
            Pool::Postgres(sqlx::pool::PoolOptions::new().connect_lazy_with(o.clone()))
        }
        Options::MySql(o) => {
            Pool::MySql(sqlx::pool::PoolOptions::new().connect_lazy_with(o.clone()))
        }
        Options::Sqlite { options, .. } => {
            Pool::Sqlite(sqlx::pool::PoolOptions::new().connect_lazy_with(options.clone()))
        }
    };
    Database {
        pool,
        endpoint: Arc::new(endpoint),
        settings,
    }
}
