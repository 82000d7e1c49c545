//! Judging a Deployment's rollout and choosing what an undo writes, from the objects alone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rhai::{Array, Dynamic, Map};

use super::{CHANGE_CAUSE, KEPT_ON_ROLLBACK, REVISION, TEMPLATE_HASH};

/// Where a rollout stands.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

/// kubectl's judgement: only once the controller has observed the current generation do the
/// status counts and conditions describe this rollout rather than the one before it.
pub fn progress(deployment: &Deployment) -> Progress {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    let spec = deployment.spec.clone().unwrap_or_default();
    if observed < generation {
        return Progress::Waiting(format!(
            "the controller has not yet seen generation {generation} (it has seen {observed})"
        ));
    }
    let deadline_exceeded = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline_exceeded {
        let message = condition.message.clone().unwrap_or_default();
        return Progress::Failed(format!("exceeded its progress deadline: {message}"));
    }
    let waiting = waiting_for(spec.replicas.unwrap_or(1), &status);
    match waiting {
        Some(_) if spec.paused == Some(true) => Progress::Failed(
            "is paused: the rollout cannot finish until it is resumed (k8s::rollout_resume)".into(),
        ),
        Some(why) => Progress::Waiting(why),
        None => Progress::Done,
    }
}

fn waiting_for(
    desired: i32,
    status: &k8s_openapi::api::apps::v1::DeploymentStatus,
) -> Option<String> {
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        Some(format!(
            "{updated} of {desired} new replicas have been updated"
        ))
    } else if replicas > updated {
        Some(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ))
    } else if available < updated {
        Some(format!(
            "{available} of {updated} updated replicas are available"
        ))
    } else {
        None
    }
}

/// What `rollout_status` returns once the rollout is complete.
pub fn summary(deployment: &Deployment) -> Map {
    let status = deployment.status.clone().unwrap_or_default();
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let count = |value: Option<i32>| Dynamic::from(i64::from(value.unwrap_or(0)));
    let mut map = Map::new();
    map.insert("revision".into(), revision_of(&deployment.metadata).into());
    map.insert("replicas".into(), count(status.replicas));
    map.insert("updated".into(), count(status.updated_replicas));
    map.insert("ready".into(), count(status.ready_replicas));
    map.insert("available".into(), count(status.available_replicas));
    let images = images(template.and_then(|t| t.spec.as_ref()));
    map.insert("images".into(), to_array(images).into());
    map
}

/// The revision annotation the deployment controller keeps; 0 when there is none.
pub fn revision_of(metadata: &ObjectMeta) -> i64 {
    metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn images(spec: Option<&PodSpec>) -> Vec<String> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .filter_map(|c| c.image.clone())
        .collect()
}

fn to_array(items: Vec<String>) -> Array {
    items.into_iter().map(Dynamic::from).collect()
}

/// The Deployment's selector as a label selector string.
pub fn selector_of(deployment: &Deployment) -> String {
    let Some(selector) = deployment.spec.as_ref().map(|s| &s.selector) else {
        return String::new();
    };
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        terms.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "DoesNotExist" => format!("!{key}"),
            _ => key.clone(),
        });
    }
    terms.join(",")
}

/// Whether the Deployment with `uid` is the ReplicaSet's controlling owner.
pub fn controlled_by(replica_set: &ReplicaSet, uid: Option<&str>) -> bool {
    let owners = replica_set.metadata.owner_references.iter().flatten();
    owners
        .filter(|owner| owner.controller == Some(true) && owner.kind == "Deployment")
        .any(|owner| Some(owner.uid.as_str()) == uid)
}

/// One line of `rollout_history`.
pub fn history_entry(revision: i64, replica_set: &ReplicaSet, current: i64) -> Map {
    let annotation = |key: &str| {
        let annotations = replica_set.metadata.annotations.as_ref();
        annotations
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let spec = replica_set.spec.as_ref();
    let template = spec.and_then(|s| s.template.as_ref());
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(0);
    let created = replica_set.metadata.creation_timestamp.as_ref();
    let mut map = Map::new();
    map.insert("revision".into(), revision.into());
    let name = replica_set.metadata.name.clone().unwrap_or_default();
    map.insert("replica_set".into(), name.into());
    let images = images(template.and_then(|t| t.spec.as_ref()));
    map.insert("images".into(), to_array(images).into());
    map.insert("change_cause".into(), annotation(CHANGE_CAUSE).into());
    map.insert("replicas".into(), i64::from(replicas).into());
    let created = created.map(|t| t.0.to_string()).unwrap_or_default();
    map.insert("created".into(), created.into());
    map.insert("current".into(), (revision == current).into());
    map
}

/// The revision to go back to: the one asked for, else the newest one before `current`.
pub fn rollback_target(
    owned: &[(i64, ReplicaSet)],
    current: i64,
    wanted: Option<i64>,
) -> Result<(i64, &ReplicaSet), String> {
    let known = || {
        let numbers: Vec<String> = owned.iter().map(|(r, _)| r.to_string()).collect();
        numbers.join(", ")
    };
    let found = match wanted {
        Some(wanted) => owned.iter().find(|(revision, _)| *revision == wanted),
        None => owned.iter().rev().find(|(revision, _)| *revision < current),
    };
    match (found, wanted) {
        (Some((revision, rs)), _) => Ok((*revision, rs)),
        (None, Some(wanted)) => Err(format!(
            "no revision {wanted} to roll back to (known: {})",
            known()
        )),
        (None, None) => Err(format!(
            "no revision before {current} to roll back to (known: {})",
            known()
        )),
    }
}

/// The ReplicaSet's pod template without the hash label its controller added.
pub fn template_without_hash(replica_set: &ReplicaSet) -> PodTemplateSpec {
    let spec = replica_set.spec.as_ref();
    let mut template = spec.and_then(|s| s.template.clone()).unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH);
    }
    template
}

