//! The script functions of rollouts, with their docs.

use rhai::Map;

use super::super::K8s;
use crate::engine::binding::Family;
use crate::transcript::event::Effect;

pub fn status(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "rollout_status",
        Some(Effect::Read),
        &["namespace: &str", "name: &str", "Map"],
        &[
            "Waits until the Deployment's current revision is fully rolled out (the controller has observed it, every replica is updated and available, no old ones are left) and returns `#{revision, replicas, updated, ready, available, images}`; fails when the progress deadline is exceeded, the Deployment is paused, or 10 minutes pass.",
            "",
            "```rhai",
            "step(\"Verify rollback\", || k8s::rollout_status(\"elson\", \"elson-backend\"));",
            "```",
        ],
        move |namespace: &str, name: &str| super::status(&k, namespace, name, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "rollout_status",
        Some(Effect::Read),
        &["namespace: &str", "name: &str", "options: Map", "Map"],
        &[
            "`k8s::rollout_status` with `timeout` (seconds or `\"5m\"`).",
            "",
            "```rhai",
            "k8s::rollout_status(\"elson\", \"elson-backend\", #{timeout: \"5m\"});",
            "```",
        ],
        move |namespace: &str, name: &str, options: Map| {
            super::status(&k, namespace, name, &options)
        },
    );
}

pub fn changes(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "rollout_pause",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "Map"],
        &[
            "Pauses the Deployment's rollout (`spec.paused: true`, as `kubectl rollout pause`); returns the Deployment.",
            "",
            "```rhai",
            "k8s::rollout_pause(\"elson\", \"elson-backend\");",
            "```",
        ],
        move |namespace: &str, name: &str| super::set_paused(&k, namespace, name, true),
    );
    let k = k8s.clone();
    family.function(
        "rollout_resume",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "Map"],
        &[
            "Resumes a paused rollout (`spec.paused: false`); returns the Deployment.",
            "",
            "```rhai",
            "k8s::rollout_resume(\"elson\", \"elson-backend\");",
            "```",
        ],
        move |namespace: &str, name: &str| super::set_paused(&k, namespace, name, false),
    );
    let k = k8s.clone();
    family.function(
        "rollout_restart",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "Map"],
        &[
            "Restarts every pod through a new rollout of the same template (the `kubectl.kubernetes.io/restartedAt` annotation kubectl sets); refused on a paused Deployment. Returns the Deployment.",
            "",
            "```rhai",
            "k8s::rollout_restart(\"elson\", \"elson-backend\");",
            "```",
        ],
        move |namespace: &str, name: &str| super::restart(&k, namespace, name),
    );
}

pub fn history(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "rollout_history",
        Some(Effect::Read),
        &["namespace: &str", "name: &str", "Array"],
        &[
            "The Deployment's revisions, oldest first, from the ReplicaSets it owns: `#{revision, replica_set, images, change_cause, replicas, created, current}`.",
            "",
            "```rhai",
            "let previous = k8s::rollout_history(\"elson\", \"elson-backend\").filter(|r| !r.current).pop();",
            "```",
        ],
        move |namespace: &str, name: &str| super::history(&k, namespace, name),
    );
    let k = k8s.clone();
    family.function(
        "rollout_undo",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "Map"],
        &[
            "Rolls the Deployment back to its previous revision as `kubectl rollout undo` does: the pod template of that revision's ReplicaSet (without its `pod-template-hash` label) is written with the resourceVersion just read, so a change made meanwhile fails with a conflict instead of being overwritten. Refused on a paused Deployment. Returns `#{from_revision, to_revision, images, skipped}` (`skipped` when the template already matches).",
            "",
            "```rhai",
            "k8s::rollout_undo(\"elson\", \"elson-backend\");",
            "```",
        ],
        move |namespace: &str, name: &str| super::undo(&k, namespace, name, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "rollout_undo",
        Some(Effect::Mutate),
        &["namespace: &str", "name: &str", "options: Map", "Map"],
        &[
            "`k8s::rollout_undo` with `to_revision` (a revision number from `rollout_history`) and `resource_version` (roll back only if the Deployment is still at the version you read; otherwise a conflict).",
            "",
            "```rhai",
            "let seen = k8s::get(\"deployment\", \"elson\", \"elson-backend\").metadata.resourceVersion;",
            "k8s::rollout_undo(\"elson\", \"elson-backend\", #{to_revision: 1, resource_version: seen});",
            "```",
        ],
        move |namespace: &str, name: &str, options: Map| {
            super::undo(&k, namespace, name, &options)
        },
    );
}
