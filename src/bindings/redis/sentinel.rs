//! Redis Sentinel: the masters a sentinel watches, their flags, quorum, replicas and fellow
//! sentinels, and whether a failover could be authorised (CKQUORUM).

use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use rhai::{Array, Dynamic, Map};
use serde_json::json;

use super::error::RedisError;
use super::reply::{field_lists, fields, text_of};
use super::{Connections, Outcome, Redis, command, connect, on, ping};
use crate::engine::binding::Family;
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

/// A connection to one sentinel.
#[derive(Clone)]
pub struct Sentinel(Redis);

/// A master as SENTINEL MASTER describes it, with `address` added.
fn master_map(reply: &::redis::Value) -> Map {
    let mut map = fields(reply);
    let ip = map.get("ip").map(ToString::to_string).unwrap_or_default();
    let port = map.get("port").map(ToString::to_string).unwrap_or_default();
    map.insert("address".into(), format!("{ip}:{port}").into());
    map
}

fn with_addresses(list: Array) -> Array {
    list.into_iter()
        .map(|item| {
            let mut map = item.try_cast::<Map>().unwrap_or_default();
            let ip = map.get("ip").map(ToString::to_string).unwrap_or_default();
            let port = map.get("port").map(ToString::to_string).unwrap_or_default();
            map.insert("address".into(), format!("{ip}:{port}").into());
            map.into()
        })
        .collect()
}

/// SENTINEL REPLICAS, or SLAVES on servers older than Redis 5.
async fn replicas(conn: &mut MultiplexedConnection, name: &str) -> Result<Array, RedisError> {
    let reply = match command(conn, &["SENTINEL", "REPLICAS", name]).await {
        Ok(reply) => reply,
        Err(_) => command(conn, &["SENTINEL", "SLAVES", name]).await?,
    };
    Ok(with_addresses(field_lists(&reply)))
}

/// CKQUORUM answers an error when the quorum cannot be reached; that is the check's result,
/// not a failure of the call.
async fn ckquorum(conn: &mut MultiplexedConnection, name: &str) -> Result<Map, RedisError> {
    let mut map = Map::new();
    match command(conn, &["SENTINEL", "CKQUORUM", name]).await {
        Ok(reply) => {
            map.insert("ok".into(), true.into());
            map.insert("message".into(), text_of(&reply).into());
        }
        Err(RedisError::CommandFailed { source, .. }) if source.code().is_some() => {
            map.insert("ok".into(), false.into());
            let code = source.code().unwrap_or_default();
            let detail = source.detail().unwrap_or_default();
            map.insert(
                "message".into(),
                format!("{code} {detail}").trim().to_owned().into(),
            );
        }
        Err(other) => return Err(other),
    }
    Ok(map)
}

