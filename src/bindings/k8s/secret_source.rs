//! The `k8s:namespace/name#key` secret source: one key of a Secret, read through the run's
//! client and registered for masking before anything else sees it.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use super::{client::Cluster, namespace_or_default, requested_context};
use crate::engine::binding::{Call, Failure};
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

/// The value behind `k8s:namespace/name#key` (the part after `k8s:`).
pub fn secret_value(ctx: &RunContext, reference: &str) -> Result<String, Failure> {
    let (namespace, name, key) = parse(reference)
        .ok_or_else(|| Failure::new(format!("`k8s:{reference}` is not k8s:NAMESPACE/NAME#KEY")))?;
    let cluster = ctx.shared(|| Cluster::new(requested_context(ctx)));
    let target = format!("secret {namespace}/{name}#{key}");
    let args = json!({ "namespace": namespace, "name": name, "key": key });
    let call = Call::new(ctx, "k8s::secret", Effect::Read, target).args(args);
    let work = async {
        let connection = cluster.connect().await?;
        let namespace = namespace_or_default(connection, namespace);
        let api: Api<Secret> = Api::namespaced(connection.client.clone(), &namespace);
        let found = api.get(name).await;
        let action = format!("read Secret {namespace}/{name}");
        let secret = found.map_err(|e| connection.fail(action, e))?;
        let data = secret.data.unwrap_or_default();
        let Some(bytes) = data.get(key) else {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            return Err(Failure::new(format!(
                "Secret {namespace}/{name} has no key `{key}` (keys: {})",
                keys.join(", ")
            )));
        };
        let value = String::from_utf8_lossy(&bytes.0).into_owned();
        ctx.masker.add(&value);
        Ok(value)
    };
    call.run(String::new, work)
        .map_err(|error| Failure::new(error.to_string()))
}

fn parse(reference: &str) -> Option<(&str, &str, &str)> {
    let (path, key) = reference.split_once('#')?;
    let (namespace, name) = path.split_once('/')?;
    let parts = [namespace, name, key];
    (!parts.iter().any(|p| p.is_empty() || p.contains('/'))).then_some((namespace, name, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_namespace_a_secret_and_a_key() {
        assert_eq!(
            parse("elson/backend-secrets#SECRET_KEY"),
            Some(("elson", "backend-secrets", "SECRET_KEY"))
        );
        assert_eq!(parse("backend-secrets#SECRET_KEY"), None);
        assert_eq!(parse("elson/backend-secrets"), None);
        assert_eq!(parse("elson/#KEY"), None);
    }
}
