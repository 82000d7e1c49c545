//! Redis Cluster: its state and slot coverage (CLUSTER INFO), its nodes with roles, flags and
//! slots (CLUSTER NODES), and keys read and written through the cluster's own routing.

use std::sync::Arc;

use ::redis::cluster::ClusterClient;
use rhai::{Array, Dynamic, Map};
use serde_json::json;

use super::error::RedisError;
use super::reply::{parse_info, text_of, to_dynamic};
use super::{Outcome, call, command, open, shown, url_text};
use crate::engine::binding::Family;
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

/// A cluster, known by the nodes a script named (any one of them can answer).
#[derive(Clone)]
pub struct Cluster {
    urls: Arc<Vec<String>>,
    target: Arc<str>,
}

/// The first node that answers `words`, with what it answered.
async fn ask_any(urls: &[String], words: &[&str]) -> Result<::redis::Value, RedisError> {
    let mut last = None;
    for url in urls {
        let answer = match open(url).await {
            Ok(mut connection) => command(&mut connection, words).await,
            Err(err) => Err(err),
        };
        match answer {
            Ok(value) => return Ok(value),
            Err(
                RedisError::ConnectFailed { source } | RedisError::CommandFailed { source, .. },
            ) => {
                last = Some(source);
            }
            Err(other) => return Err(other),
        }
    }
    let tried = urls.iter().map(|u| shown(u)).collect::<Vec<_>>().join(", ");
    match last {
        Some(source) => Err(RedisError::NoNodeAnswered { tried, source }),
        None => Err(RedisError::NoNodes),
    }
}

/// One line of CLUSTER NODES as a map.
fn node(line: &str) -> Option<Map> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 8 {
        return None;
    }
    let flags: Vec<&str> = words[2].split(',').collect();
    let address = words[1].split('@').next().unwrap_or_default();
    let slots: Array = words[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .map(|s| Dynamic::from(s.to_string()))
        .collect();
    let count: i64 = slots
        .iter()
        .map(|range| {
            let text = range.to_string();
            match text.split_once('-') {
                Some((a, b)) => b.parse::<i64>().unwrap_or(0) - a.parse::<i64>().unwrap_or(0) + 1,
                None => 1,
            }
        })
        .sum();
    let role = if flags.contains(&"master") {
        "master"
    } else if flags.contains(&"slave") {
        "replica"
    } else {
        "unknown"
    };
    let mut map = Map::new();
    map.insert("id".into(), words[0].to_owned().into());
    map.insert("address".into(), address.to_owned().into());
    map.insert(
        "flags".into(),
        flags
            .iter()
            .map(|f| Dynamic::from(f.to_string()))
            .collect::<Array>()
            .into(),
    );
    map.insert("role".into(), role.into());
    map.insert("myself".into(), flags.contains(&"myself").into());
    let failing = flags.iter().any(|f| *f == "fail" || *f == "fail?");
    map.insert("failing".into(), failing.into());
    map.insert("master".into(), words[3].to_owned().into());
    map.insert("link".into(), words[7].to_owned().into());
    map.insert("slots".into(), slots.into());
    map.insert("slot_count".into(), count.into());
    Some(map)
}

fn nodes(text: &str) -> Array {
    text.lines().filter_map(node).map(Dynamic::from).collect()
}

fn cluster(ctx: &RunContext, nodes: &Dynamic) -> Outcome<Cluster> {
    let given: Vec<Dynamic> = match nodes.clone().try_cast::<Array>() {
        Some(list) => list,
        None => vec![nodes.clone()],
    };
    let mut urls = Vec::new();
    for item in &given {
        urls.push(url_text(ctx, "redis::cluster", item)?);
    }
    if urls.is_empty() {
        return Err(format!("redis::cluster: {}", RedisError::NoNodes).into());
    }
    let target = format!(
        "cluster {}",
        urls.iter().map(|u| shown(u)).collect::<Vec<_>>().join(",")
    );
    Ok(Cluster {
        urls: Arc::new(urls),
        target: target.into(),
    })
}

fn read<T, Fut>(
    ctx: &Arc<RunContext>,
    c: &Cluster,
    name: &'static str,
    args: serde_json::Value,
    planned: impl FnOnce() -> T,
    work: impl FnOnce(Arc<Vec<String>>) -> Fut,
) -> Outcome<T>
where
    Fut: std::future::Future<Output = Result<T, RedisError>>,
{
    let effect = if name == "redis::cluster_set" {
        Effect::Mutate
    } else {
        Effect::Read
    };
    call(
        ctx,
        &c.target,
        name,
        effect,
        args,
        planned,
        work(c.urls.clone()),
    )
}

