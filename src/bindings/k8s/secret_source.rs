//! The `k8s:namespace/name#key` secret source: one key of a Secret, read through the run's
//! client and registered for masking before anything else sees it.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use super::{client::Cluster, namespace_or_default, requested_context};
use std::collections::BTreeMap;

use crate::bindings::secret::Found;
use crate::engine::binding::Call;
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// Every key of the Secret `namespace/name`, decoded and registered for masking; `None`
/// when there is no such Secret.
pub fn secret_fields(ctx: &RunContext, namespace: &str, name: &str) -> Outcome<Option<Found>> {
    let cluster = ctx.shared(|| Cluster::new(requested_context(ctx)));
    let target = format!("secret {namespace}/{name}");
    let args = json!({ "namespace": namespace, "name": name });
    let call = Call::new(ctx, "k8s::secret", Effect::Read, target).args(args);
    let work = async {
        let connection = cluster.connect().await?;
        let namespace = namespace_or_default(connection, namespace);
        let api: Api<Secret> = Api::namespaced(connection.client.clone(), &namespace);
        let action = format!("read Secret {namespace}/{name}");
        let Some(secret) = api
            .get_opt(name)
            .await
            .map_err(|e| connection.fail(action, e))?
        else {
            return Ok(None);
        };
        let mut fields = BTreeMap::new();
        for (key, bytes) in secret.data.unwrap_or_default() {
            let value = String::from_utf8_lossy(&bytes.0).into_owned();
            ctx.masker.add(&value);
            fields.insert(key, value);
        }
        Ok(Some(Found::Fields(fields)))
    };
    call.run(|| None, work)
}
