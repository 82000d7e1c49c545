//! What the API server serves, from its aggregated discovery documents, and how a name a
//! script uses (`deployment`, `deploy`, `Deployment`, `deployments.apps`, `apps/v1/Deployment`)
//! maps to one resource.

use kube::core::discovery::v2::{APIGroupDiscovery, APIGroupDiscoveryList};
use kube::discovery::{ApiResource, Scope};

/// One kind the server serves in one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    /// Whether this is the group's preferred version, which plain names resolve to.
    pub preferred: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    pub fn scope(&self) -> Scope {
        if self.namespaced {
            Scope::Namespaced
        } else {
            Scope::Cluster
        }
    }

    /// Whether this is the core `Secret`, whose values scripts only get as secrets.
    pub fn is_secret(&self) -> bool {
        self.group.is_empty() && self.kind == "Secret"
    }

    fn named(&self, name: &str) -> bool {
        self.kind.eq_ignore_ascii_case(name)
            || self.plural == name
            || self.singular == name
            || self.short_names.iter().any(|short| short == name)
    }
}

/// Every resource the server serves, core group first, then the groups in the server's
/// priority order (the order kubectl resolves ambiguous names in).
#[derive(Debug, Default)]
pub struct Catalogue {
    resources: Vec<Resource>,
}

impl Catalogue {
    pub fn from_discovery(core: APIGroupDiscoveryList, groups: APIGroupDiscoveryList) -> Self {
        let mut resources = Vec::new();
        for group in core.items.iter().chain(&groups.items) {
            add_group(&mut resources, group);
        }
        Self { resources }
    }

    /// The resource `name` stands for; the error is a hint to append to "no kind `name`".
    pub fn resolve(&self, name: &str) -> Result<&Resource, String> {
        let name = name.trim();
        let found = match name.matches('/').count() {
            0 => self.by_name(name),
            1 | 2 => self.by_api_version(name),
            _ => None,
        };
        found.ok_or_else(|| self.hint(name))
    }

    /// `deployment`, `deploy`, `Deployment`, `deployments.apps`: preferred versions only.
    fn by_name(&self, name: &str) -> Option<&Resource> {
        let lower = name.to_ascii_lowercase();
        let preferred = || self.resources.iter().filter(|r| r.preferred);
        if let Some(found) = preferred().find(|r| r.named(name) || r.named(&lower)) {
            return Some(found);
        }
        let (resource, group) = lower.split_once('.')?;
        preferred().find(|r| r.group == group && r.named(resource))
    }

    /// `apps/v1/Deployment` or `v1/Pod`: that exact version.
    fn by_api_version(&self, name: &str) -> Option<&Resource> {
        let (api_version, kind) = name.rsplit_once('/')?;
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind.eq_ignore_ascii_case(kind))
    }

    fn hint(&self, name: &str) -> String {
        if name.matches('/').count() > 2 {
            return " (write a kind as `Kind`, `plural`, `group/version/Kind` or `version/Kind`)"
                .to_owned();
        }
        let kind = name.rsplit('/').next().unwrap_or(name);
        let other = self
            .resources
            .iter()
            .find(|r| r.kind.eq_ignore_ascii_case(kind));
        match other {
            Some(other) => format!(" (it serves {}/{})", other.api_version(), other.kind),
            None => String::new(),
        }
    }
}

