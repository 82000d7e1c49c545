//! `redis::`: one Redis server (`redis::connect`), a Sentinel (`redis::sentinel`) or a
//! Cluster (`redis::cluster`), for reachability, roles, memory, cache efficiency and keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use rhai::{Dynamic, EvalAltResult, Map};
use serde_json::json;

use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::secret::Secret;
use crate::transcript::event::Effect;

pub mod cluster;
pub mod error;
pub mod reply;
pub mod sentinel;

use error::RedisError;
use reply::{parse_info, text_of};

pub(crate) type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// One Redis server as scripts hold it.
#[derive(Clone)]
pub struct Redis {
    /// None only in a plan, where no call reaches the server.
    connection: Option<MultiplexedConnection>,
    target: Arc<str>,
}

/// Connections opened during the run, by URL.
#[derive(Clone, Default)]
pub struct Connections {
    open: Arc<Mutex<HashMap<String, Redis>>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL as output shows it: without user, password or query.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map_or(String::new(), |p| format!(":{p}"));
            let path = match parsed.path() {
                "" | "/" => String::new(),
                path => path.to_owned(),
            };
            format!("{}://{host}{port}{path}", parsed.scheme())
        }
        Err(_) => "(unreadable URL)".to_owned(),
    }
}

/// The URL's text from a string or a Secret, its password registered for masking first.
pub fn url_text(ctx: &RunContext, name: &str, url: &Dynamic) -> Outcome<String> {
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
    if let Some((raw, decoded)) = crate::bindings::db::endpoint::password_of(&text) {
        ctx.masker.add(&raw);
        ctx.masker.add(&decoded);
    }
    Ok(text)
}

/// Opens a multiplexed connection to one server.
pub async fn open(url: &str) -> Result<MultiplexedConnection, RedisError> {
    let client = ::redis::Client::open(url).map_err(|source| RedisError::InvalidUrl { source })?;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|source| RedisError::ConnectFailed { source })
}

/// Sends one command; `words` are the command and its arguments.
pub async fn command(
    connection: &mut MultiplexedConnection,
    words: &[&str],
) -> Result<Value, RedisError> {
    let mut cmd = ::redis::cmd(words.first().copied().unwrap_or("PING"));
    for word in words.iter().skip(1) {
        cmd.arg(*word);
    }
    cmd.query_async(connection)
        .await
        .map_err(|source| RedisError::CommandFailed {
            command: words.iter().take(2).copied().collect::<Vec<_>>().join(" "),
            source,
        })
}

/// PING with its round-trip time.
pub async fn ping(connection: &mut MultiplexedConnection) -> Result<Map, RedisError> {
    let started = Instant::now();
    let answer = text_of(&command(connection, &["PING"]).await?);
    if answer != "PONG" {
        return Err(RedisError::UnexpectedReply {
            command: "PING".into(),
            reply: answer,
        });
    }
    let mut map = Map::new();
    map.insert("ok".into(), true.into());
    map.insert(
        "latency_ms".into(),
        (started.elapsed().as_secs_f64() * 1000.0).into(),
    );
    Ok(map)
}

/// INFO, or one section of it, as a flat map.
pub async fn info(
    connection: &mut MultiplexedConnection,
    section: Option<&str>,
) -> Result<Map, RedisError> {
    let mut words = vec!["INFO"];
    words.extend(section);
    Ok(parse_info(&text_of(&command(connection, &words).await?)))
}

/// A script's call on one server through the call path.
pub fn call<T, F>(
    ctx: &Arc<RunContext>,
    target: &str,
    name: &'static str,
    effect: Effect,
    args: serde_json::Value,
    planned: impl FnOnce() -> T,
    work: F,
) -> Outcome<T>
where
    F: std::future::Future<Output = Result<T, RedisError>>,
{
    Call::new(ctx, name, effect, target)
        .args(args)
        .run(planned, async move { work.await.map_err(Failure::from) })
}

/// The connection for `url`, opened through the call path as `name` the first time.
pub fn connect(
    ctx: &Arc<RunContext>,
    open_ones: &Connections,
    url: &Dynamic,
    name: &'static str,
) -> Outcome<Redis> {
    let text = url_text(ctx, name, url)?;
    let known = open_ones
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&text)
        .cloned();
    if let Some(redis) = known {
        return Ok(redis);
    }
    let target = shown(&text);
    let url_owned = text.clone();
    let connection = call(
        ctx,
        &target,
        name,
        Effect::Read,
        serde_json::Value::Null,
        || None,
        async move { Ok(Some(open(&url_owned).await?)) },
    )?;
    let redis = Redis {
        connection,
        target: target.into(),
    };
    if !ctx.is_plan() {
        open_ones
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(text, redis.clone());
    }
    Ok(redis)
}

