//! The run's one Kubernetes client: made on first use from the kubeconfig (the context the
//! environment or `--context` names, else the current one) or from the pod's service account,
//! together with the run's cache of what the API server serves.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use super::discovery::{Catalogue, Resource};
use super::error::K8sError;

/// What the family keeps for the whole run. Nothing connects until a binding needs it.
pub struct Cluster {
    /// The context asked for by `--context` or the environment's `context` setting.
    requested: Option<String>,
    connection: OnceCell<Connection>,
    catalogue: OnceCell<Catalogue>,
}

/// A client and the names its errors carry.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub context: String,
    pub server: String,
}

impl Cluster {
    pub fn new(requested: Option<String>) -> Self {
        Self {
            requested,
            connection: OnceCell::new(),
            catalogue: OnceCell::new(),
        }
    }

    /// The client, made on the first call (inside the runtime, as kube's client needs).
    pub async fn connect(&self) -> Result<&Connection, K8sError> {
        self.connection
            .get_or_try_init(|| connect(self.requested.clone()))
            .await
    }

    /// The resource a kind name stands for, from discovery run once per run.
    pub async fn resource(&self, kind: &str) -> Result<(&Connection, Resource), K8sError> {
        let connection = self.connect().await?;
        let catalogue = self.catalogue(connection).await?;
        let resource = catalogue
            .resolve(kind)
            .map_err(|hint| K8sError::UnknownKind {
                kind: kind.to_owned(),
                hint,
                context: connection.context.clone(),
                server: connection.server.clone(),
            })?;
        Ok((connection, resource.clone()))
    }

    /// The resource for an object's `apiVersion` and `kind`.
    pub async fn resource_of(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(&Connection, Resource), K8sError> {
        self.resource(&format!("{api_version}/{kind}")).await
    }

    async fn catalogue(&self, connection: &Connection) -> Result<&Catalogue, K8sError> {
        self.catalogue
            .get_or_try_init(|| async {
                let client = &connection.client;
                let core = client.list_core_api_versions_aggregated().await;
                let core = core.map_err(|e| connection.fail("discover the core API", e))?;
                let groups = client.list_api_groups_aggregated().await;
                let groups = groups.map_err(|e| connection.fail("discover the API groups", e))?;
                Ok(Catalogue::from_discovery(core, groups))
            })
            .await
    }
}

impl Connection {
    /// The error for a replace written with the resourceVersion it read: a 409 there means
    /// someone else changed the object in between.
    pub fn fail_replace(&self, action: impl Into<String>, error: kube::Error) -> K8sError {
        match error {
            kube::Error::Api(status) if status.code == 409 && status.reason == "Conflict" => {
                K8sError::Conflict {
                    action: action.into(),
                    context: self.context.clone(),
                    server: self.server.clone(),
                }
            }
            other => self.fail(action, other),
        }
    }

    /// The error for a request that failed: the server's refusal, or no answer at all.
    pub fn fail(&self, action: impl Into<String>, error: kube::Error) -> K8sError {
        let action = action.into();
        let (context, server) = (self.context.clone(), self.server.clone());
        match error {
            kube::Error::Api(status) => K8sError::Refused {
                action,
                reason: if status.reason.is_empty() {
                    format!("HTTP {}", status.code)
                } else {
                    status.reason.clone()
                },
                message: status.message.clone(),
                code: status.code,
                context,
                server,
            },
            source => K8sError::Unreachable {
                action,
                context,
                server,
                source: Box::new(source),
            },
        }
    }
}

async fn connect(requested: Option<String>) -> Result<Connection, K8sError> {
    match Kubeconfig::read() {
        Ok(kubeconfig) => from_kubeconfig(kubeconfig, requested).await,
        Err(source) => match requested {
            Some(context) => Err(K8sError::KubeconfigUnreadable {
                context,
                source: Box::new(source),
            }),
            None => in_cluster(source),
        },
    }
}

async fn from_kubeconfig(
    kubeconfig: Kubeconfig,
    requested: Option<String>,
) -> Result<Connection, K8sError> {
    let context = requested
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or(K8sError::NoContext)?;
    let server = server_of(&kubeconfig, &context)?;
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| K8sError::ContextUnusable {
            context: context.clone(),
            server: server.clone(),
            source: Box::new(source),
        })?;
    client_for(config, context)
}

/// The API server a context points at, for messages; an unknown context is an error here,
/// where the known ones can be listed.
fn server_of(kubeconfig: &Kubeconfig, context: &str) -> Result<String, K8sError> {
    let Some(named) = kubeconfig.contexts.iter().find(|c| c.name == context) else {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(K8sError::UnknownContext {
            context: context.to_owned(),
            known: known.join(", "),
        });
    };
    let cluster = named.context.as_ref().map(|c| c.cluster.as_str());
    let server = kubeconfig
        .clusters
        .iter()
        .find(|c| Some(c.name.as_str()) == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone());
    Ok(server.unwrap_or_else(|| "(none set)".to_owned()))
}

fn in_cluster(kubeconfig: kube::config::KubeconfigError) -> Result<Connection, K8sError> {
    let config = Config::incluster().map_err(|err| K8sError::NoConfig {
        in_cluster: err.to_string(),
        source: Box::new(kubeconfig),
    })?;
    client_for(config, "in-cluster service account".to_owned())
}

fn client_for(config: Config, context: String) -> Result<Connection, K8sError> {
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    let client = Client::try_from(config).map_err(|source| K8sError::ClientUnusable {
        context: context.clone(),
        server: server.clone(),
        source: Box::new(source),
    })?;
    Ok(Connection {
        client,
        context,
        server,
    })
}