/// A command routed by the cluster client, as an application's would be.
async fn routed(urls: &[String], words: &[&str]) -> Result<::redis::Value, RedisError> {
    let client = ClusterClient::new(urls.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(|source| RedisError::InvalidUrl { source })?;
    let mut connection = client
        .get_async_connection()
        .await
        .map_err(|source| RedisError::ConnectFailed { source })?;
    let mut cmd = ::redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd.query_async(&mut connection)
        .await
        .map_err(|source| RedisError::CommandFailed {
            command: words[0].to_owned(),
            source,
        })
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>) {
    family.module.set_custom_type::<Cluster>("Cluster");
    let c = ctx.clone();
    family.function(
        "cluster",
        None,
        &["nodes: Dynamic", "Cluster"],
        &[
            "A Redis Cluster known by one node's URL or an array of them; any node that answers is asked. Nothing is sent until a method is called.",
            "",
            "```rhai",
            "let cluster = redis::cluster([\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]);",
            "```",
        ],
        move |nodes: Dynamic| cluster(&c, &nodes),
    );
    let c = ctx.clone();
    family.method(
        "info",
        Some(Effect::Read),
        &["cluster: &mut Cluster", "Map"],
        &["CLUSTER INFO as a map: `cluster_state` (`ok` or `fail`), `cluster_slots_assigned`, `cluster_slots_ok`, `cluster_slots_pfail`, `cluster_slots_fail`, `cluster_known_nodes`, `cluster_size`, ...", "", "```rhai", "check(\"All slots served\", || cluster.info().cluster_slots_ok == 16384);", "```"],
        move |cl: &mut Cluster| {
            read(&c, cl, "redis::cluster_info", json!(null), Map::new, |urls| async move {
                Ok(parse_info(&text_of(&ask_any(&urls, &["CLUSTER", "INFO"]).await?)))
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "nodes",
        Some(Effect::Read),
        &["cluster: &mut Cluster", "Array"],
        &["CLUSTER NODES as maps: `[#{id, address, role, flags, failing, master, link, slots, slot_count, myself}]`.", "", "```rhai", "let masters = cluster.nodes().filter(|n| n.role == \"master\");", "```"],
        move |cl: &mut Cluster| {
            read(&c, cl, "redis::cluster_nodes", json!(null), Array::new, |urls| async move {
                Ok(nodes(&text_of(&ask_any(&urls, &["CLUSTER", "NODES"]).await?)))
            })
        },
    );
    let c = ctx.clone();
    family.method(
        "get",
        Some(Effect::Read),
        &["cluster: &mut Cluster", "key: &str", "Dynamic"],
        &[
            "A key's value through the cluster's routing, or `()`.",
            "",
            "```rhai",
            "let v = cluster.get(\"feature:flags\");",
            "```",
        ],
        move |cl: &mut Cluster, key: &str| {
            let key = key.to_owned();
            read(
                &c,
                cl,
                "redis::cluster_get",
                json!({ "key": key }),
                || Dynamic::UNIT,
                |urls| async move { Ok(to_dynamic(&routed(&urls, &["GET", &key]).await?)) },
            )
        },
    );
    let c = ctx.clone();
    family.method(
        "set",
        Some(Effect::Mutate),
        &[
            "cluster: &mut Cluster",
            "key: &str",
            "value: Dynamic",
            "bool",
        ],
        &[
            "Sets a key through the cluster's routing.",
            "",
            "```rhai",
            "cluster.set(\"deploy:version\", \"v1.4.2\");",
            "```",
        ],
        move |cl: &mut Cluster, key: &str, value: Dynamic| {
            let text = super::stored(&value).map_err(|err| -> Box<rhai::EvalAltResult> {
                c.masker
                    .mask(&format!("redis::cluster_set on {}: {err}", cl.target))
                    .into()
            })?;
            let key = key.to_owned();
            let args = json!({ "key": key, "value": crate::engine::convert::to_json(&value) });
            read(
                &c,
                cl,
                "redis::cluster_set",
                args,
                || true,
                |urls| async move {
                    routed(&urls, &["SET", &key, &text]).await?;
                    Ok(true)
                },
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_become_maps() {
        let text = "07c3 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
                    67ed 127.0.0.1:30002@40002 master,fail - 0 0 2 disconnected 5461-10922 [10923->-abc]\n\
                    292f 127.0.0.1:30004@40004 slave 07c3 0 0 1 connected\n";
        let list = nodes(text);
        assert_eq!(list.len(), 3);
        let first = list[0].clone().cast::<Map>();
        assert_eq!(first["address"].to_string(), "127.0.0.1:30001");
        assert_eq!(first["slot_count"].as_int(), Ok(5461));
        let second = list[1].clone().cast::<Map>();
        assert_eq!(second["failing"].as_bool(), Ok(true));
        assert_eq!(second["slots"].clone().cast::<Array>().len(), 1);
        let third = list[2].clone().cast::<Map>();
        assert_eq!(third["role"].to_string(), "replica");
    }
}
