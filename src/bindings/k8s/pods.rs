//! Pods by selector, whether they are ready and why not, their logs, and the events about
//! any object.

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use rhai::{Array, Dynamic, Map};
use serde_json::json;

use super::dynamic::path;
use super::options::{Options, Outcome, selector, usage};
use super::{K8s, namespace_or_default};
use crate::engine::binding::{Failure, Family};
use crate::engine::convert::from_json;
use crate::transcript::event::Effect;

pub fn register(family: &mut Family, k8s: &K8s) {
    register_pods(family, k8s);
    register_logs(family, k8s);
}

fn register_pods(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "pods",
        Some(Effect::Read),
        &["namespace: &str", "selector: Dynamic", "Array"],
        &[
            "The pods a label selector (text or a map; `\"\"` for all) picks in a namespace, as maps.",
            "",
            "```rhai",
            "let first = k8s::pods(\"elson\", \"app=elson-backend\")[0].metadata.name;",
            "```",
        ],
        move |namespace: &str, selector: Dynamic| pods(&k, namespace, &selector),
    );
    let k = k8s.clone();
    family.function(
        "pods_ready",
        Some(Effect::Read),
        &["namespace: &str", "selector: Dynamic", "Map"],
        &[
            "How many of the selected pods are ready: `#{ready, total, not_ready}`, where `not_ready` lists `#{pod, phase, reason, restarts}` for each pod that is not (the reason is the container's, e.g. `CrashLoopBackOff`, where there is one).",
            "",
            "```rhai",
            "let state = k8s::pods_ready(\"elson\", \"app=elson-backend\");",
            "check(\"All backend pods ready\", || state.ready == state.total && state.total > 0);",
            "```",
        ],
        move |namespace: &str, selector: Dynamic| pods_ready(&k, namespace, &selector),
    );
}

fn register_logs(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "logs",
        Some(Effect::Read),
        &["namespace: &str", "pod: &str", "String"],
        &[
            "A pod's log (its only container's).",
            "",
            "```rhai",
            "let log = k8s::logs(\"elson\", \"elson-backend-6d8f7c9b5d-4xkqz\");",
            "```",
        ],
        move |namespace: &str, pod: &str| logs(&k, namespace, pod, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "logs",
        Some(Effect::Read),
        &["namespace: &str", "pod: &str", "options: Map", "String"],
        &[
            "`k8s::logs` with options: `tail` (last lines), `since` (seconds or `\"10m\"`), `container`, `previous` (the last terminated container's log).",
            "",
            "```rhai",
            "let recent = k8s::logs(\"elson\", pod, #{tail: 100, since: \"10m\", container: \"backend\"});",
            "```",
        ],
        move |namespace: &str, pod: &str, options: Map| logs(&k, namespace, pod, &options),
    );
    let k = k8s.clone();
    family.function(
        "events",
        Some(Effect::Read),
        &["kind: &str", "namespace: &str", "name: &str", "Array"],
        &[
            "The events about one object, oldest first: `#{type, reason, message, count, time, source}`.",
            "",
            "```rhai",
            "let warnings = k8s::events(\"deployment\", \"elson\", \"elson-backend\").filter(|e| e.type == \"Warning\");",
            "```",
        ],
        move |kind: &str, namespace: &str, name: &str| events(&k, kind, namespace, name),
    );
}

fn selector_text(binding: &str, value: &Dynamic) -> Outcome<String> {
    selector(value).map_err(|message| usage(binding, message))
}

async fn list_pods(k8s: &K8s, namespace: &str, selector: &str) -> Result<Vec<Pod>, Failure> {
    let connection = k8s.cluster.connect().await?;
    let namespace = namespace_or_default(connection, namespace);
    let api: Api<Pod> = Api::namespaced(connection.client.clone(), &namespace);
    let params = ListParams::default().labels(selector);
    let listed = api.list(&params).await;
    let action = format!("list {}", pods_target(&namespace, selector));
    Ok(listed.map_err(|e| connection.fail(action, e))?.items)
}

fn pods_target(namespace: &str, selector: &str) -> String {
    match selector {
        "" => format!("all pods in {namespace}"),
        _ => format!("pods in {namespace} matching `{selector}`"),
    }
}

fn pods(k8s: &K8s, namespace: &str, selector: &Dynamic) -> Outcome<Array> {
    let selector = selector_text("k8s::pods", selector)?;
    let args = json!({ "namespace": namespace, "selector": selector });
    let target = pods_target(namespace, &selector);
    k8s.read("k8s::pods", target, args, Array::new, async {
        let pods = list_pods(k8s, namespace, &selector).await?;
        pods.iter()
            .map(|pod| {
                let value = serde_json::to_value(pod)
                    .map_err(|err| Failure::from_error("unreadable pod", &err))?;
                Ok(from_json(&value))
            })
            .collect()
    })
}

fn pods_ready(k8s: &K8s, namespace: &str, selector: &Dynamic) -> Outcome<Map> {
    let selector = selector_text("k8s::pods_ready", selector)?;
    let args = json!({ "namespace": namespace, "selector": selector });
    let target = pods_target(namespace, &selector);
    let planned = || readiness(&[]);
    k8s.read("k8s::pods_ready", target, args, planned, async {
        Ok(readiness(&list_pods(k8s, namespace, &selector).await?))
    })
}

