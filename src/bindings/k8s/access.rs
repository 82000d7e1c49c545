//! `k8s::can_i`: whether the run's identity may do something, by a SelfSubjectAccessReview.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::json;

use super::K8s;
use super::options::Outcome;
use crate::engine::binding::{Failure, Family};
use crate::transcript::event::Effect;

pub fn register(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "can_i",
        Some(Effect::Read),
        &["verb: &str", "resource: &str", "namespace: &str", "bool"],
        &[
            "Whether the run's identity may do `verb` (get, list, create, patch, delete, ...) on `resource` (a kind or plural, with a subresource like `pods/exec` or `deployments/scale`) in `namespace` (`\"\"` for cluster-wide), as the API server answers a SelfSubjectAccessReview.",
            "",
            "```rhai",
            "check(\"May roll back the backend\", || k8s::can_i(\"update\", \"deployments\", \"elson\"));",
            "```",
        ],
        move |verb: &str, resource: &str, namespace: &str| can_i(&k, verb, resource, namespace),
    );
}

fn can_i(k8s: &K8s, verb: &str, resource: &str, namespace: &str) -> Outcome<bool> {
    let args = json!({ "verb": verb, "resource": resource, "namespace": namespace });
    let target = match namespace {
        "" => format!("{verb} {resource}"),
        _ => format!("{verb} {resource} in {namespace}"),
    };
    k8s.read("k8s::can_i", target, args, || false, async {
        let (kind, subresource) = match resource.split_once('/') {
            Some((kind, sub)) => (kind, Some(sub.to_owned())),
            None => (resource, None),
        };
        let (connection, found) = k8s.cluster.resource(kind).await?;
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(found.group.clone()),
                    resource: Some(found.plural.clone()),
                    subresource,
                    namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(connection.client.clone());
        let answer = api.create(&PostParams::default(), &review).await;
        let action = format!("review access to {verb} {resource}");
        let answer = answer.map_err(|e| connection.fail(action, e))?;
        let status = answer.status.ok_or_else(|| {
            Failure::new("the API server answered the access review without a status")
        })?;
        Ok(status.allowed)
    })
}