fn role_map(reply: &Value) -> Map {
    let items = match reply {
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    let word = |i: usize| items.get(i).map(text_of).unwrap_or_default();
    let mut map = Map::new();
    match word(0).as_str() {
        "master" => {
            map.insert("role".into(), "master".into());
            map.insert("offset".into(), reply::info_value(&word(1)));
            let replicas = match items.get(2) {
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|r| {
                        let parts = match r {
                            Value::Array(p) => p.iter().map(text_of).collect::<Vec<_>>(),
                            _ => Vec::new(),
                        };
                        let mut replica = Map::new();
                        let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
                        replica.insert("address".into(), format!("{}:{}", part(0), part(1)).into());
                        replica.insert("offset".into(), reply::info_value(&part(2)));
                        replica.into()
                    })
                    .collect(),
                _ => rhai::Array::new(),
            };
            map.insert("replicas".into(), replicas.into());
        }
        "slave" => {
            map.insert("role".into(), "replica".into());
            map.insert("master".into(), format!("{}:{}", word(1), word(2)).into());
            map.insert("state".into(), word(3).into());
            map.insert("offset".into(), reply::info_value(&word(4)));
        }
        other => {
            map.insert("role".into(), other.to_owned().into());
            map.insert(
                "masters".into(),
                items.get(1).map(reply::to_dynamic).unwrap_or_default(),
            );
        }
    }
    map
}

fn memory(info: &Map) -> Map {
    let mut map = Map::new();
    for key in [
        "used_memory",
        "used_memory_human",
        "used_memory_peak",
        "used_memory_rss",
        "maxmemory",
        "maxmemory_human",
        "maxmemory_policy",
        "mem_fragmentation_ratio",
    ] {
        map.insert(key.into(), info.get(key).cloned().unwrap_or_default());
    }
    let used = info
        .get("used_memory")
        .and_then(|v| v.as_int().ok())
        .unwrap_or(0);
    let max = info
        .get("maxmemory")
        .and_then(|v| v.as_int().ok())
        .unwrap_or(0);
    let usage = if max > 0 {
        Dynamic::from(used as f64 / max as f64)
    } else {
        Dynamic::UNIT
    };
    map.insert("usage".into(), usage);
    map
}

fn hit_ratio(info: &Map) -> Map {
    let hits = info
        .get("keyspace_hits")
        .and_then(|v| v.as_int().ok())
        .unwrap_or(0);
    let misses = info
        .get("keyspace_misses")
        .and_then(|v| v.as_int().ok())
        .unwrap_or(0);
    let mut map = Map::new();
    map.insert("hits".into(), hits.into());
    map.insert("misses".into(), misses.into());
    let ratio = if hits + misses > 0 {
        Dynamic::from(hits as f64 / (hits + misses) as f64)
    } else {
        Dynamic::UNIT
    };
    map.insert("ratio".into(), ratio);
    map
}

/// A value to store: text, a number, a boolean or a Secret.
fn stored(value: &Dynamic) -> Result<String, RedisError> {
    if let Some(secret) = value.clone().try_cast::<Secret>() {
        return Ok(secret.expose().to_owned());
    }
    if value.is_string() || value.is_int() || value.is_float() || value.is_bool() || value.is_char()
    {
        return Ok(value.to_string());
    }
    Err(RedisError::BadValue(value.type_name().to_owned()))
}

/// Runs `work` on a server's connection through the call path.
pub fn on<T, Fut>(
    ctx: &Arc<RunContext>,
    redis: &Redis,
    name: &'static str,
    effect: Effect,
    args: serde_json::Value,
    planned: impl FnOnce() -> T,
    work: impl FnOnce(MultiplexedConnection) -> Fut,
) -> Outcome<T>
where
    Fut: std::future::Future<Output = Result<T, RedisError>>,
{
    let connection = redis.connection.clone();
    call(
        ctx,
        &redis.target,
        name,
        effect,
        args,
        planned,
        async move {
            match connection {
                Some(connection) => work(connection).await,
                None => Err(RedisError::NotConnected),
            }
        },
    )
}