fn readiness(pods: &[Pod]) -> Map {
    let not_ready: Array = pods
        .iter()
        .filter(|pod| !is_ready(pod))
        .map(|pod| Dynamic::from(not_ready(pod)))
        .collect();
    let mut map = Map::new();
    map.insert("total".into(), (pods.len() as i64).into());
    map.insert(
        "ready".into(),
        ((pods.len() - not_ready.len()) as i64).into(),
    );
    map.insert("not_ready".into(), not_ready.into());
    map
}

/// Running with the `Ready` condition true, as a Service would route to it.
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let running = status.phase.as_deref() == Some("Running");
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    running && ready
}

fn not_ready(pod: &Pod) -> Map {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.clone().unwrap_or_default();
    let restarts: i64 = containers.iter().map(|c| i64::from(c.restart_count)).sum();
    let from_containers = containers.iter().find_map(|c| {
        let state = c.state.as_ref()?;
        let waiting = state.waiting.as_ref().and_then(|w| w.reason.clone());
        waiting.or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
    });
    let from_condition = status.conditions.iter().flatten().find_map(|condition| {
        (condition.type_ == "Ready" && condition.status != "True")
            .then(|| condition.reason.clone())
            .flatten()
    });
    let reason = from_containers
        .or(status.reason.clone())
        .or(from_condition)
        .unwrap_or_else(|| "not ready".into());
    let mut map = Map::new();
    let name = pod.metadata.name.clone().unwrap_or_default();
    map.insert("pod".into(), name.into());
    map.insert("phase".into(), status.phase.unwrap_or_default().into());
    map.insert("reason".into(), reason.into());
    map.insert("restarts".into(), restarts.into());
    map
}

fn logs(k8s: &K8s, namespace: &str, pod: &str, options: &Map) -> Outcome<String> {
    let known = ["tail", "since", "container", "previous"];
    let options = Options::new("k8s::logs", options, &known)?;
    let params = LogParams {
        tail_lines: options.int("tail")?,
        since_seconds: options.duration("since")?.map(|d| d.as_secs() as i64),
        container: options.string("container")?,
        previous: options.bool("previous")?.unwrap_or(false),
        ..LogParams::default()
    };
    let args = json!({
        "namespace": namespace, "pod": pod, "tail": params.tail_lines,
        "since_seconds": params.since_seconds, "container": params.container,
    });
    let target = format!("pod {}", path(namespace, pod));
    k8s.read("k8s::logs", target, args, String::new, async {
        let connection = k8s.cluster.connect().await?;
        let namespace = namespace_or_default(connection, namespace);
        let api: Api<Pod> = Api::namespaced(connection.client.clone(), &namespace);
        let text = api.logs(pod, &params).await;
        let action = format!("read the log of pod {namespace}/{pod}");
        Ok(text.map_err(|e| connection.fail(action, e))?)
    })
}

fn events(k8s: &K8s, kind: &str, namespace: &str, name: &str) -> Outcome<Array> {
    let args = json!({ "kind": kind, "namespace": namespace, "name": name });
    let target = format!("{kind} {}", path(namespace, name));
    k8s.read("k8s::events", target, args, Array::new, async {
        let (connection, resource) = k8s.cluster.resource(kind).await?;
        let namespace = namespace_or_default(connection, namespace);
        let api: Api<Event> = Api::namespaced(connection.client.clone(), &namespace);
        let fields = format!(
            "involvedObject.kind={},involvedObject.name={name}",
            resource.kind
        );
        let listed = api.list(&ListParams::default().fields(&fields)).await;
        let action = format!("list the events of {} {namespace}/{name}", resource.kind);
        let mut items = listed.map_err(|e| connection.fail(action, e))?.items;
        items.sort_by_key(event_time);
        Ok(items.iter().map(|e| Dynamic::from(event_map(e))).collect())
    })
}

fn event_time(event: &Event) -> Option<Timestamp> {
    let last = event.last_timestamp.as_ref().map(|t| t.0);
    let micro = event.event_time.as_ref().map(|t| t.0);
    let first = event.first_timestamp.as_ref().map(|t| t.0);
    last.or(micro).or(first)
}

fn event_map(event: &Event) -> Map {
    let text = |value: &Option<String>| Dynamic::from(value.clone().unwrap_or_default());
    let source = event
        .source
        .as_ref()
        .and_then(|s| s.component.clone())
        .or_else(|| event.reporting_component.clone());
    let time = event_time(event).map(|t| t.to_string()).unwrap_or_default();
    let mut map = Map::new();
    map.insert("type".into(), text(&event.type_));
    map.insert("reason".into(), text(&event.reason));
    map.insert("message".into(), text(&event.message));
    map.insert("count".into(), i64::from(event.count.unwrap_or(1)).into());
    map.insert("time".into(), time.into());
    map.insert("source".into(), text(&source));
    map
}