/// kubectl's rule: the Deployment keeps its own bookkeeping annotations and takes every
/// other annotation (the change cause among them) from the revision it goes back to.
pub fn copy_rollback_annotations(deployment: &mut Deployment, replica_set: &ReplicaSet) {
    let own = deployment.metadata.annotations.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = own
        .into_iter()
        .filter(|(key, _)| KEPT_ON_ROLLBACK.contains(&key.as_str()))
        .collect();
    for (key, value) in replica_set.metadata.annotations.iter().flatten() {
        if !KEPT_ON_ROLLBACK.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    deployment.metadata.annotations = Some(annotations);
}

/// What `rollout_undo` returns.
pub fn undo_summary(from: i64, to: i64, template: &PodTemplateSpec, skipped: bool) -> Map {
    let mut map = Map::new();
    map.insert("from_revision".into(), from.into());
    map.insert("to_revision".into(), to.into());
    let images = images(template.spec.as_ref());
    map.insert("images".into(), to_array(images).into());
    map.insert("skipped".into(), skipped.into());
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(value: serde_json::Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    fn rolled(generation: i64, observed: i64, counts: [i32; 3]) -> Deployment {
        let [replicas, updated, available] = counts;
        deployment(serde_json::json!({
            "metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}, "template": {}},
            "status": {"observedGeneration": observed, "replicas": replicas,
                "updatedReplicas": updated, "availableReplicas": available}
        }))
    }

    #[test]
    fn a_rollout_is_done_only_when_the_new_generation_is_observed_and_available() {
        assert_eq!(progress(&rolled(2, 2, [3, 3, 3])), Progress::Done);
        // Counts from the previous rollout look complete, but the controller has not caught up.
        assert!(matches!(
            progress(&rolled(3, 2, [3, 3, 3])),
            Progress::Waiting(_)
        ));
        assert_eq!(
            progress(&rolled(3, 3, [4, 1, 3])),
            Progress::Waiting("1 of 3 new replicas have been updated".into())
        );
        assert_eq!(
            progress(&rolled(3, 3, [4, 3, 3])),
            Progress::Waiting("1 old replicas are pending termination".into())
        );
        assert_eq!(
            progress(&rolled(3, 3, [3, 3, 2])),
            Progress::Waiting("2 of 3 updated replicas are available".into())
        );
    }

    #[test]
    fn a_stale_deadline_condition_does_not_fail_a_new_rollout() {
        let mut stale = rolled(3, 2, [3, 3, 3]);
        let condition = serde_json::json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "too slow"}]);
        if let Some(status) = stale.status.as_mut() {
            status.conditions = serde_json::from_value(condition).unwrap();
        }
        assert!(matches!(progress(&stale), Progress::Waiting(_)));
        stale.status.as_mut().unwrap().observed_generation = Some(3);
        assert_eq!(
            progress(&stale),
            Progress::Failed("exceeded its progress deadline: too slow".into())
        );
    }

    fn replica_set(revision: i64) -> (i64, ReplicaSet) {
        let rs = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("rs-{revision}"),
                "annotations": {REVISION: revision.to_string(), CHANGE_CAUSE: format!("cause {revision}")}},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "d", TEMPLATE_HASH: "abc"}}}}
        }))
        .unwrap();
        (revision, rs)
    }

    #[test]
    fn undo_goes_to_the_newest_earlier_revision_or_the_one_named() {
        let owned = vec![replica_set(1), replica_set(3), replica_set(4)];
        assert_eq!(rollback_target(&owned, 4, None).unwrap().0, 3);
        assert_eq!(rollback_target(&owned, 4, Some(1)).unwrap().0, 1);
        let error = rollback_target(&owned, 4, Some(2)).unwrap_err();
        assert_eq!(error, "no revision 2 to roll back to (known: 1, 3, 4)");
        assert!(rollback_target(&owned[..1], 1, None).is_err());
    }

    #[test]
    fn undo_drops_the_hash_label_and_takes_the_change_cause() {
        let (_, rs) = replica_set(1);
        let template = template_without_hash(&rs);
        let labels = template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.keys().collect::<Vec<_>>(), vec!["app"]);

        let mut d = deployment(serde_json::json!({"metadata": {"annotations":
            {REVISION: "2", CHANGE_CAUSE: "cause 2", "team": "x"}}}));
        copy_rollback_annotations(&mut d, &rs);
        let annotations = d.metadata.annotations.unwrap();
        assert_eq!(annotations[REVISION], "2");
        assert_eq!(annotations[CHANGE_CAUSE], "cause 1");
        assert!(!annotations.contains_key("team"));
    }
}