fn register_reads(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.method(
        "ping",
        Some(Effect::Read),
        &["redis: &mut Redis", "Map"],
        &[
            "PING with its round-trip time: `#{ok, latency_ms}`.",
            "",
            "```rhai",
            "check(\"Redis answers\", || redis::connect(url).ping().ok);",
            "```",
        ],
        move |r: &mut Redis| {
            on(
                &c,
                r,
                "redis::ping",
                Effect::Read,
                json!(null),
                Map::new,
                |mut conn| async move { ping(&mut conn).await },
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "info",
        Some(Effect::Read),
        &["redis: &mut Redis", "section: &str", "Map"],
        &["One INFO section as a flat map; numbers are numbers and `db0` is `#{keys, expires, avg_ttl}`.", "", "```rhai", "let clients = r.info(\"clients\").connected_clients;", "```"],
        move |r: &mut Redis, section: &str| {
            let section = section.to_owned();
            on(&c, r, "redis::info", Effect::Read, json!({ "section": section }), Map::new, |mut conn| async move { info(&mut conn, Some(&section)).await })
        },
    );
    let c = ctx.clone();
    family.method(
        "info",
        Some(Effect::Read),
        &["redis: &mut Redis", "Map"],
        &[
            "The default INFO sections as one flat map.",
            "",
            "```rhai",
            "log(`Redis ${r.info().redis_version}`);",
            "```",
        ],
        move |r: &mut Redis| {
            on(
                &c,
                r,
                "redis::info",
                Effect::Read,
                json!(null),
                Map::new,
                |mut conn| async move { info(&mut conn, None).await },
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "role",
        Some(Effect::Read),
        &["redis: &mut Redis", "Map"],
        &["ROLE: `#{role: \"master\", offset, replicas: [#{address, offset}]}`, `#{role: \"replica\", master, state, offset}` or `#{role: \"sentinel\", masters}`.", "", "```rhai", "check(\"Primary has a replica\", || r.role().replicas.len() > 0);", "```"],
        move |r: &mut Redis| on(&c, r, "redis::role", Effect::Read, json!(null), Map::new, |mut conn| async move { Ok(role_map(&command(&mut conn, &["ROLE"]).await?)) }),
    );
    let c = ctx.clone();
    family.method(
        "memory",
        Some(Effect::Read),
        &["redis: &mut Redis", "Map"],
        &["Memory use: `#{used_memory, used_memory_human, used_memory_peak, used_memory_rss, maxmemory, maxmemory_human, maxmemory_policy, mem_fragmentation_ratio, usage}` (`usage` is used / max, `()` without a limit).", "", "```rhai", "check(\"Redis has a memory limit\", || r.memory().maxmemory > 0);", "```"],
        move |r: &mut Redis| on(&c, r, "redis::memory", Effect::Read, json!(null), Map::new, |mut conn| async move { Ok(memory(&info(&mut conn, Some("memory")).await?)) }),
    );
    let c = ctx.clone();
    family.method(
        "cache_hit_ratio",
        Some(Effect::Read),
        &["redis: &mut Redis", "Map"],
        &["Keyspace hits against misses since the server started (or since CONFIG RESETSTAT): `#{hits, misses, ratio}`; `ratio` is `()` before any lookup.", "", "```rhai", "check(\"Cache hit ratio above 80%\", || r.cache_hit_ratio().ratio > 0.8);", "```"],
        move |r: &mut Redis| on(&c, r, "redis::cache_hit_ratio", Effect::Read, json!(null), Map::new, |mut conn| async move { Ok(hit_ratio(&info(&mut conn, Some("stats")).await?)) }),
    );
}

fn register_keys(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.method(
        "get",
        Some(Effect::Read),
        &["redis: &mut Redis", "key: &str", "Dynamic"],
        &[
            "The value of a key as text, or `()` when it does not exist.",
            "",
            "```rhai",
            "let flag = r.get(\"feature:new-dashboard\");",
            "```",
        ],
        move |r: &mut Redis, key: &str| {
            let key = key.to_owned();
            on(
                &c,
                r,
                "redis::get",
                Effect::Read,
                json!({ "key": key }),
                || Dynamic::UNIT,
                |mut conn| async move {
                    Ok(reply::to_dynamic(
                        &command(&mut conn, &["GET", &key]).await?,
                    ))
                },
            )
        },
    );
    for with_ttl in [false, true] {
        let c = ctx.clone();
        let (params, doc): (&[&str], &[&str]) = if with_ttl {
            (
                &[
                    "redis: &mut Redis",
                    "key: &str",
                    "value: Dynamic",
                    "ttl_seconds: i64",
                    "bool",
                ],
                &[
                    "`set` with an expiry in seconds.",
                    "",
                    "```rhai",
                    "r.set(\"deploy:lock\", \"v1.4.2\", 600);",
                    "```",
                ],
            )
        } else {
            (
                &["redis: &mut Redis", "key: &str", "value: Dynamic", "bool"],
                &[
                    "Sets a key to text, a number, a boolean or a Secret.",
                    "",
                    "```rhai",
                    "r.set(\"deploy:version\", \"v1.4.2\");",
                    "```",
                ],
            )
        };
        let register = move |r: &mut Redis,
                             key: &str,
                             value: Dynamic,
                             ttl: Option<i64>|
              -> Outcome<bool> {
            let text = stored(&value).map_err(|err| -> Box<EvalAltResult> {
                c.masker
                    .mask(&format!("redis::set on {}: {err}", r.target))
                    .into()
            })?;
            let key = key.to_owned();
            let args = json!({ "key": key, "value": crate::engine::convert::to_json(&value), "ttl_seconds": ttl });
            on(
                &c,
                r,
                "redis::set",
                Effect::Mutate,
                args,
                || true,
                |mut conn| async move {
                    let ttl_text = ttl.map(|t| t.max(1).to_string());
                    let mut words = vec!["SET", key.as_str(), text.as_str()];
                    if let Some(ttl) = &ttl_text {
                        words.extend(["EX", ttl.as_str()]);
                    }
                    command(&mut conn, &words).await?;
                    Ok(true)
                },
            )
        };
        if with_ttl {
            family.method(
                "set",
                Some(Effect::Mutate),
                params,
                doc,
                move |r: &mut Redis, key: &str, value: Dynamic, ttl: i64| {
                    register(r, key, value, Some(ttl))
                },
            );
        } else {
            family.method(
                "set",
                Some(Effect::Mutate),
                params,
                doc,
                move |r: &mut Redis, key: &str, value: Dynamic| register(r, key, value, None),
            );
        }
    }
    let c = ctx.clone();
    family.method(
        "del",
        Some(Effect::Mutate),
        &["redis: &mut Redis", "key: &str", "i64"],
        &[
            "Deletes a key; returns how many keys were removed (0 or 1).",
            "",
            "```rhai",
            "r.del(\"deploy:lock\");",
            "```",
        ],
        move |r: &mut Redis, key: &str| {
            let key = key.to_owned();
            on(
                &c,
                r,
                "redis::del",
                Effect::Mutate,
                json!({ "key": key }),
                || 0_i64,
                |mut conn| async move {
                    let removed = command(&mut conn, &["DEL", &key]).await?;
                    Ok(reply::to_dynamic(&removed).as_int().unwrap_or(0))
                },
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "ttl",
        Some(Effect::Read),
        &["redis: &mut Redis", "key: &str", "i64"],
        &[
            "Seconds until a key expires: -1 when it never does, -2 when it does not exist.",
            "",
            "```rhai",
            "check(\"Sessions expire\", || r.ttl(\"session:probe\") > 0);",
            "```",
        ],
        move |r: &mut Redis, key: &str| {
            let key = key.to_owned();
            on(
                &c,
                r,
                "redis::ttl",
                Effect::Read,
                json!({ "key": key }),
                || -2_i64,
                |mut conn| async move {
                    let ttl = command(&mut conn, &["TTL", &key]).await?;
                    Ok(reply::to_dynamic(&ttl).as_int().unwrap_or(-2))
                },
            )
        },
    );
}

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("redis");
    family.module.set_custom_type::<Redis>("Redis");
    let open_ones = Connections::default();
    let (c, o) = (ctx.clone(), open_ones.clone());
    family.function(
        "connect",
        Some(Effect::Read),
        &["url: Dynamic", "Redis"],
        &[
            "Connects to one Redis server: `redis://[user:password@]host:6379[/db]`, or `rediss://` for TLS. The URL may be a Secret; its password is masked everywhere. Connections are shared per URL for the whole run.",
            "",
            "```rhai",
            "let r = redis::connect(secret(\"REDIS_URL\"));",
            "```",
        ],
        move |url: Dynamic| connect(&c, &o, &url, "redis::connect"),
    );
    family.method(
        "target",
        None,
        &["redis: &mut Redis", "String"],
        &[
            "The server as output shows it (no password).",
            "",
            "```rhai",
            "log(r.target());",
            "```",
        ],
        |r: &mut Redis| r.target.to_string(),
    );
    register_reads(&mut family, ctx);
    register_keys(&mut family, ctx);
    sentinel::register(&mut family, ctx, &open_ones);
    cluster::register(&mut family, ctx);
    family
}