fn by_name<T: Send + 'static, F, Fut>(
    ctx: &Arc<RunContext>,
    s: &Sentinel,
    name: &'static str,
    master: &str,
    planned: fn() -> T,
    work: F,
) -> Outcome<T>
where
    F: FnOnce(MultiplexedConnection, String) -> Fut,
    Fut: std::future::Future<Output = Result<T, RedisError>>,
{
    let master = master.to_owned();
    let args = json!({ "master": master });
    on(ctx, &s.0, name, Effect::Read, args, planned, move |conn| {
        work(conn, master)
    })
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>, open_ones: &Connections) {
    family.module.set_custom_type::<Sentinel>("Sentinel");
    let (c, o) = (ctx.clone(), open_ones.clone());
    family.function(
        "sentinel",
        Some(Effect::Read),
        &["url: Dynamic", "Sentinel"],
        &[
            "Connects to one Redis Sentinel (usually port 26379).",
            "",
            "```rhai",
            "let s = redis::sentinel(\"redis://sentinel-0.elson:26379\");",
            "```",
        ],
        move |url: Dynamic| connect(&c, &o, &url, "redis::sentinel").map(Sentinel),
    );
    family.method(
        "target",
        None,
        &["sentinel: &mut Sentinel", "String"],
        &[
            "The sentinel as output shows it (no password).",
            "",
            "```rhai",
            "log(s.target());",
            "```",
        ],
        |s: &mut Sentinel| s.0.target.to_string(),
    );
    let c = ctx.clone();
    family.method(
        "ping",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "Map"],
        &[
            "PING the sentinel: `#{ok, latency_ms}`.",
            "",
            "```rhai",
            "s.ping();",
            "```",
        ],
        move |s: &mut Sentinel| {
            on(
                &c,
                &s.0,
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
        "masters",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "Array"],
        &["Every master the sentinel watches, as SENTINEL MASTERS gives them: `[#{name, address, ip, port, flags, quorum, num_slaves, num_other_sentinels, ...}]` (`-` in names becomes `_`).", "", "```rhai", "for m in s.masters() { log(`${m.name} at ${m.address}`); }", "```"],
        move |s: &mut Sentinel| {
            on(&c, &s.0, "redis::sentinel_masters", Effect::Read, json!(null), Array::new, |mut conn| async move {
                Ok(with_addresses(field_lists(&command(&mut conn, &["SENTINEL", "MASTERS"]).await?)))
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "master",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "name: &str", "Map"],
        &["One master: its `address`, `flags` (`master`, and `s_down`, `o_down` or `disconnected` when in trouble), `quorum`, `num_slaves`, `num_other_sentinels` and the rest of SENTINEL MASTER.", "", "```rhai", "let m = s.master(\"mymaster\");", "check(\"Master is up\", || m.flags == [\"master\"]);", "```"],
        move |s: &mut Sentinel, name: &str| {
            by_name(&c, s, "redis::sentinel_master", name, Map::new, |mut conn, name| async move {
                Ok(master_map(&command(&mut conn, &["SENTINEL", "MASTER", &name]).await?))
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "master_address",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "name: &str", "Dynamic"],
        &["The current master's `host:port`, as clients discover it, or `()` when the sentinel does not know the name.", "", "```rhai", "let primary = s.master_address(\"mymaster\");", "```"],
        move |s: &mut Sentinel, name: &str| {
            by_name(&c, s, "redis::sentinel_master_address", name, || Dynamic::UNIT, |mut conn, name| async move {
                let reply = command(&mut conn, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &name]).await?;
                Ok(match reply {
                    ::redis::Value::Array(parts) if parts.len() == 2 => {
                        Dynamic::from(format!("{}:{}", text_of(&parts[0]), text_of(&parts[1])))
                    }
                    _ => Dynamic::UNIT,
                })
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "replicas",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "name: &str", "Array"],
        &["The master's replicas as the sentinel sees them: `[#{address, flags, master_link_status, slave_repl_offset, ...}]`.", "", "```rhai", "let healthy = s.replicas(\"mymaster\").filter(|r| r.flags == [\"slave\"]);", "```"],
        move |s: &mut Sentinel, name: &str| {
            by_name(&c, s, "redis::sentinel_replicas", name, Array::new, |mut conn, name| async move {
                replicas(&mut conn, &name).await
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "sentinels",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "name: &str", "Array"],
        &[
            "The other sentinels watching the master: `[#{address, flags, ...}]`.",
            "",
            "```rhai",
            "check(\"Three sentinels\", || s.sentinels(\"mymaster\").len() >= 2);",
            "```",
        ],
        move |s: &mut Sentinel, name: &str| {
            by_name(
                &c,
                s,
                "redis::sentinel_sentinels",
                name,
                Array::new,
                |mut conn, name| async move {
                    Ok(with_addresses(field_lists(
                        &command(&mut conn, &["SENTINEL", "SENTINELS", &name]).await?,
                    )))
                },
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "ckquorum",
        Some(Effect::Read),
        &["sentinel: &mut Sentinel", "name: &str", "Map"],
        &["Whether enough sentinels are reachable to agree on a failure and authorise a failover: `#{ok, message}`.", "", "```rhai", "check(\"Sentinel quorum\", || s.ckquorum(\"mymaster\").ok);", "```"],
        move |s: &mut Sentinel, name: &str| {
            by_name(&c, s, "redis::sentinel_ckquorum", name, Map::new, |mut conn, name| async move {
                ckquorum(&mut conn, &name).await
            })
        },
    );
}
