//! Rollouts of a Deployment, done as kubectl does them (kube-rs has none of these built in):
//! status judged from the generation the controller observed and the replica counts, pause
//! and resume as merge patches of `spec.paused`, restart through kubectl's `restartedAt`
//! annotation, history and undo from the ReplicaSets the Deployment owns.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use super::client::Connection;
use super::dynamic::{FIELD_MANAGER, path};
use super::options::{Options, Outcome};
use super::{K8s, namespace_or_default, output};
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::convert::{from_json, to_json};
use crate::transcript::event::Effect;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations a rollback leaves as they are on the Deployment instead of copying them from
/// the ReplicaSet (kubectl's list).
const KEPT_ON_ROLLBACK: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];
const POLL: Duration = Duration::from_secs(1);
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

mod register;
mod state;

use state::{Progress, progress, revision_of};

pub fn register(family: &mut Family, k8s: &K8s) {
    register::status(family, k8s);
    register::changes(family, k8s);
    register::history(family, k8s);
}

fn target(namespace: &str, name: &str) -> String {
    format!("deployment {}", path(namespace, name))
}

fn args(namespace: &str, name: &str) -> Value {
    json!({ "namespace": namespace, "name": name })
}

fn script(value: &impl serde::Serialize) -> Result<Dynamic, Failure> {
    let value = serde_json::to_value(value)
        .map_err(|err| Failure::from_error("unreadable object", &err))?;
    Ok(from_json(&value))
}

fn script_map(value: &impl serde::Serialize) -> Result<Map, Failure> {
    Ok(script(value)?.try_cast::<Map>().unwrap_or_default())
}

fn show(map: &Map) -> Value {
    to_json(&map.clone().into())
}

/// The connection, the Deployments of a namespace, and that namespace's name.
async fn deployments<'a>(
    k8s: &'a K8s,
    namespace: &str,
) -> Result<(&'a Connection, Api<Deployment>, String), Failure> {
    let connection = k8s.cluster.connect().await?;
    let namespace = namespace_or_default(connection, namespace);
    let api = Api::namespaced(connection.client.clone(), &namespace);
    Ok((connection, api, namespace))
}

async fn read(
    connection: &Connection,
    api: &Api<Deployment>,
    at: &str,
    name: &str,
) -> Result<Deployment, Failure> {
    let found = api.get(name).await;
    let action = format!("read Deployment {at}/{name}");
    Ok(found.map_err(|e| connection.fail(action, e))?)
}

fn status(k8s: &K8s, namespace: &str, name: &str, options: &Map) -> Outcome<Map> {
    let options = Options::new("k8s::rollout_status", options, &["timeout"])?;
    let limit = options.duration("timeout")?.unwrap_or(DEFAULT_WAIT);
    let mut args = args(namespace, name);
    args["timeout"] = json!(limit.as_secs());
    let call = Call::new(
        &k8s.ctx,
        "k8s::rollout_status",
        Effect::Read,
        target(namespace, name),
    );
    let (id, step) = (call.id, bridge::frame().step);
    call.args(args)
        .run(Map::new, wait(k8s, namespace, name, limit, (id, step)))
}

/// Polls the Deployment until it is rolled out, fails, or `limit` passes; each new reason to
/// wait goes into the transcript once.
async fn wait(
    k8s: &K8s,
    namespace: &str,
    name: &str,
    limit: Duration,
    (call, step): (u64, Option<u64>),
) -> Result<Map, Failure> {
    let (connection, api, at) = deployments(k8s, namespace).await?;
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        let deployment = read(connection, &api, &at, name).await?;
        let waiting = match progress(&deployment) {
            Progress::Done => return Ok(state::summary(&deployment)),
            Progress::Failed(why) => {
                return Err(Failure::new(format!("Deployment {at}/{name} {why}")));
            }
            Progress::Waiting(why) => why,
        };
        if waiting != last {
            output(&k8s.ctx, call, step, format!("waiting: {waiting}"));
            last = waiting;
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(format!(
                "Deployment {at}/{name} did not finish rolling out within {} s: {last}",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `spec.paused` set by a merge patch, as `kubectl rollout pause|resume` does.
fn set_paused(k8s: &K8s, namespace: &str, name: &str, paused: bool) -> Outcome<Map> {
    let binding = if paused {
        "k8s::rollout_pause"
    } else {
        "k8s::rollout_resume"
    };
    let target = target(namespace, name);
    let work = async {
        let (connection, api, at) = deployments(k8s, namespace).await?;
        let patch = json!({ "spec": { "paused": paused } });
        let stored = api
            .patch(name, &merge_params(k8s), &Patch::Merge(&patch))
            .await;
        let verb = if paused { "pause" } else { "resume" };
        let action = format!("{verb} Deployment {at}/{name}");
        script_map(&stored.map_err(|e| connection.fail(action, e))?)
    };
    k8s.mutate(binding, target, args(namespace, name), Map::new, show, work)
}

fn merge_params(k8s: &K8s) -> PatchParams {
    PatchParams {
        dry_run: k8s.dry_run(),
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// A new rollout of the same template, through the annotation kubectl sets; refused on a
/// paused Deployment, as kubectl refuses it, since nothing would roll out.
fn restart(k8s: &K8s, namespace: &str, name: &str) -> Outcome<Map> {
    let work = async {
        let (connection, api, at) = deployments(k8s, namespace).await?;
        let deployment = read(connection, &api, &at, name).await?;
        if deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            return Err(Failure::new(format!(
                "Deployment {at}/{name} is paused: resume it first (k8s::rollout_resume); a paused Deployment does not roll out"
            )));
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: now } } } } });
        let stored = api
            .patch(name, &merge_params(k8s), &Patch::Merge(&patch))
            .await;
        let action = format!("restart Deployment {at}/{name}");
        script_map(&stored.map_err(|e| connection.fail(action, e))?)
    };
    let target = target(namespace, name);
    let binding = "k8s::rollout_restart";
    k8s.mutate(binding, target, args(namespace, name), Map::new, show, work)
}