fn add_group(resources: &mut Vec<Resource>, group: &APIGroupDiscovery) {
    let name = group
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    for (index, version) in group.versions.iter().enumerate() {
        let Some(version_name) = version.version.clone() else {
            continue;
        };
        for served in &version.resources {
            let kind = served.response_kind.as_ref().and_then(|k| k.kind.clone());
            let (Some(plural), Some(kind)) = (&served.resource, kind) else {
                continue;
            };
            resources.push(Resource {
                group: name.clone(),
                version: version_name.clone(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: served
                    .singular_resource
                    .clone()
                    .unwrap_or_else(|| kind.to_ascii_lowercase()),
                short_names: served.short_names.clone(),
                namespaced: served.scope.as_deref() == Some("Namespaced"),
                // Versions are listed most preferred first.
                preferred: index == 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let core = serde_json::json!({"items": [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
            {"resource": "pods", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "scope": "Namespaced", "singularResource": "pod", "shortNames": ["po"], "verbs": ["get"]},
            {"resource": "events", "responseKind": {"group": "", "version": "v1", "kind": "Event"}, "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"], "verbs": ["get"]},
            {"resource": "nodes", "responseKind": {"group": "", "version": "v1", "kind": "Node"}, "scope": "Cluster", "singularResource": "node", "shortNames": ["no"], "verbs": ["get"]}
        ]}]}]});
        let groups = serde_json::json!({"items": [
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"], "verbs": ["get"]}
            ]}]},
            {"metadata": {"name": "events.k8s.io"}, "versions": [{"version": "v1", "resources": [
                {"resource": "events", "responseKind": {"group": "events.k8s.io", "version": "v1", "kind": "Event"}, "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"], "verbs": ["get"]}
            ]}]},
            {"metadata": {"name": "autoscaling"}, "versions": [
                {"version": "v2", "resources": [{"resource": "horizontalpodautoscalers", "responseKind": {"group": "autoscaling", "version": "v2", "kind": "HorizontalPodAutoscaler"}, "scope": "Namespaced", "singularResource": "horizontalpodautoscaler", "shortNames": ["hpa"], "verbs": ["get"]}]},
                {"version": "v1", "resources": [{"resource": "horizontalpodautoscalers", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"}, "scope": "Namespaced", "singularResource": "horizontalpodautoscaler", "shortNames": ["hpa"], "verbs": ["get"]}]}
            ]}
        ]});
        Catalogue::from_discovery(
            serde_json::from_value(core).unwrap(),
            serde_json::from_value(groups).unwrap(),
        )
    }

    fn resolved(name: &str) -> String {
        let catalogue = catalogue();
        let resource = catalogue.resolve(name).unwrap();
        format!("{}/{}", resource.api_version(), resource.plural)
    }

    #[test]
    fn kinds_resolve_by_every_name_kubectl_accepts() {
        for name in [
            "deployment",
            "deployments",
            "deploy",
            "Deployment",
            "DEPLOYMENT",
        ] {
            assert_eq!(resolved(name), "apps/v1/deployments", "{name}");
        }
        assert_eq!(resolved("deployments.apps"), "apps/v1/deployments");
        assert_eq!(resolved("po"), "v1/pods");
        assert_eq!(resolved("hpa"), "autoscaling/v2/horizontalpodautoscalers");
    }

    #[test]
    fn an_explicit_version_picks_that_version() {
        assert_eq!(
            resolved("autoscaling/v1/HorizontalPodAutoscaler"),
            "autoscaling/v1/horizontalpodautoscalers"
        );
        assert_eq!(resolved("v1/Pod"), "v1/pods");
        assert_eq!(
            resolved("events.k8s.io/v1/Event"),
            "events.k8s.io/v1/events"
        );
    }

    #[test]
    fn ambiguous_names_go_to_the_core_group_first() {
        assert_eq!(resolved("events"), "v1/events");
        assert_eq!(resolved("events.events.k8s.io"), "events.k8s.io/v1/events");
    }

    #[test]
    fn scope_comes_from_discovery() {
        let catalogue = catalogue();
        assert!(!catalogue.resolve("node").unwrap().namespaced);
        assert!(catalogue.resolve("pod").unwrap().namespaced);
    }

    #[test]
    fn unknown_kinds_say_what_the_server_serves() {
        let catalogue = catalogue();
        assert_eq!(catalogue.resolve("cronjob").unwrap_err(), "");
        assert_eq!(
            catalogue.resolve("apps/v2/Deployment").unwrap_err(),
            " (it serves apps/v1/Deployment)"
        );
    }
}