/// The ReplicaSets the Deployment controls, oldest revision first.
async fn owned_replica_sets(
    connection: &Connection,
    namespace: &str,
    deployment: &Deployment,
) -> Result<Vec<(i64, ReplicaSet)>, Failure> {
    let api: Api<ReplicaSet> = Api::namespaced(connection.client.clone(), namespace);
    let selector = state::selector_of(deployment);
    let listed = api.list(&ListParams::default().labels(&selector)).await;
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let action = format!("list the ReplicaSets of Deployment {namespace}/{name}");
    let listed = listed.map_err(|e| connection.fail(action, e))?;
    let uid = deployment.metadata.uid.clone();
    let mut owned: Vec<(i64, ReplicaSet)> = listed
        .items
        .into_iter()
        .filter(|rs| state::controlled_by(rs, uid.as_deref()))
        .map(|rs| (revision_of(&rs.metadata), rs))
        .collect();
    owned.sort_by_key(|(revision, _)| *revision);
    Ok(owned)
}

fn history(k8s: &K8s, namespace: &str, name: &str) -> Outcome<Array> {
    let work = async {
        let (connection, api, at) = deployments(k8s, namespace).await?;
        let deployment = read(connection, &api, &at, name).await?;
        let current = revision_of(&deployment.metadata);
        let owned = owned_replica_sets(connection, &at, &deployment).await?;
        Ok(owned
            .iter()
            .map(|(revision, rs)| Dynamic::from(state::history_entry(*revision, rs, current)))
            .collect())
    };
    let target = target(namespace, name);
    k8s.read(
        "k8s::rollout_history",
        target,
        args(namespace, name),
        Array::new,
        work,
    )
}

/// What an undo is asked to do.
struct Undo {
    to_revision: Option<i64>,
    resource_version: Option<String>,
}

fn undo(k8s: &K8s, namespace: &str, name: &str, options: &Map) -> Outcome<Map> {
    let known = ["to_revision", "resource_version"];
    let options = Options::new("k8s::rollout_undo", options, &known)?;
    let request = Undo {
        to_revision: options.int("to_revision")?,
        resource_version: options.string("resource_version")?,
    };
    let mut args = args(namespace, name);
    args["to_revision"] = json!(request.to_revision);
    args["resource_version"] = json!(request.resource_version);
    let work = roll_back(k8s, namespace, name, request);
    let target = target(namespace, name);
    // The transcript of a dry run shows the Deployment as the server would have stored it;
    // the script gets the summary.
    let planned = || (Map::new(), Value::Null);
    let stored = |(_, deployment): &(Map, Value)| deployment.clone();
    let (summary, _) = k8s.mutate("k8s::rollout_undo", target, args, planned, stored, work)?;
    Ok(summary)
}

async fn roll_back(
    k8s: &K8s,
    namespace: &str,
    name: &str,
    request: Undo,
) -> Result<(Map, Value), Failure> {
    let (connection, api, at) = deployments(k8s, namespace).await?;
    let mut deployment = read(connection, &api, &at, name).await?;
    if deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        return Err(Failure::new(format!(
            "Deployment {at}/{name} is paused: resume it first (k8s::rollout_resume); like kubectl, a paused Deployment is not rolled back"
        )));
    }
    let current = revision_of(&deployment.metadata);
    let owned = owned_replica_sets(connection, &at, &deployment).await?;
    let (revision, chosen) = state::rollback_target(&owned, current, request.to_revision)
        .map_err(|why| Failure::new(format!("Deployment {at}/{name}: {why}")))?;
    let template = state::template_without_hash(chosen);
    let unchanged = deployment.spec.as_ref().map(|s| &s.template) == Some(&template);
    if unchanged {
        let summary = state::undo_summary(current, revision, &template, true);
        return Ok((summary, Value::Null));
    }
    if let Some(version) = request.resource_version {
        // Written as the version the script read, so a change since then is a conflict.
        deployment.metadata.resource_version = Some(version);
    }
    state::copy_rollback_annotations(&mut deployment, chosen);
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template = template.clone();
    }
    let params = PostParams {
        dry_run: k8s.dry_run(),
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let stored = api.replace(name, &params, &deployment).await;
    let action = format!("roll back Deployment {at}/{name} to revision {revision}");
    let stored = stored.map_err(|e| connection.fail_replace(action, e))?;
    let stored = serde_json::to_value(&stored).unwrap_or_default();
    Ok((
        state::undo_summary(current, revision, &template, false),
        stored,
    ))
}
